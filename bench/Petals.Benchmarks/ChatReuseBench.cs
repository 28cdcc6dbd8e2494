using System.Diagnostics;
using System.Globalization;
using Microsoft.Extensions.AI;
using Petals.Backends.Cpu;
using Petals.Client;
using Petals.Extensions.AI;
using Petals.Formats;
using Petals.Formats.HuggingFace;
using Petals.Models;
using Petals.Server;
using Petals.Transport;
using Petals.Transport.Multiplexing;
using Petals.Transport.Tcp;

namespace Petals.Benchmarks;

/// <summary>
/// Time to first token of each turn of a chat through <see cref="PetalsChatClient"/> with server-side cache reuse
/// (the kept session prefills only the new tokens) and without it (<c>MaxCachedConversations = 0</c>: every turn prefills
/// the whole history on a fresh session). One block server over TCP on 127.0.0.1 in this process, a random Llama with
/// the Mistral tokenizer, the plain chat format; greedy.
/// </summary>
internal static class ChatReuseBench
{
    private static readonly string[] Words =
    [
        "the", "little", "boat", "sailed", "across", "a", "quiet", "harbour", "while", "gulls", "circled", "above", "old",
        "lighthouse", "keeper", "watched", "from", "his", "window", "and", "wondered", "whether", "storm", "would", "come",
        "before", "evening", "children", "ran", "along", "shore", "collecting", "shells", "stones", "bright", "pieces", "of",
        "glass", "that", "waves", "had", "polished", "over", "many", "years", "their", "mother", "called", "them", "home",
    ];

    public static async Task<int> RunAsync(string modelDirectory, string tokenizerDirectory, int hidden, int layers, int turns, int messageTokens, int maxOutputTokens, int rounds, int threads)
    {
        if (!File.Exists(Path.Combine(modelDirectory, "config.json")))
        {
            RandomLlamaCheckpoint.Write(modelDirectory, SwarmBench.Shape(hidden, layers), 1, maxShardBytes: 2L << 30);
        }

        foreach (var file in new[] { "tokenizer.json", "tokenizer_config.json" })
        {
            File.Copy(Path.Combine(tokenizerDirectory, file), Path.Combine(modelDirectory, file), overwrite: true);
        }

        using var weights = ModelLoader.Open(modelDirectory);
        var config = weights.Config;
        ITransport transport = new TcpTransport().WithMultiplexing();
        using var executor = new CpuBlockExecutorFactory(new CpuExecutorOptions { ThreadCount = threads }).Create(weights, new BlockRange(0, config.NumLayers));
        await using var server = new BlockServer(executor, new BlockServerOptions
        {
            Blocks = new BlockRange(0, config.NumLayers),
            ModelId = ModelIdentity.Compute(modelDirectory, config),
            PeerId = "chat-bench",
        });
        await using var listener = await transport.ListenAsync(PeerAddress.Parse("tcp://127.0.0.1:0"));
        await server.StartAsync(listener);
        using var model = await RemoteModel.ConnectAsync(modelDirectory, transport, [listener.LocalAddress]);

        var random = new Random(5);
        var messages = new string[turns];
        for (var t = 0; t < turns; t++)
        {
            // Words until the message is messageTokens tokens long.
            var text = new List<string>();
            while (model.Tokenizer!.Encode(string.Join(' ', text), addSpecialTokens: false).Length < messageTokens)
            {
                text.Add(Words[random.Next(Words.Length)]);
            }

            messages[t] = string.Join(' ', text);
        }

        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"model: random Llama hidden {config.HiddenSize}, {config.NumLayers} blocks, vocab {config.VocabSize}, fp32; one server over TCP (127.0.0.1, {threads} threads) in this process; {turns} turns, user messages of {messageTokens} tokens, replies of {maxOutputTokens} tokens (greedy)"));
        var results = new Dictionary<bool, List<double>[]>
        {
            [true] = [.. Enumerable.Range(0, turns).Select(_ => new List<double>())],
            [false] = [.. Enumerable.Range(0, turns).Select(_ => new List<double>())],
        };
        // Warm-up (JIT, pools, the server's first session), not measured.
        using (var warm = new PetalsChatClient(model, new PetalsChatClientOptions { MaxCachedConversations = 0 }))
        {
            await warm.GetResponseAsync([new ChatMessage(ChatRole.User, messages[0])], new ChatOptions { MaxOutputTokens = 4 });
        }

        var prompts = new int[turns];
        var prefilled = new long[turns];
        string[]? reference = null;
        for (var round = 0; round < rounds; round++)
        {
            foreach (var reuse in new[] { false, true })
            {
                using var client = new PetalsChatClient(model, new PetalsChatClientOptions { MaxCachedConversations = reuse ? 4 : 0 });
                var history = new List<ChatMessage>();
                var replies = new string[turns];
                for (var t = 0; t < turns; t++)
                {
                    history.Add(new ChatMessage(ChatRole.User, messages[t]));
                    var before = server.GetStatistics().TokensProcessed;
                    var timer = Stopwatch.StartNew();
                    double? firstToken = null;
                    var text = new System.Text.StringBuilder();
                    UsageDetails? usage = null;
                    await foreach (var update in client.GetStreamingResponseAsync(history, new ChatOptions { MaxOutputTokens = maxOutputTokens }))
                    {
                        firstToken ??= timer.Elapsed.TotalMilliseconds;
                        text.Append(update.Text);
                        usage = update.Contents.OfType<UsageContent>().FirstOrDefault()?.Details ?? usage;
                    }

                    results[reuse][t].Add(firstToken!.Value);
                    replies[t] = text.ToString();
                    history.Add(new ChatMessage(ChatRole.Assistant, replies[t]));
                    prompts[t] = (int)usage!.InputTokenCount!.Value;
                    if (reuse)
                    {
                        // Positions the server ran for this turn, minus the generated ones: the prefill.
                        prefilled[t] = server.GetStatistics().TokensProcessed - before - (usage.OutputTokenCount!.Value - 1);
                    }
                }

                reference ??= replies;
                if (!reference.SequenceEqual(replies))
                {
                    Console.Error.WriteLine($"replies differ between runs (reuse {reuse}, round {round})");
                    return 4;
                }
            }
        }

        Console.WriteLine("turn  prompt tokens  prefilled with reuse  TTFT without reuse (median ms)  TTFT with reuse (median ms)  ratio");
        for (var t = 0; t < turns; t++)
        {
            var off = Median(results[false][t]);
            var on = Median(results[true][t]);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{t + 1,4}  {prompts[t],13}  {prefilled[t],20}  {off,30:F0}  {on,27:F0}  {off / on,5:F2}x"));
        }

        Console.WriteLine("replies identical with and without reuse in every round: yes");
        return 0;
    }

    private static double Median(List<double> values)
    {
        var sorted = values.Order().ToArray();
        return sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[(sorted.Length / 2) - 1] + sorted[sorted.Length / 2]) / 2;
    }
}
