using System.Globalization;
using System.Text.Json;
using Petals.Backends.Cpu;
using Petals.Client;
using Petals.Formats;
using Petals.Formats.HuggingFace;
using Petals.Generation;
using Petals.Models;
using Petals.Protocol;
using Petals.Server;
using Petals.Testing.Transport;
using Petals.Transport;

namespace Petals.Benchmarks;

/// <summary>
/// <c>wire-codec</c>: the bytes a decode step puts on each hop and the greedy tokens, per wire codec, through real
/// block servers in this process on the in-memory transport (the bytes are the client connections' frame bytes in
/// both directions, framing included). Token agreement is position by position against fp32 through the same servers.
/// </summary>
internal static class WireCodecBench
{
    /// <summary>A random fp32 model of a 4096-wide residual stream (GQA with one kv head, small MLP and vocab: only the width matters for the bytes).</summary>
    public static ModelConfig WideShape(int layers) => new()
    {
        HiddenSize = 4096,
        IntermediateSize = 256,
        NumLayers = layers,
        NumHeads = 32,
        NumKeyValueHeads = 1,
        HeadDim = 128,
        VocabSize = 512,
        RmsNormEps = 1e-5,
        MaxPositionEmbeddings = 512,
        BosTokenId = 1,
        EosTokenIds = [2],
    };

    public static async Task<int> RunAsync(string? model, int hiddenForRandom, int servers, int promptTokens, string? promptIds, int newTokens, string codecList, int threads, bool json)
    {
        string? temp = null;
        if (model is null)
        {
            if (hiddenForRandom != 4096)
            {
                throw new ArgumentException("Without --model, --random-hidden 4096 writes the random wide model (the only random shape offered).");
            }

            temp = Path.Combine(Path.GetTempPath(), "petals-wire-" + Guid.NewGuid().ToString("N")[..8]);
            RandomLlamaCheckpoint.Write(temp, WideShape(servers), seed: 1);
            model = temp;
        }

        try
        {
            return await RunOnAsync(model, servers, promptTokens, promptIds, newTokens, codecList, threads, json).ConfigureAwait(false);
        }
        finally
        {
            if (temp is not null)
            {
                Directory.Delete(temp, recursive: true);
            }
        }
    }

