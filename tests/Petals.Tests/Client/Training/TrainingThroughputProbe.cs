using System.Diagnostics;
using System.Globalization;
using Petals.Backends.Cpu;
using Petals.Execution;
using Petals.Formats;
using Petals.Inference;
using Petals.Models;
using Petals.Testing;
using Petals.Testing.Transport;

namespace Petals.Tests.Client.Training;

/// <summary>
/// A measurement, run on demand (<c>-explicit only</c>): deep-prompt training steps (forward + backward over all blocks)
/// of the shared stories260K model through a 3-server in-memory swarm against the same steps on local blocks, in one
/// process. Prints steps/s of both and their ratio.
/// </summary>
public sealed class TrainingThroughputProbe(ITestOutputHelper output)
{
    [Fact(Explicit = true)]
    public async Task Training_steps_per_second_through_a_three_server_swarm_against_local_blocks()
    {
        if (!TestData.SharedAvailable)
        {
            Assert.Skip(TestData.MissingMessage);
        }

        var ct = TestContext.Current.CancellationToken;
        using var weights = ModelLoader.Open(TestData.Stories260KGguf);
        var factory = new CpuBlockExecutorFactory(new CpuExecutorOptions { ThreadCount = 2 });
        var config = weights.Config;
        var layers = config.NumLayers;
        BlockRange[] spans = [new(0, 2), new(2, 4), new(4, layers)];
        await using var swarm = await Swarm.StartAsync(span => factory.Create(weights, span), new MemoryTransport(), spans);
        await using var remote = await swarm.ConnectAsync();
        using var local = new LocalTransformerBlocks([factory.Create(weights, new BlockRange(0, layers))]);
        const int batch = 4, tokens = 64, prefix = 16, steps = 20;
        var random = new Random(1);
        var input = Enumerable.Range(0, batch * tokens * config.HiddenSize).Select(_ => (float)(random.NextDouble() - 0.5)).ToArray();
        var prompts = new float[layers * batch * prefix * config.HiddenSize];

        async Task<double> RunAsync(ITransformerBlocks blocks)
        {
            var watch = new Stopwatch();
            for (var step = -3; step < steps; step++)
            {
                if (step == 0)
                {
                    watch.Start();
                }

                var hidden = input.ToArray();
                using var activations = await blocks.ForwardAsync(hidden, batch, tokens, new BlockAdaptation { Prompts = prompts, PromptLength = prefix }, ct);
                await blocks.BackwardAsync(activations, hidden, new BlockGradients { Prompts = new float[prompts.Length] }, ct);
            }

            return steps / watch.Elapsed.TotalSeconds;
        }

        var localRate = await RunAsync(local);
        var remoteRate = await RunAsync(remote);
        var localAgain = await RunAsync(local);
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"stories260K deep-prompt training, batch {batch} x {tokens} tokens, prefix {prefix}: local {localRate:0.0} / {localAgain:0.0} steps/s, 3-server memory swarm {remoteRate:0.0} steps/s, ratio {remoteRate / ((localRate + localAgain) / 2):0.00}"));
    }
}
