using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Petals.Backends.Cpu;
using Petals.Client;
using Petals.Formats;
using Petals.Generation;
using Petals.Inference;
using Petals.Models;
using Petals.Formats.HuggingFace;
using Petals.Transport;
using Petals.Transport.Multiplexing;
using Petals.Transport.Tcp;

namespace Petals.Benchmarks;

/// <summary>
/// The swarm benchmark's two halves (bench/swarm.sh runs the servers between them): <c>swarm-model</c> writes a random
/// model of a realistic shape, <c>swarm-client</c> generates greedily with all blocks in this process and through the
/// given servers, and compares speed, tokens and bytes on the wire.
/// </summary>
internal static class SwarmBench
{
    public static ModelConfig Shape(int hidden, int layers) => new()
    {
        HiddenSize = hidden,
        IntermediateSize = hidden * 11 / 4,
        NumLayers = layers,
        NumHeads = hidden / 128,
        NumKeyValueHeads = hidden / 128,
        HeadDim = 128,
        VocabSize = 32000,
        RmsNormEps = 1e-5,
        MaxPositionEmbeddings = 4096,
        BosTokenId = 1,
        EosTokenIds = [2],
    };

    /// <summary>Writes a random fp32 Llama checkpoint (Hugging Face layout) of hidden size and layer count into <paramref name="directory"/>.</summary>
    public static int WriteModel(string directory, int hidden, int layers, ulong seed)
    {
        var config = Shape(hidden, layers);
        var timer = Stopwatch.StartNew();
        RandomLlamaCheckpoint.Write(directory, config, seed, maxShardBytes: 2L << 30);
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"wrote {directory}: hidden {hidden}, {layers} blocks, vocab {config.VocabSize}, fp32, in {timer.Elapsed.TotalSeconds:F1} s"));
        return 0;
    }

    /// <summary>Greedy generation locally and through <paramref name="peers"/>, alternating, <paramref name="rounds"/> times each.</summary>
    public static async Task<int> RunClientAsync(string model, string peers, int promptTokens, int newTokens, int threads, int rounds, bool json, int localSpans = 1)
    {
        using var weights = ModelLoader.Open(model);
        var config = weights.Config;
        var head = LanguageModelHead.Load(weights);
        var random = new Random(7);
        var prompt = Enumerable.Range(0, promptTokens).Select(_ => random.Next(3, config.VocabSize)).ToArray();
        var options = new GenerationOptions { MaxNewTokens = newTokens, StopTokenIds = [] };

        var factory = new CpuBlockExecutorFactory(new CpuExecutorOptions { ThreadCount = threads });
        // The local reference may be split into several executors like the servers (--local-spans), to separate the cost
        // of splitting the blocks from the cost of the processes and the network.
        var splits = Enumerable.Range(0, localSpans + 1).Select(i => i * config.NumLayers / localSpans).ToArray();
        using var local = new LocalTransformerBlocks([.. Enumerable.Range(0, localSpans).Select(i => factory.Create(weights, new BlockRange(splits[i], splits[i + 1])))]);
        using var localModel = new CausalLanguageModel(head, local, tokenizer: null);

        var addresses = peers.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(p => PeerAddress.Parse(p.Contains("://", StringComparison.Ordinal) ? p : "tcp://" + p)).ToArray();
        await using var remote = await RemoteTransformerBlocks.ConnectAsync(new TcpTransport().WithMultiplexing(), addresses, config, ModelIdentity.Compute(model, config)).ConfigureAwait(false);
        using var remoteModel = new CausalLanguageModel(head, remote, tokenizer: null);

        var localRuns = new List<Run>();
        var remoteRuns = new List<Run>();
        for (var r = 0; r < rounds; r++)
        {
            localRuns.Add(await TimeAsync(localModel, prompt, options, null).ConfigureAwait(false));
            remoteRuns.Add(await TimeAsync(remoteModel, prompt, options, remote).ConfigureAwait(false));
        }

        var bestLocal = localRuns.MaxBy(x => x.DecodeStepsPerSecond)!;
        var bestRemote = remoteRuns.MaxBy(x => x.DecodeStepsPerSecond)!;
        var identical = localRuns.Concat(remoteRuns).All(x => x.Tokens.SequenceEqual(localRuns[0].Tokens));
        var hops = remote.Spans.Count;
        var decodeSteps = bestRemote.Tokens.Length - 1;
        var sentPerStep = bestRemote.DecodeBytesSent / (double)(decodeSteps * hops);
        var receivedPerStep = bestRemote.DecodeBytesReceived / (double)(decodeSteps * hops);
        var payload = config.HiddenSize * 4;
        var ratio = bestRemote.DecodeStepsPerSecond / bestLocal.DecodeStepsPerSecond;
        if (json)
        {
            Console.WriteLine(JsonSerializer.Serialize(new
            {
                hidden = config.HiddenSize,
                blocks = config.NumLayers,
                servers = hops,
                prompt_tokens = promptTokens,
                new_tokens = newTokens,
                local_steps_per_second = localRuns.Select(x => x.DecodeStepsPerSecond).ToArray(),
                swarm_steps_per_second = remoteRuns.Select(x => x.DecodeStepsPerSecond).ToArray(),
                ratio_best = ratio,
                identical_tokens = identical,
                bytes_per_step_message_sent = sentPerStep,
                bytes_per_step_message_received = receivedPerStep,
                hidden_payload_bytes = payload,
                local_allocated_bytes_per_step = bestLocal.AllocatedBytesPerStep,
                swarm_client_allocated_bytes_per_step = bestRemote.AllocatedBytesPerStep,
            }));
        }
        else
        {
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"model: hidden {config.HiddenSize}, {config.NumLayers} blocks, {hops} servers; prompt {promptTokens} tokens, {newTokens} new tokens, {rounds} rounds (best of each)"));
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"local (1 process):  decode {string.Join(" / ", localRuns.Select(x => x.DecodeStepsPerSecond.ToString("F2", CultureInfo.InvariantCulture)))} steps/s; prefill {bestLocal.PrefillSeconds * 1000:F0} ms"));
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"swarm ({hops} servers): decode {string.Join(" / ", remoteRuns.Select(x => x.DecodeStepsPerSecond.ToString("F2", CultureInfo.InvariantCulture)))} steps/s; prefill {bestRemote.PrefillSeconds * 1000:F0} ms"));
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"ratio swarm/local (best runs): {ratio:F3}"));
            Console.WriteLine($"tokens identical in every run: {identical}");
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"allocated per decode step in this process: local {bestLocal.AllocatedBytesPerStep:F0} bytes, swarm client {bestRemote.AllocatedBytesPerStep:F0} bytes"));
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"wire per decode step per hop: {sentPerStep:F1} bytes sent, {receivedPerStep:F1} received; hidden payload {payload} bytes, overhead {sentPerStep - payload:F1} / {receivedPerStep - payload:F1} bytes"));
        }

        return identical ? 0 : 4;
    }

    private static async Task<Run> TimeAsync(CausalLanguageModel model, int[] prompt, GenerationOptions options, RemoteTransformerBlocks? remote)
    {
        var tokens = new List<int>();
        var timer = Stopwatch.StartNew();
        double prefill = 0;
        long sent0 = 0, received0 = 0, allocated0 = 0;
        await foreach (var token in model.GenerateAsync(prompt, options).ConfigureAwait(false))
        {
            if (tokens.Count == 0)
            {
                prefill = timer.Elapsed.TotalSeconds;
                sent0 = remote?.BytesSent ?? 0;
                received0 = remote?.BytesReceived ?? 0;
                allocated0 = GC.GetTotalAllocatedBytes(precise: true);
            }

            tokens.Add(token);
        }

        var total = timer.Elapsed.TotalSeconds;
        var allocated = GC.GetTotalAllocatedBytes(precise: true) - allocated0;
        return new Run(
            [.. tokens],
            prefill,
            (tokens.Count - 1) / (total - prefill),
            (remote?.BytesSent ?? 0) - sent0,
            (remote?.BytesReceived ?? 0) - received0,
            allocated / (double)Math.Max(1, tokens.Count - 1));
    }

    private sealed record Run(int[] Tokens, double PrefillSeconds, double DecodeStepsPerSecond, long DecodeBytesSent, long DecodeBytesReceived, double AllocatedBytesPerStep);
}
