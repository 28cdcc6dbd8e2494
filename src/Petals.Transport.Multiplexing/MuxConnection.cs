using Nerdbank.Streams;

namespace Petals.Transport.Multiplexing;

/// <summary>
/// One physical connection (an inner transport stream) carrying Nerdbank's <see cref="MultiplexingStream"/>: it counts
/// its open channels against <see cref="MultiplexingTransportOptions.MaxChannelsPerConnection"/>, closes itself after
/// <see cref="MultiplexingTransportOptions.IdleTimeout"/> without channels, and fails every channel with
/// <see cref="TransportErrorKind.ConnectionReset"/> when it breaks.
/// </summary>
internal sealed class MuxConnection : IAsyncDisposable
{
    private readonly MultiplexingTransportOptions _options;
    private readonly MultiplexingStream _mux;
    private readonly TransportStreamAsStream _stream;
    private readonly Lock _lock = new();
    private readonly HashSet<MuxChannelStream> _channels = [];
    private readonly HashSet<MuxChannelStream> _delivering = [];
    private readonly Func<MuxChannelStream, bool>? _onAccepted;
    private readonly TaskCompletionSource _closed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private ITimer? _idleTimer;
    private int _reserved;

    // Channels that do not keep the connection busy: a connecting side's spare (opened ahead, accepted, unused) and a
    // listening side's channels whose open frame has not arrived yet.
    private int _idleExempt;
    private MultiplexingStream.Channel? _spare;
    private bool _closing;
    private bool _closeStarted;
    private volatile TransportException? _failure;

    /// <summary>Starts multiplexing over <paramref name="inner"/>.</summary>
    /// <param name="inner">The physical connection; this object owns and disposes it.</param>
    /// <param name="remoteAddress">The peer's address, given to every channel.</param>
    /// <param name="options">The limits.</param>
    /// <param name="onAccepted">For a listening side: receives each channel the peer opens (false: nobody takes it any more; it is aborted). Null for a connecting side, which refuses the peer's channels.</param>
    public MuxConnection(ITransportStream inner, PeerAddress remoteAddress, MultiplexingTransportOptions options, Func<MuxChannelStream, bool>? onAccepted)
    {
        Inner = inner;
        RemoteAddress = remoteAddress;
        _options = options;
        _onAccepted = onAccepted;
        _stream = new TransportStreamAsStream(inner);
        _mux = MultiplexingStream.Create(_stream, new MultiplexingStream.Options
        {
            ProtocolMajorVersion = 3,
            StartSuspended = true,
            DefaultChannelReceivingWindowSize = options.ChannelReceiveWindowBytes,
            FaultOpenChannelsOnStreamDisposal = true,
        });
        _mux.ChannelOffered += OnChannelOffered;
        _mux.StartListening();
        _ = WatchAsync();
        lock (_lock)
        {
            ArmIdleTimer();
        }
    }

    /// <summary>The physical connection (its services pass through to every channel).</summary>
    public ITransportStream Inner { get; }

    /// <summary>The peer's address.</summary>
    public PeerAddress RemoteAddress { get; }

    /// <summary>Why the connection broke, or null while it works (or closed in order).</summary>
    public TransportException? Failure => _failure;

    /// <summary>Whether the connection takes no more channels (closing, closed or broken).</summary>
    public bool IsClosed
    {
        get
        {
            lock (_lock)
            {
                return _closing || _mux.Completion.IsCompleted;
            }
        }
    }

    /// <summary>Completes when the connection is closed and its inner stream disposed.</summary>
    public Task Closed => _closed.Task;

    /// <summary>How many channels are open (or being opened) now.</summary>
    public int ChannelCount
    {
        get
        {
            lock (_lock)
            {
                return _reserved - _idleExempt;
            }
        }
    }

