namespace Petals.Server;

/// <summary>Cache tokens held by one session; disposing returns them to the budget (once, however often it is called).</summary>
internal sealed class CacheReservation : IDisposable
{
    private CacheBudget? _owner;

    internal CacheReservation(CacheBudget owner, long tokens, string peerKey)
    {
        _owner = owner;
        Tokens = tokens;
        PeerKey = peerKey;
    }

    /// <summary>The tokens held.</summary>
    public long Tokens { get; }

    /// <summary>The peer charged for them (<see cref="CachePeerKey"/>).</summary>
    public string PeerKey { get; }

    /// <summary>Whether the tokens were returned.</summary>
    public bool IsReleased => Volatile.Read(ref _owner) is null;

    /// <summary>Returns the tokens.</summary>
    public void Dispose() => Interlocked.Exchange(ref _owner, null)?.Return(Tokens, PeerKey);
}
