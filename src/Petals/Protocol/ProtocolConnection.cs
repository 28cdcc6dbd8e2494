// Over 500 lines on purpose: the handshake, the serialized send path, the read loop and the call-rule checks share
// one connection's state (stream ids, pings, limits, the failure that ends it); split, each part would reach into the
// others' fields.
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Runtime.CompilerServices;
using System.IO.Pipelines;
using Petals.Transport;

namespace Petals.Protocol;

/// <summary>
/// One protocol connection over a transport stream: the handshake, then calls multiplexed by stream id in both
/// directions (docs/wire-protocol.md). Sending is thread-safe; receiving is one read loop (<see cref="RunAsync"/>) that
/// hands every message to an <see cref="IProtocolMessageHandler"/>.
/// </summary>
/// <remarks>
/// The connection enforces the call rules of section 5 on what it receives: a message that breaks them fails only its
/// stream (an Error frame is sent there and the handler is told), while a framing error fails the connection (an Error
/// frame on stream 0, then <see cref="RunAsync"/> throws). Pings on stream 0 are answered here.
/// </remarks>
public sealed class ProtocolConnection : IAsyncDisposable
{
    private static readonly TimeSpan CloseWait = TimeSpan.FromSeconds(5);

    private readonly ITransportStream _stream;
    private readonly CountingStream _io;
    private readonly PipeReader _input;
    private readonly PipeWriter _output;
    private readonly ProtocolReader _reader;
    private readonly ProtocolWriter _writer;
    private readonly CallTracker _tracker;
    private readonly Lock _trackerLock = new();
    private readonly SemaphoreSlim _sendLock = new(1, 1);
    private readonly CancellationTokenSource _stop = new();
    private readonly ConcurrentDictionary<ulong, TaskCompletionSource> _pings = new();
    private long _nextStreamId;
    private long _nextNonce;
    private Task? _run;
    private int _runStarted;
    private int _disposed;

    private ProtocolConnection(ITransportStream stream, CountingStream io, PipeReader input, PipeWriter output, HandshakeResult handshake, CallRole role, ProtocolLimits limits, ReassemblyBudget? budget)
    {
        _stream = stream;
        _io = io;
        _input = input;
        _output = output;
        Remote = handshake.Remote;
        VersionMinor = handshake.VersionMinor;
        Limits = limits;
        Role = role;
        _reader = new ProtocolReader(input, limits, budget);
        _writer = new ProtocolWriter(output, limits, handshake.FrameLimit);
        _tracker = new CallTracker(role);
        _nextStreamId = role == CallRole.Caller ? 1 : 2;
    }

    /// <summary>The peer's preamble (its peer id, model id and limits).</summary>
    public ConnectionPreamble Remote { get; }

    /// <summary>The minor protocol version both sides use.</summary>
    public ushort VersionMinor { get; }

    /// <summary>The peer's transport address.</summary>
    public PeerAddress RemoteAddress => _stream.RemoteAddress;

    /// <summary>Whether this side makes calls (it connected) or serves them (it accepted).</summary>
    public CallRole Role { get; }

    /// <summary>This side's limits.</summary>
    public ProtocolLimits Limits { get; }

    /// <summary>Bytes written to the transport so far, the preamble included.</summary>
    public long BytesSent => _io.BytesWritten;

    /// <summary>Bytes read from the transport so far, the peer's preamble included.</summary>
    public long BytesReceived => _io.BytesRead;

    /// <summary>Whether part of a message has arrived and the rest has not (what a minimum receive rate applies to).</summary>
    internal bool MessageInProgress => _reader.MessageInProgress;

    /// <summary>Bytes of reassembly buffer the connection holds now.</summary>
    internal long ReassemblyBytesHeld => _reader.ReassemblyBytesHeld;

    /// <summary>The number of calls open on this connection.</summary>
    public int OpenCalls
    {
        get
        {
            lock (_trackerLock)
            {
                return _tracker.OpenCalls;
            }
        }
    }

