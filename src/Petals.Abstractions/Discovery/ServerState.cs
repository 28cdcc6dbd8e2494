namespace Petals.Discovery;

/// <summary>The state a server announces for each of its blocks.</summary>
/// <remarks>The numeric values are part of the announcement encoding and never change.</remarks>
public enum ServerState
{
    /// <summary>The server has stopped (or is stopping) serving the blocks; clients must not route through it.</summary>
    Offline = 0,

    /// <summary>The server is loading the blocks' weights and does not accept requests yet.</summary>
    Joining = 1,

    /// <summary>The server accepts requests for the blocks.</summary>
    Online = 2,
}
