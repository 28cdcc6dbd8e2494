namespace Petals.Server;

/// <summary>What a periodic check of a connection's deadlines decided.</summary>
internal enum ConnectionVerdict
{
    /// <summary>Within every deadline (or already being closed).</summary>
    None,

    /// <summary>Closed: no session and nothing received for the connection idle timeout.</summary>
    Idle,

    /// <summary>Closed: a message in progress arrived below the minimum receive rate.</summary>
    TooSlow,
}
