using Microsoft.Extensions.DependencyInjection;
using Petals.Client;

namespace Petals.Hosting;

/// <summary>
/// Settings of the client that <see cref="PetalsServiceCollectionExtensions.AddPetalsClient"/> registers;
/// validated when the host starts (every failure is listed, each naming the property at fault).
/// </summary>
public sealed class PetalsClientOptions
{
    /// <summary>The model: the same .gguf file or Hugging Face directory the servers run; only its embeddings, final norm, head and tokenizer are read. Required.</summary>
    public string ModelPath { get; set; } = string.Empty;

    /// <summary>
    /// The servers' addresses, e.g. <c>tcp://127.0.0.1:5000</c>; together they must cover every block of the model. Leave
    /// it empty to find servers through the client's discovery (<c>UseDhtDiscovery</c>, <c>UseDiscovery</c>).
    /// </summary>
    public IList<string> Peers { get; } = new List<string>();

    /// <summary>The model id to name; null (the default) computes it with <see cref="Formats.ModelIdentity.Compute"/>.</summary>
    public string? ModelId { get; set; }

    /// <summary>
    /// How the client talks to servers and recovers from their failures: peer id, wire codec, connect, request and
    /// liveness timeouts, recovery attempts and backoff, protocol limits (see <see cref="RemoteSequenceOptions"/>).
    /// </summary>
    public RemoteSequenceOptions Sequence { get; set; } = new();

    /// <summary>
    /// How the client reads the swarm, routes and judges servers' health: refresh interval, chain attempts, the router's
    /// allow and block lists and costs, bans and pings (see <see cref="SwarmSequenceOptions"/>). Used with discovery;
    /// with <see cref="Peers"/> the allow and block lists do not apply (the peers are the ones given).
    /// </summary>
    public SwarmSequenceOptions Swarm { get; set; } = new();
}
