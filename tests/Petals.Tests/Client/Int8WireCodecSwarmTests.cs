using System.Globalization;
using Petals.Client;
using Petals.Execution;
using Petals.Formats;
using Petals.Generation;
using Petals.Models;
using Petals.Protocol;
using Petals.Server;
using Petals.Testing;
using Petals.Testing.Transport;
using Petals.Tests.Generation;
using Petals.Transport;

namespace Petals.Tests.Client;

/// <summary>
/// The int8 blockwise wire codec end to end: the real stories260K model (hidden 64, 5 blocks) through three block servers
/// in this process, 64 greedy tokens per codec against fp32 through the same servers, and the bytes each decode step puts
/// on each hop.
/// </summary>
public sealed class Int8WireCodecSwarmTests
{
    private const int NewTokens = 64;
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(120);
    private static readonly int[] Prompt = [1, 403, 407, 261, 378]; // "Once upon a time"

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Int8_through_three_servers_agrees_with_fp32_and_sends_a_quarter_of_the_bytes()
    {
        await using var rig = await Rig.StartAsync(TestData.Stories260KGguf, [new(0, 2), new(2, 4), new(4, 5)]);
        var fp32 = await rig.GenerateAsync(WireCodec.Fp32);
        var fp16 = await rig.GenerateAsync(WireCodec.Fp16);
        var int8 = await rig.GenerateAsync(WireCodec.Int8Blockwise);

        // fp32 through the servers is exactly local generation (the reference the others are held to).
        Assert.Equal(await rig.LocalAsync(), fp32.Tokens);
        var agreeFp16 = fp16.Tokens.Zip(fp32.Tokens).Count(p => p.First == p.Second);
        var agreeInt8 = int8.Tokens.Zip(fp32.Tokens).Count(p => p.First == p.Second);
        // Measured 64/64 for both (bench/RESULTS.md, issue 14); the floor leaves room for a near-tie flipped by another CPU's rounding.
        var agreement = string.Create(CultureInfo.InvariantCulture, $"of {NewTokens} greedy tokens, fp16 agrees with fp32 on {agreeFp16}, int8 on {agreeInt8}");
        Assert.True(agreeFp16 >= 56, agreement);
        Assert.True(agreeInt8 >= 56, agreement);

        // Each decode step sends one InferenceStep per hop: 36 bytes of framing and the [1, 1, 64] payload (§7).
        Assert.Equal(36 + (64 * 4), fp32.SentPerStep);
        Assert.Equal(36 + (64 * 2), fp16.SentPerStep);
        Assert.Equal(36 + 64 + 4, int8.SentPerStep);
        Assert.Equal(int8.SentPerStep, int8.ReceivedPerStep);
    }

    [Fact]
    public async Task A_server_that_does_not_advertise_int8_is_refused_by_name_before_any_tensor_is_sent()
    {
        await using var rig = await Rig.StartAsync(TestData.Stories260KGguf, [new(0, 3), new(3, 5)], withoutInt8: 1);
        var ex = await Assert.ThrowsAsync<RemoteChainException>(() => rig.ConnectAsync(WireCodec.Int8Blockwise));
        Assert.Contains("server-1", ex.Message, StringComparison.Ordinal);
        Assert.Contains("does not accept hidden states as Int8Blockwise", ex.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("server-0 does not accept", ex.Message, StringComparison.Ordinal);
        Assert.Equal(0, rig.Servers.Sum(s => s.GetStatistics().TokensProcessed));

        // The same servers serve fp16 clients.
        await using var fp16 = await rig.ConnectAsync(WireCodec.Fp16);
        Assert.Equal(2, fp16.Spans.Count);
    }

    [Fact]
    public async Task Checking_every_int8_step_against_trusted_local_blocks_convicts_no_honest_server()
    {
        await using var rig = await Rig.StartAsync(TestData.Stories260KGguf, [new(0, 2), new(2, 4), new(4, 5)]);
        using var trusted = RandomModelFixture.Factory.Create(rig.Weights, new BlockRange(0, 5));
        var verification = new VerificationOptions { Rate = 1, LocalExecutor = trusted, Random = new Random(1) };
        var run = await rig.GenerateAsync(WireCodec.Int8Blockwise, verification);
        var stats = run.Verification!;
        Assert.Equal(NewTokens, run.Tokens.Count);
        Assert.True(stats.Checks >= 3 * NewTokens, $"{stats}");
        Assert.True(stats.Mismatches == 0, $"honest int8 servers were convicted: {stats}");

        // The int8 rounding is visible to the checks, within the 5 % cap (fp32 would pass near 1e-6).
        Assert.InRange(stats.LargestPassedError, 1e-4, 0.05);
    }

    [Fact]
    public void The_client_options_accept_int8_and_name_the_codecs_they_know()
    {
        new RemoteSequenceOptions { Codec = WireCodec.Int8Blockwise }.Validate();
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => new RemoteSequenceOptions { Codec = (WireCodec)4 }.Validate());
        Assert.Contains("Int8Blockwise", ex.Message, StringComparison.Ordinal);
    }

