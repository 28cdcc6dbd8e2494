using Petals.Client;
using Petals.Discovery;
using Petals.Routing;

namespace Petals.Server.Http.Health;

/// <summary>
/// Reads the swarm's state from discovery: the model index, every block's announcements of each model and the chain a
/// client would take now. Shared by <c>petals status</c> and the health monitor.
/// </summary>
public static class SwarmReader
{
    /// <summary>Reads the model index and every block of each model (or of <paramref name="only"/>).</summary>
    /// <param name="discovery">The swarm's discovery.</param>
    /// <param name="only">The one model to read, or null for all.</param>
    /// <param name="requiredQuantization">With a value, the chain reported uses only servers announcing it.</param>
    /// <param name="cancellationToken">Cancels the lookups.</param>
    /// <returns>One report per model, in the model index's order.</returns>
    /// <exception cref="RemoteChainException">When <paramref name="only"/> is not in the model index.</exception>
    public static async Task<IReadOnlyList<SwarmModelReport>> ReadAsync(IPeerDiscovery discovery, string? only, string? requiredQuantization = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(discovery);
        var models = await discovery.GetModelsAsync(cancellationToken).ConfigureAwait(false);
        if (only is not null)
        {
            var match = models.Where(m => string.Equals(m.ModelId, only, StringComparison.Ordinal)).ToArray();
            if (match.Length == 0)
            {
                throw new RemoteChainException(models.Count == 0
                    ? $"Model '{only}' is not announced in the swarm: no model is."
                    : $"Model '{only}' is not announced in the swarm; it announces {string.Join(", ", models.Select(m => m.ModelId))}.");
            }

            models = match;
        }

        var reports = new List<SwarmModelReport>(models.Count);
        foreach (var model in models)
        {
            await using var sequence = new SwarmSequenceManager(discovery, model.ModelId, model.BlockCount);
            await sequence.RefreshAsync(cancellationToken).ConfigureAwait(false);
            IReadOnlyList<RouteSegment>? chain = null;
            string? problem = null;
            try
            {
                // The route a client of one sequence would take now (no round trips measured: announced figures only).
                chain = sequence.RouteInference(1, 0, requiredQuantization: requiredQuantization);
            }
            catch (RemoteChainException e)
            {
                problem = e.Message;
            }

            reports.Add(new SwarmModelReport(model, sequence.Announcements, chain, problem, sequence.IgnoredServers));
        }

        return reports;
    }
}

/// <summary>What the swarm shows for one model: its index entry, each block's announcements, the chain a client would take (or why none) and the servers ignored.</summary>
/// <param name="Model">The model's entry in the model index.</param>
/// <param name="Blocks">Each block's announcements.</param>
/// <param name="Chain">The chain a client would take now, or null when there is none.</param>
/// <param name="Problem">Why there is no chain, or null.</param>
/// <param name="Ignored">The announcements ignored, and why.</param>
public sealed record SwarmModelReport(SwarmModelInfo Model, IReadOnlyList<BlockServers> Blocks, IReadOnlyList<RouteSegment>? Chain, string? Problem, IReadOnlyList<string> Ignored);
