using Petals.Models;
using Petals.Protocol;

namespace Petals.Server;

/// <summary>Settings of a <see cref="BlockServer"/>; checked by <see cref="Validate"/> when the server is built.</summary>
/// <remarks>Set the properties, then hand the instance to the server; do not change it afterwards.</remarks>
public sealed class BlockServerOptions
{
    /// <summary>The span of blocks served; must equal the executor's span. Required.</summary>
    public BlockRange Blocks { get; set; }

    /// <summary>The model id announced in the handshake and in <see cref="InfoResponse"/>; a client naming another model is refused (<c>model_mismatch</c>). Required, 1 to 255 UTF-8 bytes.</summary>
    public string ModelId { get; set; } = string.Empty;

    /// <summary>The server's peer id in the handshake. Default <c>"petals-server"</c>.</summary>
    public string PeerId { get; set; } = "petals-server";

    /// <summary>
    /// The attention cache budget in tokens cached for the whole span: a session of batch <c>B</c> opened with
    /// <c>maxLength L</c> over the whole span holds <c>B × L</c> tokens from its first step until it ends; one over a
    /// sub-range of <c>n</c> of the span's <c>N</c> blocks holds <c>ceil(B × L × n / N)</c>. Default 16384.
    /// </summary>
    public long CacheTokens { get; set; } = 16384;

    /// <summary>The most <c>batch × tokens</c> one forward request or inference step may carry; a larger one is refused with <c>request_too_large</c>. Default 4096.</summary>
    public int MaxBatchTokens { get; set; } = 4096;

    /// <summary>
    /// Named LoRA adapters the server applies for sessions and calls that name them, each covering at least the server's
    /// span (<c>petals serve --adapters NAME=DIR</c>); announced as <see cref="Discovery.ServerInfo.Adapters"/>. Empty by default.
    /// </summary>
    public IReadOnlyDictionary<string, Execution.LoraWeights> Adapters { get; set; } = new Dictionary<string, Execution.LoraWeights>(StringComparer.Ordinal);

    /// <summary>
    /// The most bytes of received hidden states the server holds at once for steps and forward requests that wait for or
    /// are in computation, over all connections (a client pipelining many steps or forwards without reading would
    /// otherwise make it allocate without bound). A request beyond it is answered <c>busy</c>; one request is always
    /// admitted when nothing else is held. Default 512 MiB.
    /// </summary>
    public long MaxQueuedInputBytes { get; set; } = 512L << 20;

    /// <summary>The largest <c>maxLength</c> an inference session may ask for; a larger one is refused with <c>request_too_large</c>. Default 2048.</summary>
    public int MaxSessionLength { get; set; } = 2048;

    /// <summary>
    /// The share of <see cref="CacheTokens"/> one client may hold and wait for at once, over all its sessions and
    /// connections (a client is a <em>peer</em>: its remote host, later its authenticated identity). A session that would
    /// take its peer past <c>max(ceil(MaxCacheShare × CacheTokens), min(MaxSessionLength, CacheTokens))</c> tokens is
    /// refused at once with the retryable <c>cache_busy</c> (it neither waits nor jumps the queue), so one peer cannot
    /// lock the others out; the floor lets a single client use one full-length session even at a small share. Others'
    /// sessions wait in arrival order for the tokens holders return (<see cref="CacheWaitTimeout"/>). 1 turns the limit off.
    /// In (0, 1]. Default 0.5.
    /// </summary>
    public double MaxCacheShare { get; set; } = 0.5;

    /// <summary>How long a session waits for cache tokens to free up before it gets <c>cache_exhausted</c>. Default 30 s.</summary>
    public TimeSpan CacheWaitTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>A session that receives nothing for this long is closed with <c>session_timeout</c> and its cache freed. Default 60 s.</summary>
    public TimeSpan SessionIdleTimeout { get; set; } = TimeSpan.FromSeconds(60);

    /// <summary>
    /// The most connections open at once, in their handshake or past it. A connection beyond it is refused at once: it
    /// gets this server's preamble and a <c>connection_limit</c> error on stream 0, then the server closes it; open
    /// connections and sessions go on. Default: half the process's soft open-file limit (RLIMIT_NOFILE) at start, at
    /// least 16 and at most 4096 (1024 where the limit cannot be read), so that accepting never exhausts file descriptors.
    /// </summary>
    public int MaxConnections { get; set; } = FileDescriptorLimit.DefaultMaxConnections;

