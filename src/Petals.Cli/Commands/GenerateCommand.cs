using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using Petals.Client;
using Petals.Generation;

namespace Petals.Cli.Commands;

/// <summary><c>petals generate</c>: text generation from a prompt.</summary>
internal static class GenerateCommand
{
    /// <summary>
    /// The default of <c>--verify-rate</c>: a server that lies on every step is caught within 20 of its steps with
    /// probability 64 %, within 60 with 95 %, for about 5 % more compute per token at short lengths (docs/verification.md).
    /// </summary>
    internal const double DefaultVerifyRate = 0.05;

    public static Command Create(CliContext context)
    {
        var model = ModelOptions.Model();
        var threads = ModelOptions.Threads();
        var prompt = new Option<string>("--prompt") { Description = "The prompt text.", Required = true };
        var maxNewTokens = new Option<int>("--max-new-tokens") { Description = "The most tokens to generate.", DefaultValueFactory = _ => 64 };
        var temperature = new Option<double>("--temperature") { Description = "Sampling temperature; 0 means greedy.", DefaultValueFactory = _ => 0.0 };
        var topK = new Option<int>("--top-k") { Description = "Keep only the K most likely tokens (0: off).", DefaultValueFactory = _ => 0 };
        var topP = new Option<double>("--top-p") { Description = "Nucleus sampling threshold (1: off).", DefaultValueFactory = _ => 1.0 };
        var repetitionPenalty = new Option<double>("--repetition-penalty") { Description = "Penalty for tokens already in the sequence (1: off).", DefaultValueFactory = _ => 1.0 };
        var seed = new Option<int?>("--seed") { Description = "Random seed for sampling." };
        var output = ModelOptions.Output();
        var peers = SwarmOptions.Peers();
        var wireCodec = SwarmOptions.WireCodec();
        var initialPeers = ClientDiscovery.InitialPeersOption();
        var modelId = new Option<string?>("--model-id") { Description = "With --initial-peers: the model id the servers announce (default: computed from the model, as `petals serve` does)." };
        var allowPeers = new Option<string?>("--allow-peers") { Description = "With --initial-peers: route only through these servers (peer ids, comma-separated)." };
        var blockPeers = new Option<string?>("--block-peers") { Description = "With --initial-peers: never route through these servers (peer ids, comma-separated)." };
        var insecure = TransportSecurity.Insecure();
        var noMultiplex = TransportSecurity.NoMultiplex();
        var quant = QuantizationOptions.Quant("the blocks run in this process (without --peers and --initial-peers)");
        var requireQuant = QuantizationOptions.RequireQuant();
        var adapters = AdapterOptions.Adapters("the blocks run in this process (without --peers and --initial-peers)");
        var adapter = AdapterOptions.Adapter();
        var tuned = TunedOption();

        var verifyRate = new Option<double>("--verify-rate")
        {
            Description = "With --peers or --initial-peers: the probability that a server's answer to a step is recomputed on other servers and compared (0 disables; a server found lying is banned and replaced). Default 0.05.",
            DefaultValueFactory = _ => DefaultVerifyRate,
        };

        var command = new Command("generate", "Generate text from a prompt, with the blocks in this process, on servers given by --peers, or on servers found in the swarm through --initial-peers.")
        {
            model, prompt, maxNewTokens, temperature, topK, topP, repetitionPenalty, seed, output, threads, peers, wireCodec, initialPeers, modelId, allowPeers, blockPeers, verifyRate, insecure, noMultiplex,
            quant, requireQuant, adapters, adapter, tuned,
        };
        command.Validators.Add(result =>
        {
            if (result.GetResult(peers) is not null && result.GetResult(initialPeers) is not null)
            {
                result.AddError("--peers and --initial-peers are exclusive: name the servers, or the swarm's DHT nodes to find them through.");
            }

            if (result.GetValue(verifyRate) is var rate && !(rate >= 0 && rate <= 1))
            {
                result.AddError(string.Create(CultureInfo.InvariantCulture, $"--verify-rate must be between 0 and 1, not {rate}."));
            }

            var remote = result.GetResult(peers) is not null || result.GetResult(initialPeers) is not null;
            if (result.GetResult(quant) is not null && remote)
            {
                result.AddError("--quant quantizes the blocks run in this process; with --peers or --initial-peers the servers' own --quant decides: pin it with --require-quant.");
            }

            if (result.GetResult(adapters) is not null && remote)
            {
                result.AddError("--adapters loads adapters into the blocks run in this process; with --peers or --initial-peers the servers hold them (petals serve --adapters): name one with --adapter.");
            }

            if (result.GetResult(requireQuant) is not null && !remote)
            {
                result.AddError("--require-quant needs --peers or --initial-peers (it filters servers); blocks run here use --quant.");
            }

            if (result.GetResult(modelId) is not null && result.GetResult(initialPeers) is null)
            {
                result.AddError("--model-id needs --initial-peers (it names the model in the swarm's announcements).");
            }

            foreach (var list in new[] { allowPeers, blockPeers })
            {
                if (result.GetResult(list) is not null && result.GetResult(initialPeers) is null)
                {
                    result.AddError($"{list.Name} needs --initial-peers (it filters the servers found in the swarm).");
                }
                else if (result.GetResult(list) is not null && ClientDiscovery.ParsePeerIds(result.GetValue(list)).Count == 0)
                {
                    result.AddError($"{list.Name} names no peer id.");
                }
            }
        });

        command.SetAction((parse, cancellationToken) => context.RunAsync(async ct =>
        {
            var quantization = QuantizationOptions.ParseQuant(parse.GetValue(quant));
            var required = QuantizationOptions.ParseRequired(parse.GetValue(requireQuant));
            var adapterDirectories = AdapterOptions.ParseAdapters(parse.GetValue(adapters));
            var options = new GenerationOptions
            {
                Adapter = AdapterOptions.ParseAdapter(parse.GetValue(adapter)),
                MaxNewTokens = parse.GetValue(maxNewTokens),
                Sampling = new SamplingOptions
                {
                    Temperature = parse.GetValue(temperature),
                    TopK = parse.GetValue(topK),
                    TopP = parse.GetValue(topP),
                    RepetitionPenalty = parse.GetValue(repetitionPenalty),
                    Seed = parse.GetValue(seed),
                },
            };
            options.Validate();
            var json = ModelOptions.IsJson(parse.GetValue(output));
            var plain = parse.GetValue(insecure);
            TransportSecurity.Warn(context, plain);

            var peerList = parse.GetValue(peers);
            var dhtPeers = parse.GetValue(initialPeers);
            var load = Stopwatch.StartNew();

            var modelPath = parse.GetValue(model)!;
            if (dhtPeers is not null && !File.Exists(modelPath) && !Directory.Exists(modelPath))
            {
                throw new FileNotFoundException($"Model '{modelPath}' does not exist.", modelPath);
            }

            // The DHT node outlives the model: the model's sequence manager keeps reading through it.
            await using var swarm = dhtPeers is null ? null : await ClientDiscovery.JoinAsync(dhtPeers, plain, !parse.GetValue(noMultiplex), ct).ConfigureAwait(false);
            if (swarm is not null)
            {
                foreach (var met in swarm.Met)
                {
                    context.Info(met);
                }

                context.Info($"joined the swarm as DHT node {swarm.Node.Id} through {dhtPeers}", load);
            }

            await using var client = swarm is not null
                ? swarm.CreateClient(modelPath, parse.GetValue(modelId), parse.GetValue(wireCodec), ClientDiscovery.ParsePeerIds(parse.GetValue(allowPeers)), ClientDiscovery.ParsePeerIds(parse.GetValue(blockPeers)), parse.GetValue(verifyRate), required)
                : peerList is null ? null : SwarmOptions.CreateClient(parse.GetValue(model)!, peerList, parse.GetValue(wireCodec), plain, parse.GetValue(verifyRate), !parse.GetValue(noMultiplex), required);
            using var lm = client is not null
                ? await client.ConnectAsync(ct).ConfigureAwait(false)
                : ModelOptions.LoadLocal(parse.GetValue(model)!, parse.GetValue(threads), quantization, adapterDirectories);
            context.Info($"loaded {lm.Config.NumLayers} blocks, hidden {lm.Config.HiddenSize}, vocab {lm.Config.VocabSize}", load);
            if (lm.Blocks is RemoteTransformerBlocks remote)
            {
                foreach (var span in remote.Spans)
                {
                    // A server given as host:port proved a key; the handshake's peer id was checked against it.
                    if (peerList is not null && TransportSecurity.MetLine(span.Address, span.PeerId) is { } met)
                    {
                        context.Info(met);
                    }

                    context.Info(span.Info.Quantization is { } q ? $"blocks {span.Blocks} on {span}, weights {q}" : $"blocks {span.Blocks} on {span}");
                }

                // Chains of fixed --peers recover too: a server that comes back at its address, or another given server of the same blocks, takes over.
                remote.SpanRecovered += (_, recovery) => context.Info("recovered " + RecoveryJson(recovery));
                remote.VerificationFailed += (_, mismatch) => context.Info("verification failed: " + mismatch);
            }

            var tunedModel = parse.GetValue(tuned) is { } tunedDir ? LoadTuned(context, lm, tunedDir) : null;
            await RunAsync(context, lm, parse.GetValue(prompt)!, options, json, ct, tunedModel).ConfigureAwait(false);
            if (lm.Blocks is RemoteTransformerBlocks checkedRemote && parse.GetValue(verifyRate) > 0)
            {
                var stats = checkedRemote.Verification;
                context.Info(string.Create(CultureInfo.InvariantCulture, $"output checks at rate {parse.GetValue(verifyRate)}: {stats.Checks} passed or failed, {stats.Mismatches} failed, {stats.Skipped} skipped (no other server had the blocks)"));
            }

            return 0;
        }, cancellationToken));
        return command;
    }

