using System.Collections.Concurrent;
using Petals.Hosting;

namespace Petals.Extensions.AI;

/// <summary>
/// The models the DI registrations connect through a registered <see cref="IPetalsClient"/>: one per client, shared by every
/// chat client and embedding generator registered without a factory, connected on the first use by any of them and
/// disposed with the container (a singleton resolved before the clients, so disposed after them).
/// </summary>
internal sealed class PetalsClientModels : IAsyncDisposable
{
    private readonly ConcurrentDictionary<IPetalsClient, PetalsModelSource> _models = new(ReferenceEqualityComparer.Instance);

    /// <summary>A source for one registration: the shared model of <paramref name="client"/>, which the registration does not own.</summary>
    public PetalsModelSource For(IPetalsClient client)
    {
        var shared = _models.GetOrAdd(client, static c => new PetalsModelSource(c.ConnectAsync));
        return new PetalsModelSource(ct => shared.GetAsync(ct).AsTask(), ownsModel: false);
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var source in _models.Values)
        {
            await source.DisposeAsync().ConfigureAwait(false);
        }
    }
}