    /// <summary>
    /// Opens a stream to the peer. A spare channel, opened ahead and already accepted, is taken when there is one (no
    /// round trip); otherwise a channel is offered and its acceptance awaited. Either way a new spare is opened behind it.
    /// </summary>
    /// <exception cref="TransportException">Local limit reached (<see cref="TransportErrorKind.ConnectionRefused"/>), the peer refused the channel (same kind), or the connection is closed or broke (<see cref="TransportErrorKind.ConnectionReset"/>).</exception>
    public async ValueTask<MuxChannelStream> OpenChannelAsync(CancellationToken cancellationToken)
    {
        MultiplexingStream.Channel? channel = null;
        lock (_lock)
        {
            if (_closing)
            {
                throw ClosedError();
            }

            if (_spare is { } spare)
            {
                // Offered ahead: accepted already (no round trip) or on its way (less than one to wait).
                _spare = null;
                _idleExempt--;
                channel = spare;
            }
            else if (_reserved >= _options.MaxChannelsPerConnection)
            {
                throw new TransportException(TransportErrorKind.ConnectionRefused, $"Connection to {RemoteAddress} refused: the multiplexed connection already carries {_reserved} streams, the limit (MaxChannelsPerConnection = {_options.MaxChannelsPerConnection}).");
            }
            else
            {
                _reserved++;
            }

            DisarmIdleTimer();
        }

        if (!(channel?.Acceptance.IsCompletedSuccessfully ?? false))
        {
            try
            {
                channel ??= _mux.CreateChannel(new MultiplexingStream.ChannelOptions { ChannelReceivingWindowSize = _options.ChannelReceiveWindowBytes });
                await channel.Acceptance.WaitAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                Dispose(channel);
                Release();
                throw;
            }
            catch (Exception e) when (e is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
            {
                Dispose(channel);
                Release();
                if (_failure is { } failure)
                {
                    throw failure;
                }

                if (IsClosed)
                {
                    throw ClosedError();
                }

                throw new TransportException(TransportErrorKind.ConnectionRefused, $"Connection to {RemoteAddress} refused: the peer refused a new stream on the multiplexed connection (it is closing or carries its limit of streams).", e);
            }
        }

        var stream = Track(channel, onOpened: null);
        try
        {
            await stream.SendOpenAsync(cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            stream.Abort("open failed");
            throw;
        }

        OpenSpare();
        return stream;
    }

    /// <summary>Offers one channel ahead of need, so the next open takes it without a round trip.</summary>
    private void OpenSpare()
    {
        MultiplexingStream.Channel spare;
        lock (_lock)
        {
            if (_closing || _spare is not null || _reserved >= _options.MaxChannelsPerConnection)
            {
                return;
            }

            try
            {
                spare = _mux.CreateChannel(new MultiplexingStream.ChannelOptions { ChannelReceivingWindowSize = _options.ChannelReceiveWindowBytes });
            }
            catch (Exception e) when (e is InvalidOperationException or ObjectDisposedException or MultiplexingProtocolException or IOException)
            {
                return;
            }

            _spare = spare;
            _reserved++;
            _idleExempt++;
        }

        _ = spare.Acceptance.ContinueWith(
            static (task, state) =>
            {
                var (connection, channel) = ((MuxConnection, MultiplexingStream.Channel))state!;
                if (task.IsCompletedSuccessfully)
                {
                    return;
                }

                // Refused (the peer's limit) or the connection went: the slot is free again.
                bool released;
                lock (connection._lock)
                {
                    released = ReferenceEquals(connection._spare, channel);
                    if (released)
                    {
                        connection._spare = null;
                        connection._idleExempt--;
                    }
                }

                Dispose(channel);
                if (released)
                {
                    connection.Release();
                }
            },
            (this, spare),
            CancellationToken.None,
            TaskContinuationOptions.ExecuteSynchronously,
            TaskScheduler.Default);
    }

    /// <summary>Closes the connection now; open channels fail with <see cref="TransportErrorKind.ConnectionReset"/>.</summary>
    public ValueTask DisposeAsync()
    {
        CloseCore(null);
        return new ValueTask(_closed.Task);
    }

    /// <summary>Closes the connection once it carries no channel (at once if it carries none); it takes no new ones.</summary>
    public void CloseWhenIdle()
    {
        bool idle;
        lock (_lock)
        {
            _closing = true;
            idle = _reserved == _idleExempt;
        }

        if (idle)
        {
            CloseCore(null);
        }
    }

    private MuxChannelStream Track(MultiplexingStream.Channel channel, Action<MuxChannelStream>? onOpened)
    {
        var stream = new MuxChannelStream(channel, this, RemoteAddress, _options, onOpened);
        lock (_lock)
        {
            _channels.Add(stream);
            if (onOpened is not null)
            {
                _delivering.Add(stream);
            }
        }

        stream.Start();

        _ = stream.Closed.ContinueWith(
            static (_, state) =>
            {
                var (connection, s) = ((MuxConnection, MuxChannelStream))state!;
                lock (connection._lock)
                {
                    connection._channels.Remove(s);
                    if (!s.Opened && connection._delivering.Remove(s))
                    {
                        connection._idleExempt--; // closed before its open frame: it never counted as busy
                    }
                }

                connection.Release();
            },
            (this, stream),
            CancellationToken.None,
            TaskContinuationOptions.ExecuteSynchronously,
            TaskScheduler.Default);
        if (_failure is { } failure)
        {
            stream.Fail(failure);
        }

        return stream;
    }

    private void Release()
    {
        bool closeNow;
        lock (_lock)
        {
            _reserved--;
            var idle = _reserved == _idleExempt;
            closeNow = idle && _closing;
            if (idle && !_closing && _idleTimer is null)
            {
                ArmIdleTimer();
            }
        }

        if (closeNow)
        {
            CloseCore(null);
        }
    }

    private void OnChannelOffered(object? sender, MultiplexingStream.ChannelOfferEventArgs e)
    {
        if (e.IsAccepted)
        {
            return;
        }

        lock (_lock)
        {
            if (_onAccepted is null || _closing || _reserved >= _options.MaxChannelsPerConnection)
            {
                Reject(e.QualifiedId.Id);
                return;
            }

            _reserved++;
            _idleExempt++;
        }

        try
        {
            var channel = _mux.AcceptChannel(e.QualifiedId.Id, new MultiplexingStream.ChannelOptions { ChannelReceivingWindowSize = _options.ChannelReceiveWindowBytes });
            Track(channel, OnOpened);
        }
        catch (Exception ex) when (ex is InvalidOperationException or ObjectDisposedException or MultiplexingProtocolException or IOException)
        {
            lock (_lock)
            {
                _idleExempt--;
            }

            Release();
        }
    }

    /// <summary>A channel the peer opened sent its open frame: it is busy now, and handed to the listener.</summary>
    private void OnOpened(MuxChannelStream stream)
    {
        lock (_lock)
        {
            if (_delivering.Remove(stream))
            {
                _idleExempt--;
            }

            DisarmIdleTimer();
        }

        if (_onAccepted is null || !_onAccepted(stream))
        {
            stream.Abort("the listener closed");
        }
    }

    private void Reject(ulong id)
    {
        try
        {
            _mux.RejectChannel(id);
        }
        catch (Exception e) when (e is InvalidOperationException or ObjectDisposedException or MultiplexingProtocolException or IOException)
        {
            // The offer was withdrawn or the connection is going; nothing to refuse.
        }
    }

    private void ArmIdleTimer()
    {
        _idleTimer?.Dispose();
        _idleTimer = _options.TimeProvider.CreateTimer(
            static state =>
            {
                var connection = (MuxConnection)state!;
                bool idle;
                lock (connection._lock)
                {
                    idle = connection._reserved == connection._idleExempt;
                    if (idle)
                    {
                        connection._closing = true;
                    }
                }

                if (idle)
                {
                    connection.CloseCore(null);
                }
            },
            this,
            _options.IdleTimeout,
            Timeout.InfiniteTimeSpan);
    }

    private void DisarmIdleTimer()
    {
        _idleTimer?.Dispose();
        _idleTimer = null;
    }

    private async Task WatchAsync()
    {
        try
        {
            await _mux.Completion.ConfigureAwait(false);
            CloseCore(new TransportException(TransportErrorKind.ConnectionReset, $"The multiplexed connection to {RemoteAddress} was closed by the peer."));
        }
        catch (Exception e)
        {
            var inner = e is IOException { InnerException: TransportException t } ? t : e;
            CloseCore(new TransportException(TransportErrorKind.ConnectionReset, $"The multiplexed connection to {RemoteAddress} broke: {inner.Message}", e));
        }
    }

    private void CloseCore(TransportException? failure)
    {
        MuxChannelStream[] channels;
        bool first;
        lock (_lock)
        {
            first = !_closeStarted;
            if (first && failure is not null)
            {
                _failure = failure;
            }

            _closeStarted = true;
            _closing = true;
            DisarmIdleTimer();
            channels = [.. _channels];
        }

        var error = _failure ?? new TransportException(TransportErrorKind.ConnectionReset, $"The multiplexed connection to {RemoteAddress} was closed.");
        foreach (var channel in channels)
        {
            channel.Fail(error);
        }

        if (first)
        {
            _ = Task.Run(ShutDownAsync);
        }
    }

    private async Task ShutDownAsync()
    {
        try
        {
            await _mux.DisposeAsync().ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException or InvalidOperationException or OperationCanceledException or MultiplexingProtocolException)
        {
            // Closing a broken connection: nothing more to do.
        }

        try
        {
            if (_failure is null)
            {
                await Inner.CompleteWritesAsync().ConfigureAwait(false);
            }
        }
        catch (Exception e) when (e is TransportException or ObjectDisposedException or InvalidOperationException)
        {
            // Already broken or closed.
        }

        try
        {
            await Inner.DisposeAsync().ConfigureAwait(false);
        }
        catch (Exception e) when (e is TransportException or ObjectDisposedException)
        {
            // Already broken or closed.
        }

        await _stream.DisposeAsync().ConfigureAwait(false);
        _closed.TrySetResult();
    }

    private static void Dispose(MultiplexingStream.Channel? channel)
    {
        try
        {
            channel?.Dispose();
        }
        catch (Exception e) when (e is InvalidOperationException or ObjectDisposedException or MultiplexingProtocolException or IOException)
        {
            // Already gone.
        }
    }

    private TransportException ClosedError() =>
        _failure ?? new TransportException(TransportErrorKind.ConnectionReset, $"The multiplexed connection to {RemoteAddress} is closed.");
}