    /// <summary>Connects to <paramref name="address"/> and performs the handshake, as the side that makes calls.</summary>
    /// <param name="transport">The transport to connect with.</param>
    /// <param name="address">The peer's address.</param>
    /// <param name="local">This side's preamble.</param>
    /// <param name="limits">This side's limits; <see cref="ProtocolLimits.Default"/> when null.</param>
    /// <param name="cancellationToken">Cancels connecting and the handshake.</param>
    /// <returns>The open connection; call <see cref="RunAsync"/> to receive.</returns>
    /// <exception cref="TransportException">When the peer cannot be reached or the stream breaks, or (kind
    /// <see cref="TransportErrorKind.AuthenticationFailed"/>) when the transport proved the peer's key
    /// (<see cref="AuthenticatedPeer"/>) and the handshake's peer id is not that key's id.</exception>
    /// <exception cref="ProtocolException">When the handshake fails (version or model mismatch, bad preamble, or an error the peer sent).</exception>
    public static async Task<ProtocolConnection> ConnectAsync(ITransport transport, PeerAddress address, ConnectionPreamble local, ProtocolLimits? limits = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(transport);
        var stream = await transport.ConnectAsync(address, cancellationToken).ConfigureAwait(false);
        var connection = await OpenAsync(stream, local, CallRole.Caller, limits, budget: null, cancellationToken).ConfigureAwait(false);

        // Where the transport proved the server's key (TLS), the peer id of its handshake is a claim to check against it:
        // otherwise a server could present its own key and introduce itself as another peer.
        if (stream.GetService(typeof(AuthenticatedPeer)) is AuthenticatedPeer proven && !proven.IsIdentifiedBy(connection.Remote.PeerId))
        {
            connection.Abort("the handshake's peer id is not the id of the key proven by TLS");
            await connection.DisposeAsync().ConfigureAwait(false);
            throw new TransportException(
                TransportErrorKind.AuthenticationFailed,
                $"The server at {address} proved the key {proven.PeerId} but its handshake claims the peer id '{connection.Remote.PeerId}': refused (a server's handshake peer id must be its key's id, {proven.PeerId} or its first 40 digits).");
        }

        return connection;
    }

    /// <summary>Performs the handshake on an accepted stream, as the side that serves calls.</summary>
    /// <param name="stream">The accepted stream; the connection owns it from now on (it is disposed when the handshake fails).</param>
    /// <param name="local">This side's preamble.</param>
    /// <param name="limits">This side's limits; <see cref="ProtocolLimits.Default"/> when null.</param>
    /// <param name="cancellationToken">Cancels the handshake (bound it: a peer that sends nothing would otherwise hold the stream).</param>
    /// <returns>The open connection; call <see cref="RunAsync"/> to receive.</returns>
    /// <exception cref="ProtocolException">When the handshake fails; an Error frame was sent to the peer on stream 0.</exception>
    /// <exception cref="TransportException">When the stream breaks.</exception>
    public static Task<ProtocolConnection> AcceptAsync(ITransportStream stream, ConnectionPreamble local, ProtocolLimits? limits = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(stream);
        return OpenAsync(stream, local, CallRole.Callee, limits, budget: null, cancellationToken);
    }

    /// <summary>As <see cref="AcceptAsync(ITransportStream, ConnectionPreamble, ProtocolLimits?, CancellationToken)"/>, charging chunked messages being reassembled to <paramref name="budget"/>.</summary>
    internal static Task<ProtocolConnection> AcceptAsync(ITransportStream stream, ConnectionPreamble local, ProtocolLimits limits, ReassemblyBudget budget, CancellationToken cancellationToken) =>
        OpenAsync(stream, local, CallRole.Callee, limits, budget, cancellationToken);