    /// <summary>The most connections open at once from one remote address (IP address, port ignored); beyond it refused as for <see cref="MaxConnections"/>. Default 64.</summary>
    public int MaxConnectionsPerAddress { get; set; } = 64;

    /// <summary>How long a new connection may take to complete the protocol handshake (send a valid preamble) before it is closed. Default 10 s.</summary>
    public TimeSpan HandshakeTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// A connection with no open inference session and no call in progress that receives nothing for this long is closed
    /// with a <c>connection_idle</c> error on stream 0 (a connection with a session is governed by
    /// <see cref="SessionIdleTimeout"/>). Default 60 s.
    /// </summary>
    public TimeSpan ConnectionIdleTimeout { get; set; } = TimeSpan.FromSeconds(60);

    /// <summary>
    /// The least bytes per second a message must arrive at once its first bytes are in (slow senders hold buffers and
    /// connections): while a frame or chunked message is incomplete, every <see cref="MinReceiveRateWindow"/> must bring
    /// at least this rate times the window, else the connection is closed with a <c>receive_too_slow</c> error. The first
    /// window is the grace period. 0 turns the check off. Default 1024 bytes/s.
    /// </summary>
    public long MinReceiveRate { get; set; } = 1024;

    /// <summary>The window over which <see cref="MinReceiveRate"/> is averaged (and the grace period of a new message). Default 10 s.</summary>
    public TimeSpan MinReceiveRateWindow { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// The most bytes that chunked messages being reassembled may hold at once over all connections (each message is
    /// still capped by <see cref="ProtocolLimits.MaxMessageSize"/>). A message whose buffer would not fit is refused on its
    /// stream with <c>busy</c> (its remaining chunks are read and dropped; the connection stays up); buffers are given
    /// back when a message is consumed or its connection ends. At least <see cref="ProtocolLimits.MaxMessageSize"/>.
    /// Default 256 MiB.
    /// </summary>
    public long MaxReassemblyBytes { get; set; } = 256L << 20;

    /// <summary>The limits enforced on what clients send. Default <see cref="ProtocolLimits.Default"/>.</summary>
    public ProtocolLimits Limits { get; set; } = ProtocolLimits.Default;

    /// <summary>The codecs clients may use for requests and replies. Default <see cref="WireCodecs.All"/> (int8 blockwise included; advertised to peers of protocol 1.2 on).</summary>
    public WireCodecs Codecs { get; set; } = WireCodecs.All;

    /// <summary>The clock for timeouts (tests pass a manual one). Default <see cref="TimeProvider.System"/>.</summary>
    public TimeProvider TimeProvider { get; set; } = TimeProvider.System;

    /// <summary>A copy whose changes do not affect this instance (hosts fill in the fields they own on a copy).</summary>
    /// <returns>The copy.</returns>
    public BlockServerOptions Clone() => (BlockServerOptions)MemberwiseClone();

    /// <summary>
    /// Checks <see cref="Adapters"/>: names a server may announce (<see cref="Discovery.AnnouncementLimits.IsValidAdapterList"/>:
    /// at most <see cref="Discovery.AnnouncementLimits.MaxAdapters"/>, each of ASCII letters, digits, '_', '-', '.'), weights
    /// covering <see cref="Blocks"/>.
    /// </summary>
    private void CheckAdapters()
    {
        ArgumentNullException.ThrowIfNull(Adapters, nameof(Adapters));
        if (!Discovery.AnnouncementLimits.IsValidAdapterList([.. Adapters.Keys], out var fault))
        {
            throw new ArgumentException($"The server's adapters cannot be announced: {fault}", nameof(Adapters));
        }

        foreach (var (name, weights) in Adapters)
        {
            if (weights is null || weights.Blocks.Start > Blocks.Start || weights.Blocks.End < Blocks.End)
            {
                throw new ArgumentException($"Adapter '{name}' covers blocks {weights?.Blocks.ToString() ?? "none"}; it must cover the server's blocks {Blocks}.", nameof(Adapters));
            }
        }
    }

    /// <summary>Checks every setting.</summary>
    /// <exception cref="ArgumentException">When a setting is missing or out of range; the message names it.</exception>
    public void Validate()
    {
        if (Blocks.Count <= 0)
        {
            throw new ArgumentException($"{nameof(Blocks)} must name at least one block.", nameof(Blocks));
        }

        CheckId(ModelId, nameof(ModelId), allowEmpty: false);
        CheckId(PeerId, nameof(PeerId), allowEmpty: false);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(CacheTokens, nameof(CacheTokens));
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(MaxBatchTokens, nameof(MaxBatchTokens));
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(MaxSessionLength, nameof(MaxSessionLength));
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(MaxQueuedInputBytes, nameof(MaxQueuedInputBytes));
        CheckAdapters();
        if (!(MaxCacheShare > 0 && MaxCacheShare <= 1))
        {
            throw new ArgumentOutOfRangeException(nameof(MaxCacheShare), MaxCacheShare, $"{nameof(MaxCacheShare)} must be in (0, 1].");
        }

        if (CacheWaitTimeout < TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(CacheWaitTimeout), CacheWaitTimeout, $"{nameof(CacheWaitTimeout)} must not be negative.");
        }

        if (SessionIdleTimeout <= TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(SessionIdleTimeout), SessionIdleTimeout, $"{nameof(SessionIdleTimeout)} must be positive.");
        }