    /// <summary>Generates from <paramref name="text"/>, streaming the text to the output (or one JSON line), and reports timing.</summary>
    internal static async Task<GenerationRun> RunAsync(CliContext context, CausalLanguageModel lm, string text, GenerationOptions options, bool json, CancellationToken ct, Petals.Training.TunedLanguageModel? tuned = null)
    {
        var promptIds = lm.EncodePrompt(text);
        var generated = new List<int>(options.MaxNewTokens);
        var decoder = lm.Tokenizer!.CreateStreamingDecoder(skipSpecialTokens: true);
        var pieces = new System.Text.StringBuilder();
        if (!json)
        {
            await context.Output.WriteAsync(text).ConfigureAwait(false);
        }

        var timer = Stopwatch.StartNew();
        var firstTokenSeconds = 0.0;
        var tokens = tuned is null ? lm.GenerateAsync(promptIds, options, ct) : tuned.GenerateAsync(promptIds, options, ct);
        await foreach (var token in tokens.ConfigureAwait(false))
        {
            if (generated.Count == 0)
            {
                firstTokenSeconds = timer.Elapsed.TotalSeconds;
            }

            generated.Add(token);
            var piece = decoder.Append(token);
            pieces.Append(piece);
            if (!json && piece.Length > 0)
            {
                await context.Output.WriteAsync(piece).ConfigureAwait(false);
                await context.Output.FlushAsync(ct).ConfigureAwait(false);
            }
        }

        var rest = decoder.Flush();
        pieces.Append(rest);
        var seconds = timer.Elapsed.TotalSeconds;
        if (json)
        {
            context.WriteJsonLine(w =>
            {
                w.WriteStartObject();
                WriteIds(w, "prompt_ids", promptIds);
                WriteIds(w, "generated_ids", generated);
                w.WriteString("text", pieces.ToString());
                w.WriteEndObject();
            });
        }
        else
        {
            await context.Output.WriteLineAsync(rest).ConfigureAwait(false);
        }

        var decodeRate = generated.Count > 1 ? (generated.Count - 1) / Math.Max(1e-9, seconds - firstTokenSeconds) : 0;
        context.Info(string.Create(CultureInfo.InvariantCulture,
            $"prompt {promptIds.Length} tokens, generated {generated.Count} tokens in {seconds:F2} s (first token {firstTokenSeconds * 1000:F0} ms, then {decodeRate:F1} tokens/s)"));
        if (lm.Blocks is RemoteTransformerBlocks remote && generated.Count > 0)
        {
            context.Info(string.Create(CultureInfo.InvariantCulture,
                $"wire: {remote.BytesSent} bytes sent, {remote.BytesReceived} received over {remote.Spans.Count} servers ({(remote.BytesSent + remote.BytesReceived) / (double)generated.Count / remote.Spans.Count:F0} bytes per token per server)"));
        }

        return new GenerationRun(promptIds, generated, pieces.ToString(), seconds, firstTokenSeconds, decodeRate);
    }