    /// <summary>
    /// Refuses an accepted stream without reading from it: sends this side's preamble and an Error frame on stream 0
    /// carrying <paramref name="error"/>, closes the write side and disposes the stream; aborts it with the error's
    /// message when that does not finish within <paramref name="timeout"/>. The peer's handshake succeeds, and its
    /// read loop then fails with the error's code.
    /// </summary>
    internal static async Task RefuseAsync(ITransportStream stream, ConnectionPreamble local, ProtocolException error, TimeSpan timeout)
    {
        var output = PipeWriter.Create(stream.AsStream(leaveOpen: true), new StreamPipeWriterOptions(minimumBufferSize: 4096, leaveOpen: true));
        try
        {
            using var wait = new CancellationTokenSource(timeout);
            var size = local.GetSize();
            local.Write(output.GetSpan(size)[..size]);
            output.Advance(size);
            await new ProtocolWriter(output, ProtocolLimits.Default, ProtocolLimits.MinFrameSize).SendAsync(0, ErrorMessage.From(error, ProtocolLimits.Default), wait.Token).ConfigureAwait(false);
            await output.CompleteAsync().ConfigureAwait(false);
            await stream.CompleteWritesAsync(wait.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is TransportException or OperationCanceledException or ObjectDisposedException or InvalidOperationException or IOException)
        {
            stream.Abort(error.Message);
        }
        finally
        {
            await stream.DisposeAsync().ConfigureAwait(false);
        }
    }

    /// <summary>A fresh stream id for a call this side starts (odd on the connecting side, even on the accepting side).</summary>
    /// <returns>The id.</returns>
    /// <exception cref="InvalidOperationException">When the connection has used up its 2^31 stream ids.</exception>
    public uint NewStreamId()
    {
        var id = Interlocked.Add(ref _nextStreamId, 2) - 2;
        return id <= uint.MaxValue ? (uint)id : throw new InvalidOperationException("This connection has used all its stream ids; open a new connection.");
    }

    /// <summary>Sends one message (chunked when it exceeds the peer's frame size). Thread-safe; sends are serialized.</summary>
    /// <param name="streamId">The stream (call) id; 0 only for Error, Ping and Pong.</param>
    /// <param name="message">The message.</param>
    /// <param name="cancellationToken">
    /// Cancels waiting for the send. Canceling once the message is going out aborts the connection, since the peer
    /// would otherwise see a torn frame.
    /// </param>
    /// <returns>A task that completes when the message was handed to the transport.</returns>
    /// <exception cref="TransportException">When the stream is broken or closed.</exception>
    /// <exception cref="ProtocolException">When the message exceeds the maximum message size.</exception>
    /// <exception cref="InvalidOperationException">When a request reuses the id of a call that is still open.</exception>
    /// <exception cref="ObjectDisposedException">When the connection is disposed.</exception>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask SendAsync(uint streamId, ProtocolMessage message, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(message);
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        await _sendLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
            lock (_trackerLock)
            {
                _tracker.OnSent(streamId, message);
            }

            _writer.Write(streamId, message);
            FlushResult result;
            try
            {
                result = await _writer.FlushAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                // Part of the message may be on the wire and the rest is still buffered: whatever is sent next would tear
                // the frame (the peer would wait for the rest forever or misread it). Only aborting keeps the peer safe.
                Abort("a send was canceled part-way through a message");
                throw;
            }

            if (result.IsCompleted)
            {
                throw new TransportException(TransportErrorKind.ConnectionReset, $"The connection to {RemoteAddress} is closed for writing.");
            }
        }
        finally
        {
            _sendLock.Release();
        }
    }

    /// <summary>Measures the round trip with a ping on stream 0. <see cref="RunAsync"/> must be running to receive the pong.</summary>
    /// <param name="cancellationToken">Cancels the wait (bound it: a dead peer never answers).</param>
    /// <returns>The round-trip time.</returns>
    /// <exception cref="TransportException">When the stream is broken.</exception>
    public async Task<TimeSpan> PingAsync(CancellationToken cancellationToken = default)
    {
        var nonce = (ulong)Interlocked.Increment(ref _nextNonce);
        var pong = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _pings[nonce] = pong;
        try
        {
            var started = Stopwatch.GetTimestamp();
            await SendAsync(0, new PingMessage(nonce), cancellationToken).ConfigureAwait(false);
            await pong.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
            return Stopwatch.GetElapsedTime(started);
        }
        finally
        {
            _pings.TryRemove(nonce, out _);
        }
    }

    /// <summary>
    /// Runs the read loop: every message goes to <paramref name="handler"/> until the peer closes the connection.
    /// Call once per connection.
    /// </summary>
    /// <param name="handler">Receives the messages.</param>
    /// <param name="cancellationToken">Stops reading.</param>
    /// <returns>A task that completes when the peer closed the connection between frames.</returns>
    /// <exception cref="ProtocolException">
    /// With <see cref="ProtocolException.IsConnectionFatal"/>: a framing error (an Error frame was sent on stream 0), or
    /// an error the peer sent on stream 0.
    /// </exception>
    /// <exception cref="TransportException">When the stream breaks.</exception>
    /// <exception cref="OperationCanceledException">When <paramref name="cancellationToken"/> is canceled or the connection is disposed.</exception>
    /// <exception cref="InvalidOperationException">When the loop is already running.</exception>
    public Task RunAsync(IProtocolMessageHandler handler, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(handler);
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        if (Interlocked.Exchange(ref _runStarted, 1) != 0)
        {
            throw new InvalidOperationException("The connection's read loop is already running.");
        }

        return _run = RunCoreAsync(handler, cancellationToken);
    }

    /// <summary>Aborts the connection: the peer sees the reason, pending sends and reads fail.</summary>
    /// <param name="reason">Why.</param>
    public void Abort(string reason)
    {
        ArgumentNullException.ThrowIfNull(reason);
        _stream.Abort(reason);
        foreach (var ping in _pings.Values)
        {
            ping.TrySetException(new TransportException(TransportErrorKind.Aborted, $"The connection to {RemoteAddress} was aborted: {reason}"));
        }
    }

    /// <summary>Closes the connection: pending sends finish, the write side is closed (the peer reads to the end), the read loop stops, the stream is disposed.</summary>
    /// <returns>A task that completes when the stream is disposed.</returns>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        var graceful = await _sendLock.WaitAsync(CloseWait).ConfigureAwait(false);
        try
        {
            if (graceful)
            {
                await _output.CompleteAsync().ConfigureAwait(false);
                using var wait = new CancellationTokenSource(CloseWait);
                await _stream.CompleteWritesAsync(wait.Token).ConfigureAwait(false);
            }
        }
        catch (Exception e) when (e is TransportException or OperationCanceledException or ObjectDisposedException or InvalidOperationException)
        {
            // A broken or aborted stream has nothing left to close gracefully.
        }
        finally
        {
            if (graceful)
            {
                // Senders that queued behind the close wake up and see the connection disposed.
                _sendLock.Release();
            }
        }

        await _stop.CancelAsync().ConfigureAwait(false);
        if (_run is { } run)
        {
            try
            {
                await run.ConfigureAwait(false);
            }
            catch (Exception e) when (e is TransportException or ProtocolException or OperationCanceledException or ObjectDisposedException)
            {
                // The loop's outcome was reported to whoever awaited RunAsync.
            }
        }

        foreach (var ping in _pings.Values)
        {
            ping.TrySetCanceled();
        }

        await _stream.DisposeAsync().ConfigureAwait(false);
        _reader.Dispose();
        await _input.CompleteAsync().ConfigureAwait(false);
        _stop.Dispose();
    }

    /// <inheritdoc />
    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"{Role} connection with '{Remote.PeerId}' at {RemoteAddress}");

    private static async Task<ProtocolConnection> OpenAsync(ITransportStream stream, ConnectionPreamble local, CallRole role, ProtocolLimits? limits, ReassemblyBudget? budget, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(local);
        limits ??= ProtocolLimits.Default;
        var io = new CountingStream(stream.AsStream(leaveOpen: true));
        var input = PipeReader.Create(io, new StreamPipeReaderOptions(bufferSize: 64 * 1024, minimumReadSize: 4096, leaveOpen: true));
        var output = PipeWriter.Create(io, new StreamPipeWriterOptions(minimumBufferSize: 64 * 1024, leaveOpen: true));
        try
        {
            HandshakeResult handshake;
            try
            {
                handshake = await ProtocolHandshake.PerformAsync(new DuplexPipe(input, output), local, limits, cancellationToken).ConfigureAwait(false);
            }
            catch (ProtocolException e) when (e.Code != ProtocolErrorCode.VersionMismatch && e.Code != ProtocolErrorCode.ModelMismatch)
            {
                // Mismatches were already answered by the handshake; tell the peer about a bad preamble too (best effort).
                await TrySendHandshakeErrorAsync(output, limits, e).ConfigureAwait(false);
                throw;
            }

            return new ProtocolConnection(stream, io, input, output, handshake, role, limits, budget);
        }
        catch
        {
            try
            {
                using var wait = new CancellationTokenSource(CloseWait);
                await output.CompleteAsync().ConfigureAwait(false);
                await stream.CompleteWritesAsync(wait.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is TransportException or OperationCanceledException or ObjectDisposedException or InvalidOperationException)
            {
                // Closing a stream that already broke.
            }

            await stream.DisposeAsync().ConfigureAwait(false);
            await input.CompleteAsync().ConfigureAwait(false);
            throw;
        }
    }

    private static async Task TrySendHandshakeErrorAsync(PipeWriter output, ProtocolLimits limits, ProtocolException error)
    {
        try
        {
            using var wait = new CancellationTokenSource(CloseWait);
            await new ProtocolWriter(output, limits, ProtocolLimits.MinFrameSize).SendAsync(0, ErrorMessage.From(error, limits), wait.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is TransportException or OperationCanceledException or InvalidOperationException)
        {
            // The peer is gone or not reading; the local error stands.
        }
    }

    private async Task RunCoreAsync(IProtocolMessageHandler handler, CancellationToken cancellationToken)
    {
        await Task.Yield();
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _stop.Token);
        try
        {
            await ReadLoopAsync(handler, linked.Token).ConfigureAwait(false);
        }
        finally
        {
            foreach (var ping in _pings.Values)
            {
                ping.TrySetException(new TransportException(TransportErrorKind.ConnectionReset, $"The connection to {RemoteAddress} stopped reading before the pong arrived."));
            }
        }
    }

    private async Task ReadLoopAsync(IProtocolMessageHandler handler, CancellationToken token)
    {
        while (true)
        {
            ReceivedMessage? received;
            try
            {
                received = await _reader.ReadAsync(token).ConfigureAwait(false);
            }
            catch (ProtocolException e) when (!e.IsConnectionFatal && e.StreamId != 0)
            {
                await FailStreamAsync(handler, e.StreamId, e, token).ConfigureAwait(false);
                continue;
            }
            catch (ProtocolException e)
            {
                await TrySendAsync(0, ErrorMessage.From(e, Limits)).ConfigureAwait(false);
                throw e.IsConnectionFatal ? e : new ProtocolException(e.Code, e.Message, e) { StreamId = e.StreamId, IsConnectionFatal = true };
            }

            if (received is not { } r)
            {
                return;
            }

            if (r.StreamId == 0)
            {
                await OnConnectionMessageAsync(r.Message, token).ConfigureAwait(false);
                continue;
            }

            try
            {
                lock (_trackerLock)
                {
                    _tracker.OnReceived(r.StreamId, r.Message);
                }
            }
            catch (ProtocolException e) when (r.Message.Type != FrameType.Error)
            {
                await FailStreamAsync(handler, r.StreamId, e, token).ConfigureAwait(false);
                continue;
            }
            catch (ProtocolException)
            {
                // An error for a stream with no open call (e.g. the answer to a message the peer found out of order):
                // the handler still learns of it; it is never answered, since answering errors with errors could loop.
            }

            await handler.OnMessageAsync(this, r.StreamId, r.Message, token).ConfigureAwait(false);
        }
    }

    private async Task OnConnectionMessageAsync(ProtocolMessage message, CancellationToken cancellationToken)
    {
        switch (message)
        {
            case PingMessage ping:
                await SendAsync(0, new PongMessage(ping.Nonce), cancellationToken).ConfigureAwait(false);
                return;
            case PongMessage pong:
                if (_pings.TryGetValue(pong.Nonce, out var waiting))
                {
                    waiting.TrySetResult();
                }

                return;
            case ErrorMessage error:
                throw new ProtocolException(error.Code, $"Peer '{Remote.PeerId}' at {RemoteAddress} closed the connection: {error.Message}") { IsConnectionFatal = true };
            default:
                // The scanner admits only Error, Ping and Pong on stream 0.
                throw new ProtocolException(ProtocolErrorCode.OutOfOrder, $"A {message.Type} message arrived on stream 0.") { IsConnectionFatal = true };
        }
    }

    private async Task FailStreamAsync(IProtocolMessageHandler handler, uint streamId, ProtocolException error, CancellationToken cancellationToken)
    {
        var failure = error.StreamId == streamId ? error : new ProtocolException(error.Code, error.Message, error) { StreamId = streamId };
        await SendAsync(streamId, ErrorMessage.From(failure, Limits), cancellationToken).ConfigureAwait(false);
        handler.OnStreamFailed(this, streamId, failure);
    }

    private async Task TrySendAsync(uint streamId, ProtocolMessage message)
    {
        try
        {
            using var wait = new CancellationTokenSource(CloseWait);
            await SendAsync(streamId, message, wait.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is TransportException or OperationCanceledException or ObjectDisposedException or InvalidOperationException)
        {
            // Best effort: the connection is failing anyway.
        }
    }

    private sealed class DuplexPipe(PipeReader input, PipeWriter output) : IDuplexPipe
    {
        public PipeReader Input => input;

        public PipeWriter Output => output;
    }

    /// <summary>Counts the bytes that pass between the pipes and the transport stream.</summary>
    private sealed class CountingStream(Stream inner) : Stream
    {
        private long _read;
        private long _written;

        public long BytesRead => Interlocked.Read(ref _read);

        public long BytesWritten => Interlocked.Read(ref _written);

        public override bool CanRead => true;

        public override bool CanWrite => true;

        public override bool CanSeek => false;

        public override long Length => throw new NotSupportedException("A transport stream has no length.");

        public override long Position
        {
            get => throw new NotSupportedException("A transport stream has no position.");
            set => throw new NotSupportedException("A transport stream has no position.");
        }

        [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            var n = await inner.ReadAsync(buffer, cancellationToken).ConfigureAwait(false);
            Interlocked.Add(ref _read, n);
            return n;
        }

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException("Use ReadAsync.");

        [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
        public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            await inner.WriteAsync(buffer, cancellationToken).ConfigureAwait(false);
            Interlocked.Add(ref _written, buffer.Length);
        }

        public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException("Use WriteAsync.");

        public override Task FlushAsync(CancellationToken cancellationToken) => Task.CompletedTask;

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException("A transport stream cannot seek.");

        public override void SetLength(long value) => throw new NotSupportedException("A transport stream has no length.");
    }
}
