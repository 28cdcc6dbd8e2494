using System.Text.Json.Serialization;

namespace Petals.ML;

/// <summary>Where the blocks of a model run, as recorded by <see cref="PetalsModelReference"/>.</summary>
public enum PetalsModelLocation
{
    /// <summary>Every block in this process (the connector loads the model file with a local executor).</summary>
    Local,

    /// <summary>On the servers whose addresses are <see cref="PetalsModelReference.Peers"/>, in that order of preference.</summary>
    FixedPeers,

    /// <summary>On the servers of a swarm, found through the DHT nodes <see cref="PetalsModelReference.Peers"/>.</summary>
    Swarm,
}

/// <summary>
/// How to reach a model: the file that holds its embeddings, head and tokenizer, and where its blocks run. This, not the
/// weights, is what an ML.NET model file saved with a Petals transform records; the <see cref="PetalsModelConnector"/>
/// the application registers with <see cref="PetalsMLContextExtensions.UsePetals"/> turns it into a model.
/// </summary>
/// <remarks>Two references with the same <see cref="Key"/> share one connected model within a registration.</remarks>
public sealed record PetalsModelReference
{
    /// <summary>A <c>.gguf</c> file or a Hugging Face directory of the model (the same model the servers run).</summary>
    public required string ModelPath { get; init; }

    /// <summary>Where the blocks run; <see cref="PetalsModelLocation.Local"/> by default.</summary>
    public PetalsModelLocation Location { get; init; }

    /// <summary>
    /// Server addresses (<see cref="PetalsModelLocation.FixedPeers"/>) or DHT node addresses
    /// (<see cref="PetalsModelLocation.Swarm"/>), as <c>PeerAddress</c> text (e.g. <c>tcp://127.0.0.1:31337</c>); empty for
    /// <see cref="PetalsModelLocation.Local"/>.
    /// </summary>
    public IReadOnlyList<string> Peers { get; init; } = [];

    /// <summary>The model id the swarm's servers announce; <see langword="null"/> for the id computed from the model file.</summary>
    public string? ModelId { get; init; }

    /// <summary>A reference to a model whose blocks all run in this process.</summary>
    /// <param name="modelPath">The model file or directory.</param>
    /// <returns>The reference.</returns>
    public static PetalsModelReference Local(string modelPath) => new() { ModelPath = modelPath };

    /// <summary>A reference to a model whose blocks run on the given servers.</summary>
    /// <param name="modelPath">The model file or directory (for its head and tokenizer).</param>
    /// <param name="peers">The servers' addresses.</param>
    /// <returns>The reference.</returns>
    public static PetalsModelReference FixedPeers(string modelPath, params IReadOnlyList<string> peers) =>
        new() { ModelPath = modelPath, Location = PetalsModelLocation.FixedPeers, Peers = [.. peers] };

    /// <summary>A reference to a model served by a swarm, found through the DHT.</summary>
    /// <param name="modelPath">The model file or directory (for its head and tokenizer).</param>
    /// <param name="initialPeers">DHT nodes to join the swarm through.</param>
    /// <param name="modelId">The model id the servers announce; <see langword="null"/> for the computed one.</param>
    /// <returns>The reference.</returns>
    public static PetalsModelReference Swarm(string modelPath, IReadOnlyList<string> initialPeers, string? modelId = null) =>
        new() { ModelPath = modelPath, Location = PetalsModelLocation.Swarm, Peers = [.. initialPeers], ModelId = modelId };

    /// <summary>A canonical text of the reference (location, path, peers, id), equal for equal references.</summary>
    [JsonIgnore]
    public string Key => $"{Location}|{ModelPath}|{string.Join(",", Peers)}|{ModelId}";

    /// <summary>Checks that the reference is complete for its location.</summary>
    /// <exception cref="ArgumentException">When the path is empty, peers are missing for a remote location or given for a local one,
    /// a peer is empty, or the location is unknown.</exception>
    public void Validate()
    {
        if (string.IsNullOrWhiteSpace(ModelPath))
        {
            throw new ArgumentException("The model reference needs a ModelPath (the model file or directory).", nameof(ModelPath));
        }

        if (!Enum.IsDefined(Location))
        {
            throw new ArgumentException($"Unknown model location {(int)Location}.", nameof(Location));
        }

        ArgumentNullException.ThrowIfNull(Peers, nameof(Peers));
        if (Location == PetalsModelLocation.Local ? Peers.Count != 0 : Peers.Count == 0)
        {
            throw new ArgumentException(
                Location == PetalsModelLocation.Local
                    ? "A Local model reference takes no peers."
                    : $"A {Location} model reference needs at least one peer address.",
                nameof(Peers));
        }

        for (var i = 0; i < Peers.Count; i++)
        {
            if (string.IsNullOrWhiteSpace(Peers[i]))
            {
                throw new ArgumentException($"Peer {i} of the model reference is empty.", nameof(Peers));
            }
        }

        if (ModelId is not null && Location != PetalsModelLocation.Swarm)
        {
            throw new ArgumentException("ModelId names the model in a swarm's announcements; it needs Location = Swarm.", nameof(ModelId));
        }
    }

    /// <inheritdoc />
    public bool Equals(PetalsModelReference? other) => other is not null && Key == other.Key;

    /// <inheritdoc />
    public override int GetHashCode() => StringComparer.Ordinal.GetHashCode(Key);

    /// <inheritdoc />
    public override string ToString() => Location switch
    {
        PetalsModelLocation.Local => $"{ModelPath} (local blocks)",
        PetalsModelLocation.FixedPeers => $"{ModelPath} (fixed peers {string.Join(", ", Peers)})",
        _ => $"{ModelPath} (swarm through {string.Join(", ", Peers)}{(ModelId is null ? "" : $", model id {ModelId}")})",
    };
}
