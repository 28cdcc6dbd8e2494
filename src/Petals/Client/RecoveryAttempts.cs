namespace Petals.Client;

/// <summary>
/// The server failures of one step or stateless call, in order: a line each for the final error, and the peers that
/// failed (a recovery routes around them first).
/// </summary>
internal sealed class RecoveryAttempts
{
    private readonly List<string> _lines = [];
    private readonly HashSet<string> _peers = new(StringComparer.Ordinal);

    /// <summary>How many failures so far.</summary>
    public int Count => _lines.Count;

    /// <summary>One sentence per failure.</summary>
    public IReadOnlyList<string> Lines => _lines;

    /// <summary>The peers that failed.</summary>
    public IReadOnlySet<string> Peers => _peers;

    /// <summary>Records that <paramref name="peerId"/> failed, described by <paramref name="line"/>.</summary>
    /// <param name="peerId">The peer.</param>
    /// <param name="line">What happened.</param>
    public void Add(string peerId, string line)
    {
        _peers.Add(peerId);
        _lines.Add(line);
    }

    /// <summary><paramref name="headline"/> followed by every failure.</summary>
    /// <param name="headline">The first sentence.</param>
    /// <returns>The message.</returns>
    public string Describe(string headline) =>
        new System.Text.StringBuilder(headline).Append(" Failures: ").AppendJoin("; ", _lines).Append('.').ToString();
}
