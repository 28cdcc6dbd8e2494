using System.Diagnostics;

namespace Petals.Health;

/// <summary>
/// Detects a dead server on a connection with calls waiting: silence (no byte received, nor sent while a request is
/// being written) for a third of the liveness timeout asks for a ping, silence for all of it declares the server dead.
/// A live server answers pings from its read loop even while it computes, so only a frozen or unreachable one trips it.
/// </summary>
/// <remarks>
/// A pure state machine over the connection's byte counters, fed by the connection's timer (times are
/// <see cref="Stopwatch"/> timestamps), so it is tested without sockets or sleeps. Not thread-safe: one timer feeds it.
/// </remarks>
internal sealed class LivenessDetector
{
    private readonly TimeSpan _timeout;
    private long _lastBytes = -1;
    private long _silentSince;
    private bool _pinged;

    /// <summary>Creates a detector; silence is counted from the first observation on.</summary>
    /// <param name="timeout">How long a waiting connection may stay silent before the server is declared dead.</param>
    public LivenessDetector(TimeSpan timeout)
    {
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(timeout, TimeSpan.Zero);
        _timeout = timeout;
    }

    /// <summary>What the connection should do after an observation.</summary>
    public enum Verdict
    {
        /// <summary>Nothing: the server is alive or nothing waits.</summary>
        Alive,

        /// <summary>Send one ping: the answer (any byte) proves the server alive.</summary>
        Ping,

        /// <summary>The server stayed silent for the whole timeout: abort the connection.</summary>
        Dead,
    }

    /// <summary>How long the connection has been silent at the last observation that found it silent.</summary>
    public TimeSpan Silence { get; private set; }

    /// <summary>Observes the connection at <paramref name="now"/>.</summary>
    /// <param name="now">A <see cref="Stopwatch"/> timestamp.</param>
    /// <param name="waiting">Whether a call waits for an answer (silence counts only then).</param>
    /// <param name="sending">Whether a request is being written now (bytes going out count as life, and no ping is sent behind it).</param>
    /// <param name="bytesReceived">The connection's received byte count.</param>
    /// <param name="bytesSent">The connection's sent byte count.</param>
    /// <returns>What to do.</returns>
    public Verdict Observe(long now, bool waiting, bool sending, long bytesReceived, long bytesSent)
    {
        // Our own pings must not pass for signs of life: only bytes received count, plus bytes sent while a long request
        // is being written to a server that reads it.
        var moved = bytesReceived + (sending ? bytesSent : 0);
        if (!waiting || moved != _lastBytes)
        {
            _lastBytes = moved;
            _silentSince = now;
            _pinged = false;
            return Verdict.Alive;
        }

        Silence = Stopwatch.GetElapsedTime(_silentSince, now);
        if (Silence >= _timeout)
        {
            return Verdict.Dead;
        }

        if (!_pinged && !sending && Silence >= _timeout / 3)
        {
            _pinged = true;
            return Verdict.Ping;
        }

        return Verdict.Alive;
    }
}
