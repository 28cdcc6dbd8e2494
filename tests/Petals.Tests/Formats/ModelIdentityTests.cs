using System.Text;
using Petals.Discovery;
using Petals.Formats;
using Petals.Models;

namespace Petals.Tests.Formats;

/// <summary>Model ids fit the discovery limits, so a server whose model has a long name can always be announced.</summary>
public sealed class ModelIdentityTests
{
    [Fact]
    public void A_long_model_name_is_cut_so_that_every_block_key_fits_the_dht()
    {
        var config = new ModelConfig { HiddenSize = 8, IntermediateSize = 16, NumLayers = 2, NumHeads = 1, NumKeyValueHeads = 1, HeadDim = 8, VocabSize = 10 };
        var name = string.Concat(Enumerable.Repeat("llama-é", 60)) + ".gguf"; // 480 UTF-8 bytes of name, two-byte characters included
        var id = ModelIdentity.Compute(Path.Combine(Path.GetTempPath(), name), config);
        Assert.InRange(Encoding.UTF8.GetByteCount(id), 1, AnnouncementLimits.MaxModelIdBytes);
        Assert.EndsWith(":llama-2x8-v10", id, StringComparison.Ordinal);
        Assert.StartsWith("llama-é", id, StringComparison.Ordinal);
        Assert.InRange(Encoding.UTF8.GetByteCount(DhtPeerDiscovery.GetBlockKey(id, AnnouncementLimits.MaxBlockCount - 1)), 1, RecordLimits.Default.MaxKeyBytes);
        Assert.Equal("short:llama-2x8-v10", ModelIdentity.Compute("short.gguf", config));
    }
}
