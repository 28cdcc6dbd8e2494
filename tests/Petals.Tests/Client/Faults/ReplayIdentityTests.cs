using Petals.Models;
using Petals.Tests.Generation;

namespace Petals.Tests.Client.Faults;

/// <summary>
/// Why recovery can be checked for exact equality: a history replayed as one prefill leaves the same attention cache,
/// bit for bit, as the steps that built it, so every later step's outputs are bit-identical too.
/// </summary>
public sealed class ReplayIdentityTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Theory]
    [InlineData(2, 5, 6)]
    [InlineData(4, 3, 9)]
    [InlineData(6, 1, 12)]
    public async Task Replaying_the_history_as_one_prefill_gives_bit_identical_later_steps(int layers, int prompt, int steps)
    {
        using var model = new TinyModel(layers);
        var random = new Random(layers);
        var inputs = new List<float[]> { Random(random, prompt) };
        for (var i = 1; i < steps; i++)
        {
            inputs.Add(Random(random, 1));
        }

        var next = Random(random, 1);
        using var blocks = model.CreateLocalBlocks();

        // Incremental: the prompt, then one token per step, then the next token.
        float[] incremental;
        await using (var session = await blocks.OpenSessionAsync(1, 64, Ct))
        {
            foreach (var input in inputs)
            {
                await session.ForwardAsync(input.ToArray(), input.Length / TinyModel.Hidden, Ct);
            }

            incremental = next.ToArray();
            await session.ForwardAsync(incremental, 1, Ct);
        }

        // Replay: the whole history as one prefill (what a replacement server receives), then the next token.
        float[] replayed;
        await using (var session = await blocks.OpenSessionAsync(1, 64, Ct))
        {
            var history = inputs.SelectMany(x => x).ToArray();
            await session.ForwardAsync(history, history.Length / TinyModel.Hidden, Ct);
            replayed = next.ToArray();
            await session.ForwardAsync(replayed, 1, Ct);
        }

        Assert.Equal(incremental, replayed); // exact: no tolerance
        Assert.NotEqual(next, replayed);
    }

    private static float[] Random(Random random, int tokens)
    {
        var values = new float[tokens * TinyModel.Hidden];
        for (var i = 0; i < values.Length; i++)
        {
            values[i] = (float)((random.NextDouble() * 2) - 1);
        }

        return values;
    }
}