    private static async Task<int> RunOnAsync(string model, int serverCount, int promptTokens, string? promptIds, int newTokens, string codecList, int threads, bool json)
    {
        var codecs = codecList.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(c => HiddenStateCodec.TryParse(c, out var codec) ? codec : throw new ArgumentException($"--codecs: '{c}' is not fp32, fp16, bf16 or int8."))
            .ToList();
        if (!codecs.Contains(WireCodec.Fp32))
        {
            codecs.Insert(0, WireCodec.Fp32);
        }

        using var weights = ModelLoader.Open(model);
        var config = weights.Config;
        var head = LanguageModelHead.Load(weights);
        var random = new Random(7);
        var prompt = promptIds is null
            ? Enumerable.Range(0, promptTokens).Select(_ => random.Next(3, config.VocabSize)).ToArray()
            : promptIds.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(t => int.Parse(t, CultureInfo.InvariantCulture)).ToArray();
        promptTokens = prompt.Length;
        var options = new GenerationOptions { MaxNewTokens = newTokens, StopTokenIds = [] };
        var modelId = "wire-" + Guid.NewGuid().ToString("N")[..8];
        var factory = new CpuBlockExecutorFactory(new CpuExecutorOptions { ThreadCount = threads });
        var transport = new MemoryTransport();
        var running = new List<BlockServer>();
        var executors = new List<Petals.Execution.IBlockExecutor>();
        var addresses = new List<PeerAddress>();
        try
        {
            for (var i = 0; i < serverCount; i++)
            {
                var span = new BlockRange(i * config.NumLayers / serverCount, (i + 1) * config.NumLayers / serverCount);
                var name = "server-" + i.ToString(CultureInfo.InvariantCulture);
                var executor = factory.Create(weights, span);
                executors.Add(executor);
                var server = new BlockServer(executor, new BlockServerOptions { Blocks = span, ModelId = modelId, PeerId = name });
                running.Add(server);

                // The server owns the listener from here on and disposes it when it stops.
                var listener = await transport.ListenAsync(PeerAddress.Parse($"mem://{modelId}-{name}")).ConfigureAwait(false);
                await server.StartAsync(listener).ConfigureAwait(false);
                addresses.Add(listener.LocalAddress);
            }

            var results = new List<Result>();
            foreach (var codec in codecs)
            {
                await using var remote = await RemoteTransformerBlocks.ConnectAsync(transport, addresses, config, modelId, new RemoteSequenceOptions { Codec = codec }).ConfigureAwait(false);
                using var lm = new CausalLanguageModel(head, remote, tokenizer: null);
                var tokens = new List<int>();
                long sent0 = 0, received0 = 0, sent = 0, received = 0;
                await foreach (var token in lm.GenerateAsync(prompt, options).ConfigureAwait(false))
                {
                    if (tokens.Count == 0)
                    {
                        sent0 = remote.BytesSent;
                        received0 = remote.BytesReceived;
                    }

                    tokens.Add(token);
                    if (tokens.Count == newTokens)
                    {
                        // Before the session's close frames go out.
                        sent = remote.BytesSent - sent0;
                        received = remote.BytesReceived - received0;
                    }
                }

                var steps = Math.Max(1, tokens.Count - 1);
                var hops = remote.Spans.Count;
                results.Add(new Result(codec, [.. tokens], sent / (double)(steps * hops), received / (double)(steps * hops)));
            }

            var reference = results[0].Tokens;
            if (json)
            {
                foreach (var r in results)
                {
                    Console.WriteLine(JsonSerializer.Serialize(new
                    {
                        codec = HiddenStateCodec.Name(r.Codec),
                        hidden = config.HiddenSize,
                        blocks = config.NumLayers,
                        servers = serverCount,
                        new_tokens = r.Tokens.Length,
                        bytes_per_step_per_hop_sent = r.SentPerStep,
                        bytes_per_step_per_hop_received = r.ReceivedPerStep,
                        payload_bytes = HiddenStateCodec.PayloadBytes(r.Codec, config.HiddenSize),
                        agreeing_tokens = Agreeing(reference, r.Tokens),
                        first_difference = FirstDifference(reference, r.Tokens),
                    }));
                }
            }
            else
            {
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"model {Path.GetFileName(model.TrimEnd('/'))}: hidden {config.HiddenSize}, {config.NumLayers} blocks over {serverCount} in-process servers (memory transport); prompt {promptTokens} tokens, {newTokens} greedy tokens"));
                Console.WriteLine("codec  payload  sent/step/hop  received/step/hop  vs fp32 bytes  agreeing tokens  first difference");
                var fp32 = results[0].SentPerStep + results[0].ReceivedPerStep;
                foreach (var r in results)
                {
                    var first = FirstDifference(reference, r.Tokens);
                    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"{HiddenStateCodec.Name(r.Codec),-5}  {HiddenStateCodec.PayloadBytes(r.Codec, config.HiddenSize),7}  {r.SentPerStep,13:F1}  {r.ReceivedPerStep,17:F1}  {(r.SentPerStep + r.ReceivedPerStep) / fp32,13:F3}  {Agreeing(reference, r.Tokens),7} / {r.Tokens.Length,-5}  {(first < 0 ? "none" : first.ToString(CultureInfo.InvariantCulture))}"));
                }
            }

            // The codec's own cost per hop and direction: encode then decode one token's hidden state (best of 5 rounds).
            var row = new float[config.HiddenSize];
            for (var i = 0; i < row.Length; i++)
            {
                row[i] = (float)Math.Sin(i * 0.37) * (i % 97 == 0 ? 40 : 1);
            }

            var back = new float[row.Length];
            var wire = new byte[HiddenStateCodec.PayloadBytes(WireCodec.Fp32, row.Length)];
            foreach (var codec in codecs)
            {
                var best = double.MaxValue;
                for (var round = 0; round < 5; round++)
                {
                    var timer = System.Diagnostics.Stopwatch.StartNew();
                    for (var i = 0; i < 2000; i++)
                    {
                        HiddenStateCodec.Encode(row, codec, wire);
                        HiddenStateCodec.Decode(wire, codec, back);
                    }

                    best = Math.Min(best, timer.Elapsed.TotalMilliseconds * 1e6 / 2000);
                }

                Console.WriteLine(json
                    ? JsonSerializer.Serialize(new { codec = HiddenStateCodec.Name(codec), hidden = config.HiddenSize, encode_decode_ns = best })
                    : string.Create(CultureInfo.InvariantCulture, $"{HiddenStateCodec.Name(codec)}: encode + decode of one [1, 1, {config.HiddenSize}] hidden state {best:F0} ns (best of 5 x 2000)"));
            }

            return 0;
        }
        finally
        {
            foreach (var server in running)
            {
                await server.DisposeAsync().ConfigureAwait(false);
            }

            foreach (var executor in executors)
            {
                executor.Dispose();
            }
        }
    }

    /// <summary>Positions where both sequences hold the same token.</summary>
    public static int Agreeing(int[] reference, int[] tokens) => reference.Zip(tokens).Count(p => p.First == p.Second);

    /// <summary>The first position where the sequences differ, or -1.</summary>
    public static int FirstDifference(int[] reference, int[] tokens)
    {
        for (var i = 0; i < Math.Min(reference.Length, tokens.Length); i++)
        {
            if (reference[i] != tokens[i])
            {
                return i;
            }
        }

        return reference.Length == tokens.Length ? -1 : Math.Min(reference.Length, tokens.Length);
    }

    private sealed record Result(WireCodec Codec, int[] Tokens, double SentPerStep, double ReceivedPerStep);
}
