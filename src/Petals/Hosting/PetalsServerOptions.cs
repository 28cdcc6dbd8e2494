using Microsoft.Extensions.DependencyInjection;
using Petals.Models;
using Petals.Server;

namespace Petals.Hosting;

/// <summary>
/// Settings of the block server that <see cref="PetalsServiceCollectionExtensions.AddPetalsServer"/> runs as a hosted service;
/// validated when the host starts (every failure is listed, each naming the property at fault).
/// </summary>
public sealed class PetalsServerOptions
{
    /// <summary>The model: a .gguf file or a Hugging Face directory. Required; only the tensors of <see cref="Blocks"/> are read.</summary>
    public string ModelPath { get; set; } = string.Empty;

    /// <summary>
    /// The span of blocks to serve (end exclusive), placed by hand: at least one block, within the model's blocks; the
    /// server never moves. Null (the default) lets the server place itself with a discovery: it takes
    /// <see cref="NumBlocks"/> blocks (or as many as <see cref="MemoryBudget"/> holds) where the swarm is weakest, chosen by
    /// the <c>IBlockBalancer</c> (the greedy one unless <c>UseBlockBalancer</c> gave another), and moves when the swarm
    /// becomes unbalanced (<see cref="Balancing"/>).
    /// </summary>
    public BlockRange? Blocks { get; set; }

    /// <summary>
    /// Without <see cref="Blocks"/>: how many blocks to serve, 1 to the model's block count. Null (the default) takes as
    /// many as fit <see cref="MemoryBudget"/> (see <see cref="BlockMemoryEstimate"/>).
    /// </summary>
    public int? NumBlocks { get; set; }

    /// <summary>
    /// Without <see cref="Blocks"/> and <see cref="NumBlocks"/>: the memory the server may use, in bytes, for weights,
    /// attention cache and working buffers. Null (the default) is <see cref="BlockMemoryEstimate.DefaultBudgetShare"/> (half)
    /// of the memory available when the server starts.
    /// </summary>
    public long? MemoryBudget { get; set; }

    /// <summary>Without <see cref="Blocks"/>: when and how the server checks whether to move (see <see cref="BlockBalancingOptions"/>).</summary>
    public BlockBalancingOptions Balancing { get; set; } = new();

    /// <summary>
    /// Where to listen, e.g. <c>tcp://127.0.0.1:0</c> (port 0 picks a free port; read the bound address from
    /// <see cref="IPetalsServer.LocalAddress"/>), <c>quic://0.0.0.0:4433</c> or <c>mem://server-1</c>. Default <c>tcp://127.0.0.1:0</c>.
    /// </summary>
    public string ListenAddress { get; set; } = "tcp://127.0.0.1:0";

    /// <summary>The model id clients must name; null (the default) computes it with <see cref="Formats.ModelIdentity.Compute"/>.</summary>
    public string? ModelId { get; set; }

    /// <summary>
    /// The block server's settings: peer id, cache budget, request and session limits, timeouts, codecs (see
    /// <see cref="BlockServerOptions"/> for each default). Its <see cref="BlockServerOptions.Blocks"/> and
    /// <see cref="BlockServerOptions.ModelId"/> are set by the host from <see cref="Blocks"/> and <see cref="ModelId"/>;
    /// its <see cref="BlockServerOptions.PeerId"/> is replaced by the discovery's peer id when a discovery is registered
    /// (clients match the announcement with the handshake), or, without a discovery, by the short id of the listener's key
    /// when the transport proves one (<c>tls://</c>) and it was left at its default; its clock is the container's <see cref="TimeProvider"/> when
    /// one is registered.
    /// </summary>
    public BlockServerOptions Server { get; set; } = new();

    /// <summary>
    /// LoRA adapters the server holds, by name: each a PEFT directory (<c>adapter_config.json</c> +
    /// <c>adapter_model.safetensors</c>, read by <see cref="Formats.Peft.PeftAdapter"/>). The host loads each adapter's
    /// factors for the span the server serves (after placement picks it, and again when the server moves) into
    /// <see cref="BlockServerOptions.Adapters"/>, which announces the names (<c>petals serve --adapters NAME=DIR,…</c>).
    /// Names follow <see cref="Discovery.AnnouncementLimits.IsValidAdapterName"/>, at most
    /// <see cref="Discovery.AnnouncementLimits.MaxAdapters"/> in all (with those given in <see cref="BlockServerOptions.Adapters"/>).
    /// Empty by default. A directory that does not load fails the start with an error naming the adapter and the file.
    /// </summary>
    public IDictionary<string, string> AdapterDirectories { get; set; } = new Dictionary<string, string>(StringComparer.Ordinal);

    /// <summary>
    /// With a discovery (<c>UseDhtDiscovery</c>, <c>UseDiscovery</c>): how the span is announced (public name, announced
    /// host, interval, time to live, round trips to the next servers; see <see cref="ServerAnnouncerOptions"/>). Its
    /// <see cref="ServerAnnouncerOptions.DType"/> is set by the host from the span's weights.
    /// </summary>
    public ServerAnnouncerOptions Announcer { get; set; } = new();

    /// <summary>With a discovery: how the announced throughput is measured before the server goes online (see <see cref="ThroughputMeterOptions"/>).</summary>
    public ThroughputMeterOptions Throughput { get; set; } = new();

    /// <summary>
    /// With a discovery: how long stopping waits for the offline announcement before it stops the server anyway (the
    /// announcement then expires on its own). Default 15 s.
    /// </summary>
    public TimeSpan OfflineAnnounceTimeout { get; set; } = TimeSpan.FromSeconds(15);
}
