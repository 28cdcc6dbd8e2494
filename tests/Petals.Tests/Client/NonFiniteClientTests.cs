using Petals.Models;
using Petals.Tensors;
using Petals.Testing.Transport;
using Petals.Tests.Generation;

namespace Petals.Tests.Client;

/// <summary>The client refuses to send NaN or infinities (servers would refuse them with <c>non_finite_input</c>).</summary>
public sealed class NonFiniteClientTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(60);

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task A_session_step_or_forward_with_a_NaN_or_infinity_is_refused_before_anything_is_sent_and_the_session_goes_on()
    {
        using var fixture = new RandomModelFixture(TensorDType.F32, tied: false, layers: 2);
        await using var swarm = await Swarm.StartAsync(fixture, new MemoryTransport(), [new BlockRange(0, 2)]);
        await using var remote = await swarm.ConnectAsync();
        var hidden = fixture.Config.HiddenSize;
        await using var session = await remote.OpenSessionAsync(1, 8, Ct);
        var bad = new float[2 * hidden];
        bad[hidden + 3] = float.PositiveInfinity;
        var error = await Assert.ThrowsAsync<ArgumentException>(async () => await session.ForwardAsync(bad, 2, Ct));
        Assert.Equal("hidden", error.ParamName);
        Assert.StartsWith($"Hidden states hold +Infinity at index {hidden + 3} ([0, 1, 3]); servers refuse non-finite inputs, so nothing was sent.", error.Message, StringComparison.Ordinal);
        Assert.Equal(0, swarm.Servers[0].GetStatistics().InferenceSteps);
        Assert.Equal(0, swarm.Servers[0].GetStatistics().NonFiniteInputsRefused);

        // The session was not broken: a finite step runs at position 0.
        await session.ForwardAsync(new float[hidden], 1, Ct).AsTask().WaitAsync(Bound, Ct);
        Assert.Equal(1, session.Position);

        var nan = new float[hidden];
        nan[0] = float.NaN;
        var forward = await Assert.ThrowsAsync<ArgumentException>(async () => await remote.ForwardAsync(nan, 1, 1, Ct));
        Assert.Contains("Hidden states hold NaN at index 0 ([0, 0, 0])", forward.Message, StringComparison.Ordinal);
        Assert.Equal(0, swarm.Servers[0].GetStatistics().ForwardCalls);
    }
}
