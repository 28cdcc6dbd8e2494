using Petals.Client;
using Petals.Generation;
using Petals.Models;
using Petals.Tensors;
using Petals.Tests.Generation;

namespace Petals.Tests.Client;

/// <summary>
/// Conversations on remote sessions: rolling back (<see cref="Inference.ITransformerSession.Truncate"/>) makes the servers
/// truncate their caches at the next step, and a server lost after a rollback is replaced from the kept inputs only.
/// </summary>
public sealed class RemoteConversationTests
{
    private const string ModelId = "random-test-model";
    private static readonly TimeSpan Bound = DiscoverySwarm.Bound;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task A_rolled_back_remote_conversation_equals_local_generation_even_across_a_recovery()
    {
        using var fixture = new RandomModelFixture(TensorDType.F32, tied: false, layers: 4);
        await using var swarm = await DiscoverySwarm.StartAsync(4, TimeProvider.System, Ct);
        await using var servers = new ShapedServers(swarm, fixture.Weights, fixture.Config.NumLayers, ModelId);
        await servers.StartAsync(1, new BlockRange(0, 4), TimeSpan.Zero); // one hop: the route chosen first
        await servers.StartAsync(2, new BlockRange(0, 2), TimeSpan.FromMilliseconds(20));
        await servers.StartAsync(3, new BlockRange(2, 4), TimeSpan.FromMilliseconds(20));
        await using var sequence = new SwarmSequenceManager(swarm.Client, ModelId, 4);
        await sequence.StartAsync(Ct).WaitAsync(Bound, Ct);
        await using var remote = await RemoteTransformerBlocks.ConnectAsync(swarm.Transport, sequence, fixture.Config, cancellationToken: Ct).WaitAsync(Bound, Ct);
        var recoveries = 0;
        remote.SpanRecovered += (_, _) => recoveries++;
        using var remoteModel = new CausalLanguageModel(LanguageModelHead.Load(fixture.Weights), remote, tokenizer: null);
        using var localModel = fixture.CreateModel();
        var options = new GenerationOptions { MaxNewTokens = 8, StopTokenIds = [] };

        await using var conversation = await remoteModel.OpenConversationAsync(64, Ct);
        Assert.True(conversation.CanRollBack);
        int[] first = [3, 14, 15, 9, 2];
        var reply = await conversation.GenerateAsync(first, options, Ct).ToArrayAsync(Ct);
        Assert.Equal(await localModel.GenerateAsync(first, options, Ct).ToArrayAsync(Ct), reply);

        // Edited after three tokens: rolled back to them; the only server of the route is stopped during the turn.
        int[] edited = [3, 14, 15, 26, 5, reply[0], 35];
        var expected = await localModel.GenerateAsync(edited, options, Ct).ToArrayAsync(Ct);
        var actual = new List<int>();
        await foreach (var token in conversation.GenerateAsync(edited, options, Ct))
        {
            actual.Add(token);
            if (actual.Count == 3)
            {
                await servers.StopAsync(0);
            }
        }

        Assert.Equal(expected, actual);
        Assert.Equal(edited.Length - 3, conversation.LastPrefillCount);
        Assert.Equal(1, recoveries);
        Assert.True(conversation.IsUsable);

        // And once more on the replacements, extending everything.
        int[] next = [.. edited, .. actual, 44];
        Assert.Equal(await localModel.GenerateAsync(next, options, Ct).ToArrayAsync(Ct), await conversation.GenerateAsync(next, options, Ct).ToArrayAsync(Ct));
        Assert.Equal(2, conversation.LastPrefillCount);
    }
}
