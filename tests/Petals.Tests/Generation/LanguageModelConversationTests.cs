using FsCheck;
using FsCheck.Fluent;
using Petals.Generation;
using Petals.Tensors;

namespace Petals.Tests.Generation;

/// <summary>
/// A conversation keeps its session open across generations and prefills only what a prompt adds; its tokens equal a fresh
/// session's.
/// </summary>
public sealed class LanguageModelConversationTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task TurnsPrefillOnlyTheirNewTokensAndEqualAFreshSession(bool sampled)
    {
        using var fixture = new RandomModelFixture(TensorDType.F32, tied: false);
        using var model = fixture.CreateModel(new(0, 2), new(2, 4));
        await using var conversation = await model.OpenConversationAsync(200, Ct);
        var options = new GenerationOptions
        {
            MaxNewTokens = 9,
            StopTokenIds = [],
            Sampling = sampled ? new SamplingOptions { Temperature = 0.9, TopK = 20, Seed = 5, FrequencyPenalty = 0.5, PresencePenalty = 0.2 } : SamplingOptions.Greedy,
        };
        var random = new Random(3);
        var prompt = new List<int> { 1, 5, 9, 11 };
        for (var turn = 0; turn < 4; turn++)
        {
            var processed = conversation.ProcessedCount;
            var reused = await conversation.GenerateAsync(prompt, options, Ct).ToArrayAsync(Ct);
            var fresh = await model.GenerateAsync(prompt, options, Ct).ToArrayAsync(Ct);
            Assert.Equal(fresh, reused);
            Assert.Equal(prompt.Count - processed, conversation.LastPrefillCount);

            // The session holds the prompt and every generated token but the last (which was never run).
            Assert.Equal([.. prompt, .. reused[..^1]], conversation.ProcessedTokens.ToArray());

            // The next turn: the whole history with the reply, then a new message.
            prompt.AddRange(reused);
            prompt.AddRange(Enumerable.Range(0, random.Next(1, 8)).Select(_ => random.Next(3, 97)));
            Assert.True(conversation.CanContinue(prompt, options.MaxNewTokens));
        }

        Assert.True(conversation.ProcessedCount > 40);
    }

    [Fact]
    public void AnySequenceOfPromptsOnOneConversationGivesTheTokensOfFreshSessions()
    {
        using var fixture = new RandomModelFixture(TensorDType.F32, tied: false, layers: 2);
        using var model = fixture.CreateModel();

        // Each turn: the whole history plus new tokens, the history cut at a random point plus new tokens, or unrelated.
        var turn = Gen.Elements(0, 1, 2).SelectMany(kind => Gen.Choose(0, 1000).SelectMany(cut => Gen.Choose(3, 96).ArrayOf().Where(a => a.Length is > 0 and < 6).Select(tail => (kind, cut, tail))));
        Prop.ForAll(
            turn.ArrayOf().Where(t => t.Length is > 0 and <= 5).ToArbitrary(),
            Gen.Choose(1, 6).ToArbitrary(),
            (turns, maxNew) =>
            {
                var options = new GenerationOptions { MaxNewTokens = maxNew, StopTokenIds = [] };
                var conversation = model.OpenConversationAsync(128, Ct).GetAwaiter().GetResult();
                try
                {
                    var history = new List<int> { 1 };
                    foreach (var (kind, cut, tail) in turns)
                    {
                        history = kind switch
                        {
                            0 => history,
                            1 => history.Take(1 + (cut % history.Count)).ToList(),
                            _ => [1],
                        };
                        history.AddRange(tail);
                        var expected = model.GenerateAsync(history, options, Ct).ToArrayAsync(Ct).AsTask().GetAwaiter().GetResult();
                        var shared = conversation.CommonPrefixLength(history);
                        var actual = conversation.GenerateAsync(history, options, Ct).ToArrayAsync(Ct).AsTask().GetAwaiter().GetResult();
                        Assert.Equal(expected, actual);
                        Assert.Equal(history.Count - shared, conversation.LastPrefillCount);
                        history.AddRange(actual);
                    }
                }
                finally
                {
                    conversation.DisposeAsync().AsTask().GetAwaiter().GetResult();
                }
            }).QuickCheckThrowOnFailure();
    }

    [Fact]
    public async Task StoppingEarlyKeepsTheTokensRunSoFar()
    {
        using var fixture = new RandomModelFixture(TensorDType.F32, tied: false);
        using var model = fixture.CreateModel();
        await using var conversation = await model.OpenConversationAsync(64, Ct);
        var taken = new List<int>();
        await foreach (var token in conversation.GenerateAsync([1, 4, 6], new GenerationOptions { MaxNewTokens = 20, StopTokenIds = [] }, Ct))
        {
            taken.Add(token);
            if (taken.Count == 3)
            {
                break;
            }
        }

        Assert.True(conversation.IsUsable);
        Assert.Equal([1, 4, 6, taken[0], taken[1]], conversation.ProcessedTokens.ToArray());
        var next = new[] { 1, 4, 6, taken[0], taken[1], taken[2], 7 };
        var reused = await conversation.GenerateAsync(next, new GenerationOptions { MaxNewTokens = 5 }, Ct).ToArrayAsync(Ct);
        Assert.Equal(await model.GenerateAsync(next, new GenerationOptions { MaxNewTokens = 5 }, Ct).ToArrayAsync(Ct), reused);
        Assert.Equal(2, conversation.LastPrefillCount);
    }

    [Fact]
    public async Task APromptSharingOnlyAPrefixRollsTheSessionBackToIt()
    {
        using var fixture = new RandomModelFixture(TensorDType.F32, tied: false);
        using var model = fixture.CreateModel(new(0, 1), new(1, 4));
        await using var conversation = await model.OpenConversationAsync(64, Ct);
        Assert.True(conversation.CanRollBack);
        var options = new GenerationOptions { MaxNewTokens = 6, StopTokenIds = [] };
        var first = await conversation.GenerateAsync([1, 2, 3, 4, 5], options, Ct).ToArrayAsync(Ct);

        // The history edited at its fourth token: three are kept, the rest rolled back and run again.
        int[] edited = [1, 2, 3, 9, 5, first[0], 7];
        Assert.Equal(3, conversation.CommonPrefixLength(edited));
        Assert.False(conversation.IsPrefixOf(edited));
        var reused = await conversation.GenerateAsync(edited, options, Ct).ToArrayAsync(Ct);
        Assert.Equal(await model.GenerateAsync(edited, options, Ct).ToArrayAsync(Ct), reused);
        Assert.Equal(edited.Length - 3, conversation.LastPrefillCount);
        Assert.Equal([.. edited, .. reused[..^1]], conversation.ProcessedTokens.ToArray());

        // The very same prompt again: its last token runs again for the logits.
        var again = await conversation.GenerateAsync(edited, options, Ct).ToArrayAsync(Ct);
        Assert.Equal(reused, again);
        Assert.Equal(1, conversation.LastPrefillCount);

        // Nothing in common: everything runs again on the same session.
        int[] other = [8, 8, 8];
        Assert.Equal(0, conversation.CommonPrefixLength(other));
        Assert.Equal(await model.GenerateAsync(other, options, Ct).ToArrayAsync(Ct), await conversation.GenerateAsync(other, options, Ct).ToArrayAsync(Ct));
        Assert.Equal(3, conversation.LastPrefillCount);
    }

    [Fact]
    public async Task PromptsThatDoNotFitAreRejectedBeforeAnyWork()
    {
        using var fixture = new RandomModelFixture(TensorDType.F32, tied: false);
        using var model = fixture.CreateModel();
        await using var conversation = await model.OpenConversationAsync(20, Ct);
        var first = await conversation.GenerateAsync([1, 2, 3], new GenerationOptions { MaxNewTokens = 3, StopTokenIds = [] }, Ct).ToArrayAsync(Ct);
        var processed = conversation.ProcessedTokens.ToArray();
        Assert.Equal(5, processed.Length);

        var longer = processed.Append(7).ToArray();
        Assert.True(conversation.IsPrefixOf(longer));
        Assert.False(conversation.CanContinue(longer, 15));
        var error = await Assert.ThrowsAsync<ArgumentException>(async () => await conversation.GenerateAsync(longer, new GenerationOptions { MaxNewTokens = 15 }, Ct).ToArrayAsync(Ct));
        Assert.Contains("conversation's 20 positions", error.Message, StringComparison.Ordinal);
        error = await Assert.ThrowsAsync<ArgumentException>(async () => await conversation.GenerateAsync(longer, new GenerationOptions { Adapter = "chat" }, Ct).ToArrayAsync(Ct));
        Assert.Contains("Adapter", error.Message, StringComparison.Ordinal);
        await Assert.ThrowsAsync<ArgumentException>(async () => await conversation.GenerateAsync([.. processed, 500], null, Ct).ToArrayAsync(Ct));

        // Nothing of the refused calls reached the session.
        Assert.Equal(processed, conversation.ProcessedTokens.ToArray());
        Assert.True(conversation.CanContinue(longer, 3));

        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => model.OpenConversationAsync(1, Ct));
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => model.OpenConversationAsync(model.Config.MaxPositionEmbeddings + 1, Ct));
    }

    [Fact]
    public async Task OneGenerationAtATime()
    {
        using var fixture = new RandomModelFixture(TensorDType.F32, tied: false);
        using var model = fixture.CreateModel();
        await using var conversation = await model.OpenConversationAsync(64, Ct);
        await using var running = conversation.GenerateAsync([1, 2], new GenerationOptions { MaxNewTokens = 10, StopTokenIds = [] }, Ct).GetAsyncEnumerator(Ct);
        Assert.True(await running.MoveNextAsync());
        Assert.True(conversation.IsBusy);
        var error = await Assert.ThrowsAsync<InvalidOperationException>(async () => await conversation.GenerateAsync([1, 2, 3], null, Ct).ToArrayAsync(Ct));
        Assert.Contains("one at a time", error.Message, StringComparison.Ordinal);
        await running.DisposeAsync();
        Assert.False(conversation.IsBusy);
    }

    [Fact]
    public async Task ACancelledStepLeavesTheConversationUnusable()
    {
        using var fixture = new RandomModelFixture(TensorDType.F32, tied: false);
        using var model = fixture.CreateModel();
        await using var conversation = await model.OpenConversationAsync(64, Ct);
        using var cts = new CancellationTokenSource();
        await cts.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () => await conversation.GenerateAsync([1, 2, 3], new GenerationOptions { MaxNewTokens = 5 }, cts.Token).ToArrayAsync(Ct));
        Assert.False(conversation.IsUsable);
        Assert.Equal(0, conversation.ProcessedCount);
        var error = await Assert.ThrowsAsync<InvalidOperationException>(async () => await conversation.GenerateAsync([1, 2, 3], new GenerationOptions { MaxNewTokens = 5 }, Ct).ToArrayAsync(Ct));
        Assert.Contains("unusable", error.Message, StringComparison.Ordinal);

        await conversation.DisposeAsync();
        await Assert.ThrowsAsync<ObjectDisposedException>(async () => await conversation.GenerateAsync([1, 2, 3], new GenerationOptions { MaxNewTokens = 5 }, Ct).ToArrayAsync(Ct));
    }
}
