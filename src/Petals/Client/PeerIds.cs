namespace Petals.Client;

/// <summary>How peer ids are shown to people in messages and logs.</summary>
internal static class PeerIds
{
    /// <summary>The short form of a peer id: its first 8 characters and an ellipsis (ids of up to 9 characters as they are).</summary>
    /// <param name="peerId">A peer id.</param>
    /// <returns>The short form.</returns>
    public static string Short(string peerId) => peerId.Length <= 9 ? peerId : string.Concat(peerId.AsSpan(0, 8), "…");
}
