namespace Petals.Protocol;

/// <summary>Which side of the calls on a connection a <see cref="CallTracker"/> watches.</summary>
public enum CallRole
{
    /// <summary>The side that makes calls (a client): it sends requests and receives answers.</summary>
    Caller,

    /// <summary>The side that serves calls (a block server): it receives requests and sends answers.</summary>
    Callee,
}
