using Petals.Client;
using Petals.Models;
using Petals.Protocol;
using Petals.Tests.Client.Faults;

namespace Petals.Tests.Client.Verification;

/// <summary>
/// Honest servers never trip a check: every span answer of every step checked (rate 1) across servers that split the
/// model differently — so the session's caches, the verifiers' stateless passes and their hop boundaries all differ —
/// for fp32 and the 16-bit wire codecs.
/// </summary>
public sealed class NoFalsePositiveTests(ITestOutputHelper output)
{
    // Spans of every length and offset: sessions run on sub-ranges, verifiers route chains of up to four hops.
    private static readonly BlockRange[] Heterogeneous = [new(0, 4), new(0, 2), new(2, 4), new(0, 1), new(1, 3), new(3, 4), new(0, 3), new(1, 4)];

    [Theory]
    [InlineData(WireCodec.Fp32, true)]
    [InlineData(WireCodec.Fp32, false)]
    [InlineData(WireCodec.Fp16, true)]
    [InlineData(WireCodec.Fp16, false)]
    [InlineData(WireCodec.Bf16, true)]
    [InlineData(WireCodec.Bf16, false)]
    public async Task Honest_heterogeneous_servers_pass_every_check(WireCodec codec, bool wholeModelServer)
    {
        using var model = new TinyModel(4, seed: 11);

        // Without the whole-model server the session's chain has several spans, each checked on its own.
        await using var rig = await VerificationRig.StartAsync(model, wholeModelServer ? Heterogeneous : Heterogeneous[1..]);
        await using var remote = await rig.ConnectAsync(new VerificationOptions { Rate = 1, Random = new Random(5) }, o => o.Codec = codec);
        var mismatches = new List<OutputMismatch>();
        remote.VerificationFailed += (_, m) => mismatches.Add(m);

        // Two sessions: the second is routed again, possibly over other servers.
        await rig.GreedyAsync(remote, 40);
        await rig.GreedyAsync(remote, 40);

        var stats = remote.Verification;
        output.WriteLine($"{codec}, chain [{string.Join(", ", remote.Spans.Select(x => x.Blocks))}]: {stats}");
        Assert.Empty(mismatches);
        Assert.Equal(0, stats.Mismatches);
        Assert.True(stats.Checks >= 80, $"{stats.Checks} checks");
        Assert.Empty(remote.Sequence.BannedPeers);
        // The least tolerance of any check: two fp32 bounds and, for a 16-bit codec, two roundings (answer and one-hop recomputation).
        var unit = codec switch { WireCodec.Fp16 => 1.0 / 2048, WireCodec.Bf16 => 1.0 / 256, _ => 0 };
        var least = 2e-4 + (4 * unit);
        var margin = codec == WireCodec.Fp32 ? 10 : 2;
        Assert.True(stats.LargestPassedError < least / margin, $"honest servers came within 1/{margin} of the least tolerance {least}: {stats.LargestPassedError}");
    }
}