    /// <summary>The <c>--tuned DIR</c> option of generate and perplexity.</summary>
    internal static Option<string?> TunedOption() =>
        new("--tuned") { Description = "Use the parameters trained by `petals finetune` in this directory (prefix prompts, deep prompts or LoRA)." };

    /// <summary>Loads the parameters of <c>--tuned</c> for <paramref name="lm"/> and says what they are.</summary>
    internal static Petals.Training.TunedLanguageModel LoadTuned(CliContext context, CausalLanguageModel lm, string directory)
    {
        var tuned = Petals.Training.TunedLanguageModel.Load(lm, directory);
        var options = tuned.Model.Options;
        context.Info(string.Create(CultureInfo.InvariantCulture,
            $"tuned parameters from {directory}: {options.Mode}, {tuned.Model.Parameters.Sum(p => p.Values.Length)} values, prefix {tuned.Model.PrefixLength} positions"));
        return tuned;
    }

    /// <summary>
    /// One recovery as a JSON object: <c>{"position":…,"blocks":"2:4","failed":"PEER","failed_address":"tcp://…",
    /// "replacements":["2:3 by PEER",…],"replayed_tokens":…,"attempt":…,"detection_to_resume_ms":…,"error":"…"}</c>.
    /// </summary>
    internal static string RecoveryJson(SpanRecovery recovery)
    {
        using var buffer = new MemoryStream();
        using (var w = new System.Text.Json.Utf8JsonWriter(buffer, CliContext.JsonOptions))
        {
            w.WriteStartObject();
            w.WriteNumber("position", recovery.Position);
            w.WriteString("blocks", recovery.Blocks.ToString());
            w.WriteString("failed", recovery.FailedPeerId);
            w.WriteString("failed_address", recovery.FailedAddress.ToString());
            w.WriteStartArray("replacements");
            foreach (var replacement in recovery.Replacements)
            {
                w.WriteStringValue($"{replacement.Blocks} by {replacement.PeerId}");
            }

            w.WriteEndArray();
            w.WriteNumber("replayed_tokens", recovery.ReplayedTokens);
            w.WriteNumber("attempt", recovery.Attempt);
            w.WriteNumber("detection_to_resume_ms", Math.Round(recovery.DetectionToResume.TotalMilliseconds, 2));
            w.WriteString("error", recovery.Error.Message);
            w.WriteEndObject();
        }

        return System.Text.Encoding.UTF8.GetString(buffer.GetBuffer(), 0, (int)buffer.Length);
    }

    internal static void WriteIds(System.Text.Json.Utf8JsonWriter writer, string name, IReadOnlyList<int> ids)
    {
        writer.WriteStartArray(name);
        foreach (var id in ids)
        {
            writer.WriteNumberValue(id);
        }

        writer.WriteEndArray();
    }
}

/// <summary>What one generation produced and how fast.</summary>
internal sealed record GenerationRun(int[] PromptIds, List<int> GeneratedIds, string Text, double Seconds, double FirstTokenSeconds, double DecodeTokensPerSecond);
