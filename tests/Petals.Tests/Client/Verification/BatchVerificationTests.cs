using Petals.Client;
using Petals.Models;
using Petals.Tests.Client.Faults;

namespace Petals.Tests.Client.Verification;

/// <summary>Checks of sessions with a batch of several sequences (the gathered, scattered path of a session).</summary>
public sealed class BatchVerificationTests
{
    private const int Batch = 3;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_batched_session_is_checked_row_by_row_and_a_liar_is_replaced_before_its_rows_are_used(bool withLiar)
    {
        using var model = new TinyModel(4);
        await using var rig = await VerificationRig.StartAsync(model, [new(0, 4), new(0, 2), new(2, 4), new(0, 2), new(2, 4)], (i, _) => withLiar && i == 0);
        await using var remote = await rig.ConnectAsync(new VerificationOptions { Rate = 1 });
        using var local = model.CreateLocalBlocks();
        var mismatches = new List<OutputMismatch>();
        remote.VerificationFailed += (_, m) => mismatches.Add(m);
        await using var remoteSession = await remote.OpenSessionAsync(Batch, 8, Ct);
        await using var localSession = await local.OpenSessionAsync(Batch, 8, Ct);
        var random = new Random(4);
        foreach (var tokens in new[] { 3, 1, 2, 1 })
        {
            var input = new float[Batch * tokens * TinyModel.Hidden];
            for (var i = 0; i < input.Length; i++)
            {
                input[i] = (float)((random.NextDouble() * 2) - 1);
            }

            var (expected, actual) = (input.ToArray(), input.ToArray());
            await localSession.ForwardAsync(expected, tokens, Ct);
            await remoteSession.ForwardAsync(actual, tokens, Ct);
            Assert.True(OutputVerifier.RelativeError(actual, expected, Batch, tokens, 0, TinyModel.Hidden) < 1e-5, "the batch's outputs are the local ones");
        }

        if (withLiar)
        {
            var mismatch = Assert.Single(mismatches);
            Assert.Equal(("server-0", OutputVerdict.ServerWrong, 0, 3), (mismatch.PeerId, mismatch.Verdict, mismatch.Position, mismatch.Tokens));
        }
        else
        {
            Assert.Empty(mismatches);
        }

        Assert.True(remote.Verification.Checks >= 4);
    }
}