    private sealed record Run(List<int> Tokens, double SentPerStep, double ReceivedPerStep, VerificationStatistics? Verification = null);

    private sealed class Rig : IAsyncDisposable
    {
        private readonly List<IBlockExecutor> _executors = [];

        private Rig(IModelWeights weights)
        {
            Weights = weights;
            Head = LanguageModelHead.Load(weights);
        }

        public IModelWeights Weights { get; }

        public LanguageModelHead Head { get; }

        public string ModelId { get; } = "int8-" + Guid.NewGuid().ToString("N")[..8];

        public MemoryTransport Transport { get; } = new();

        public List<BlockServer> Servers { get; } = [];

        public List<PeerAddress> Addresses { get; } = [];

        public static async Task<Rig> StartAsync(string model, BlockRange[] spans, int withoutInt8 = -1)
        {
            var rig = new Rig(ModelLoader.Open(model));
            try
            {
                for (var i = 0; i < spans.Length; i++)
                {
                    var executor = RandomModelFixture.Factory.Create(rig.Weights, spans[i]);
                    rig._executors.Add(executor);
                    var name = "server-" + i.ToString(CultureInfo.InvariantCulture);
                    var server = new BlockServer(executor, new BlockServerOptions
                    {
                        Blocks = spans[i], ModelId = rig.ModelId, PeerId = name, Codecs = i == withoutInt8 ? WireCodecs.Protocol10 : WireCodecs.All,
                    });
                    rig.Servers.Add(server);
                    var listener = await rig.Transport.ListenAsync(PeerAddress.Parse($"mem://{rig.ModelId}-{name}"), Ct);
                    await server.StartAsync(listener, Ct);
                    rig.Addresses.Add(listener.LocalAddress);
                }

                return rig;
            }
            catch
            {
                await rig.DisposeAsync();
                throw;
            }
        }

        public Task<RemoteTransformerBlocks> ConnectAsync(WireCodec codec, VerificationOptions? verification = null) =>
            RemoteTransformerBlocks.ConnectAsync(Transport, Addresses, Weights.Config, ModelId, new RemoteSequenceOptions { Codec = codec, Verification = verification ?? new() }, Ct).WaitAsync(Bound, Ct);

        public async Task<Run> GenerateAsync(WireCodec codec, VerificationOptions? verification = null)
        {
            await using var remote = await ConnectAsync(codec, verification);
            using var lm = new CausalLanguageModel(Head, remote, tokenizer: null);
            var tokens = new List<int>();
            long sent0 = 0, received0 = 0, sent = 0, received = 0;
            await foreach (var token in lm.GenerateAsync(Prompt, new GenerationOptions { MaxNewTokens = NewTokens, StopTokenIds = [] }, Ct).WithCancellation(Ct))
            {
                if (tokens.Count == 0)
                {
                    sent0 = remote.BytesSent;
                    received0 = remote.BytesReceived;
                }

                tokens.Add(token);
                if (tokens.Count == NewTokens)
                {
                    // Before the session's close frames go out.
                    sent = remote.BytesSent - sent0;
                    received = remote.BytesReceived - received0;
                }
            }

            var steps = (tokens.Count - 1) * remote.Spans.Count;
            return new Run(tokens, sent / (double)steps, received / (double)steps, remote.Verification);
        }

        public async Task<List<int>> LocalAsync()
        {
            using var local = new Petals.Inference.LocalTransformerBlocks([RandomModelFixture.Factory.Create(Weights, new BlockRange(0, Weights.Config.NumLayers))]);
            using var lm = new CausalLanguageModel(Head, local, tokenizer: null);
            var tokens = new List<int>();
            await foreach (var token in lm.GenerateAsync(Prompt, new GenerationOptions { MaxNewTokens = NewTokens, StopTokenIds = [] }, Ct).WithCancellation(Ct))
            {
                tokens.Add(token);
            }

            return tokens;
        }

        public async ValueTask DisposeAsync()
        {
            foreach (var server in Servers)
            {
                await server.DisposeAsync();
            }

            foreach (var executor in _executors)
            {
                executor.Dispose();
            }

            Weights.Dispose();
        }
    }
}
