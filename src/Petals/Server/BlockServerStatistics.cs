namespace Petals.Server;

/// <summary>A snapshot of what a <see cref="BlockServer"/> has done since it started.</summary>
/// <param name="ConnectionsAccepted">Connections that completed the handshake.</param>
/// <param name="ActiveConnections">Connections open now.</param>
/// <param name="SessionsOpened">Inference sessions opened.</param>
/// <param name="ActiveSessions">Inference sessions open now.</param>
/// <param name="InferenceSteps">Inference steps computed (re-sent duplicates not counted).</param>
/// <param name="ForwardCalls">Stateless forward requests computed.</param>
/// <param name="TokensProcessed">Tokens (batch rows × positions) run through the span by steps and forwards.</param>
/// <param name="BytesSent">Bytes written to clients (all connections, closed ones included).</param>
/// <param name="BytesReceived">Bytes read from clients (all connections, closed ones included).</param>
/// <param name="ComputeTime">Time the compute lane spent running steps and forwards.</param>
/// <param name="CacheTokens">The cache budget in tokens.</param>
/// <param name="CacheTokensLeft">Cache tokens free now.</param>
/// <param name="PeakCacheTokens">The most cache tokens reserved at once.</param>
public sealed record BlockServerStatistics(
    long ConnectionsAccepted,
    int ActiveConnections,
    long SessionsOpened,
    int ActiveSessions,
    long InferenceSteps,
    long ForwardCalls,
    long TokensProcessed,
    long BytesSent,
    long BytesReceived,
    TimeSpan ComputeTime,
    long CacheTokens,
    long CacheTokensLeft,
    long PeakCacheTokens)
{
    /// <summary>The most cache tokens one peer may hold and wait for at once (<see cref="BlockServerOptions.MaxCacheShare"/>).</summary>
    public long CacheTokensPerPeer { get; init; }

    /// <summary>Sessions refused at once with <c>cache_busy</c>: their peer would have held more than its share.</summary>
    public long CacheRefusedOverShare { get; init; }

    /// <summary>Sessions that waited <see cref="BlockServerOptions.CacheWaitTimeout"/> for cache and got <c>cache_exhausted</c>.</summary>
    public long CacheRefusedTimedOut { get; init; }

    /// <summary>Sessions refused with <c>cache_exhausted</c> because they need more than the whole budget.</summary>
    public long CacheRefusedTooLarge { get; init; }

    /// <summary>Inference steps and forward requests refused with <c>non_finite_input</c> (a NaN or an infinity in their tensors).</summary>
    public long NonFiniteInputsRefused { get; init; }

    /// <summary>Connections open now, in their handshake or past it (what <see cref="BlockServerOptions.MaxConnections"/> bounds).</summary>
    public int OpenConnections { get; init; }

    /// <summary>Connections refused over <see cref="BlockServerOptions.MaxConnections"/> or <see cref="BlockServerOptions.MaxConnectionsPerAddress"/>.</summary>
    public long ConnectionsRefused { get; init; }

    /// <summary>Of <see cref="ConnectionsRefused"/>, those refused over <see cref="BlockServerOptions.MaxConnectionsPerAddress"/>.</summary>
    public long ConnectionsRefusedPerAddress { get; init; }

    /// <summary>Connections closed for not completing the handshake within <see cref="BlockServerOptions.HandshakeTimeout"/>.</summary>
    public long HandshakeTimeouts { get; init; }

    /// <summary>Connections without a session closed after <see cref="BlockServerOptions.ConnectionIdleTimeout"/>.</summary>
    public long IdleConnectionsClosed { get; init; }

    /// <summary>Connections closed for a message arriving below <see cref="BlockServerOptions.MinReceiveRate"/>.</summary>
    public long SlowConnectionsClosed { get; init; }

    /// <summary>Stateless backward requests computed (fine-tuning; protocol 1.3).</summary>
    public long BackwardCalls { get; init; }

    /// <summary>Bytes held now by chunked messages being reassembled, over all connections.</summary>
    public long ReassemblyBytes { get; init; }

    /// <summary>The most bytes chunked messages being reassembled held at once.</summary>
    public long PeakReassemblyBytes { get; init; }

    /// <summary>Chunked messages refused (<c>busy</c>) because they did not fit <see cref="BlockServerOptions.MaxReassemblyBytes"/>.</summary>
    public long ReassemblyRefusals { get; init; }
}