        CheckTimerRange(CacheWaitTimeout, nameof(CacheWaitTimeout));
        CheckTimerRange(SessionIdleTimeout, nameof(SessionIdleTimeout));
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(MaxConnections, nameof(MaxConnections));
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(MaxConnectionsPerAddress, nameof(MaxConnectionsPerAddress));
        CheckPositiveTimeout(HandshakeTimeout, nameof(HandshakeTimeout));
        CheckPositiveTimeout(ConnectionIdleTimeout, nameof(ConnectionIdleTimeout));
        CheckPositiveTimeout(MinReceiveRateWindow, nameof(MinReceiveRateWindow));
        ArgumentOutOfRangeException.ThrowIfNegative(MinReceiveRate, nameof(MinReceiveRate));

        ArgumentNullException.ThrowIfNull(Limits, nameof(Limits));
        Limits.Validate();
        if (MaxReassemblyBytes < Limits.MaxMessageSize)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxReassemblyBytes), MaxReassemblyBytes, $"{nameof(MaxReassemblyBytes)} must be at least the maximum message size ({Limits.MaxMessageSize} bytes), or no message of that size could ever be received.");
        }

        if ((Codecs & WireCodecs.Fp32) == 0 || (Codecs & ~WireCodecs.All) != 0)
        {
            throw new ArgumentException($"{nameof(Codecs)} must include Fp32 and only codecs of protocol 1.0, not {Codecs}.", nameof(Codecs));
        }

        ArgumentNullException.ThrowIfNull(TimeProvider, nameof(TimeProvider));
    }

    /// <summary>The most cache tokens one peer may hold and wait for at once (<see cref="MaxCacheShare"/>, with its floor).</summary>
    internal long CacheTokensPerPeer => MaxCacheShare >= 1
        ? CacheTokens
        : Math.Min(CacheTokens, Math.Max((long)Math.Ceiling(MaxCacheShare * CacheTokens), Math.Min(MaxSessionLength, CacheTokens)));

    /// <summary>The longest timeout a .NET timer takes (about 49.7 days).</summary>
    internal static readonly TimeSpan MaxTimeout = TimeSpan.FromMilliseconds(uint.MaxValue - 1.0);

    /// <summary>Refuses a timeout longer than <see cref="MaxTimeout"/>: arming its timer would throw at run time.</summary>
    internal static void CheckTimerRange(TimeSpan value, string name)
    {
        if (value > MaxTimeout)
        {
            throw new ArgumentOutOfRangeException(name, value, $"{name} must be at most 49.7 days (the longest timer .NET supports).");
        }
    }

    private static void CheckPositiveTimeout(TimeSpan value, string name)
    {
        if (value <= TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(name, value, $"{name} must be positive.");
        }

        CheckTimerRange(value, name);
    }

    private static void CheckId(string? value, string name, bool allowEmpty)
    {
        if (value is null || (!allowEmpty && value.Length == 0))
        {
            throw new ArgumentException($"{name} must not be empty.", name);
        }

        if (System.Text.Encoding.UTF8.GetByteCount(value) > 255)
        {
            throw new ArgumentException($"{name} takes more than 255 UTF-8 bytes.", name);
        }
    }
}
