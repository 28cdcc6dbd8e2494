using System.Collections.Concurrent;
using System.Globalization;
using Petals.Protocol;
using Petals.Transport;

namespace Petals.Client;

/// <summary>
/// The client's connection to one server: calls are registered by stream id before they are sent, and the read loop
/// decodes each answer straight into the caller's buffer before completing the call.
/// </summary>
internal sealed class RemoteSpanConnection : IProtocolMessageHandler, IAsyncDisposable
{
    private readonly ProtocolConnection _connection;
    private readonly ConcurrentDictionary<uint, PendingCall> _pending = new();
    private readonly TimeSpan _requestTimeout;
    private readonly Task _run;
    private volatile Exception? _failure;

    private RemoteSpanConnection(ProtocolConnection connection, TimeSpan requestTimeout)
    {
        _connection = connection;
        _requestTimeout = requestTimeout;
        _run = RunAsync();
    }

    /// <summary>The server's info (set once connected).</summary>
    public InfoResponse Info { get; private set; } = null!;

    public ProtocolConnection Connection => _connection;

    public string Name => string.Create(CultureInfo.InvariantCulture, $"server '{_connection.Remote.PeerId}' at {_connection.RemoteAddress}");

    public static async Task<RemoteSpanConnection> ConnectAsync(ITransport transport, PeerAddress address, ConnectionPreamble local, RemoteSequenceOptions options, CancellationToken cancellationToken)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(options.ConnectTimeout);
        ProtocolConnection connection;
        try
        {
            connection = await ProtocolConnection.ConnectAsync(transport, address, local, options.Limits, timeout.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            throw new TimeoutException(string.Create(CultureInfo.InvariantCulture, $"Connecting to {address} took longer than {options.ConnectTimeout.TotalSeconds:0.#} s."));
        }

        var span = new RemoteSpanConnection(connection, options.RequestTimeout);
        try
        {
            var pending = span.Register(span._connection.NewStreamId(), default);
            await span.SendAsync(pending, new InfoRequest(), timeout.Token).ConfigureAwait(false);
            span.Info = (InfoResponse)(await span.WaitAsync(pending, timeout.Token).ConfigureAwait(false)).Message!;
            return span;
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            await span.DisposeAsync().ConfigureAwait(false);
            throw new TimeoutException(string.Create(CultureInfo.InvariantCulture, $"{span.Name} did not answer the info call within {options.ConnectTimeout.TotalSeconds:0.#} s."));
        }
        catch
        {
            await span.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>Registers a call whose answer is decoded into <paramref name="destination"/>; register before sending.</summary>
    public PendingCall Register(uint streamId, Memory<float> destination)
    {
        var call = new PendingCall(streamId, destination);
        if (!_pending.TryAdd(streamId, call))
        {
            throw new InvalidOperationException(string.Create(CultureInfo.InvariantCulture, $"Stream {streamId} to {Name} already waits for an answer."));
        }

        if (_failure is { } failure)
        {
            _pending.TryRemove(streamId, out _);
            throw Lost(failure);
        }

        return call;
    }

    public async ValueTask SendAsync(PendingCall call, ProtocolMessage message, CancellationToken cancellationToken)
    {
        try
        {
            await _connection.SendAsync(call.StreamId, message, cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            _pending.TryRemove(call.StreamId, out _);
            throw;
        }
    }

    /// <summary>Sends a message that expects no answer (an inference open or close).</summary>
    public ValueTask SendOneWayAsync(uint streamId, ProtocolMessage message, CancellationToken cancellationToken) =>
        _connection.SendAsync(streamId, message, cancellationToken);

    /// <summary>Waits for the answer of <paramref name="call"/>, bounded by the request timeout.</summary>
    /// <exception cref="ProtocolException">When the server answered with an error; the message names the server.</exception>
    /// <exception cref="TimeoutException">When no answer came within the request timeout.</exception>
    /// <exception cref="TransportException">When the connection broke.</exception>
    public async ValueTask<CallOutcome> WaitAsync(PendingCall call, CancellationToken cancellationToken)
    {
        try
        {
            return await call.Task.WaitAsync(_requestTimeout, cancellationToken).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            _pending.TryRemove(call.StreamId, out _);
            throw new TimeoutException(string.Create(CultureInfo.InvariantCulture, $"{Name} did not answer within {_requestTimeout.TotalSeconds:0.#} s (stream {call.StreamId})."));
        }
        catch (OperationCanceledException)
        {
            _pending.TryRemove(call.StreamId, out _);
            throw;
        }
    }

    ValueTask IProtocolMessageHandler.OnMessageAsync(ProtocolConnection connection, uint streamId, ProtocolMessage message, CancellationToken cancellationToken)
    {
        if (!_pending.TryRemove(streamId, out var call))
        {
            // The answer to a call that timed out or was canceled: nobody waits for it.
            return ValueTask.CompletedTask;
        }

        try
        {
            switch (message)
            {
                case ErrorMessage error:
                    call.Fail(new ProtocolException(error.Code, $"{Name} answered {error.Code.Value}: {error.Message}") { StreamId = streamId });
                    break;
                case InferenceStepResult result:
                    Decode(call, result.Hidden);
                    call.Complete(new CallOutcome(result.StepId, result.Position, null));
                    break;
                case ForwardResponse response:
                    Decode(call, response.Hidden);
                    call.Complete(new CallOutcome(0, 0, null));
                    break;
                case InfoResponse or PongMessage:
                    call.Complete(new CallOutcome(0, 0, message));
                    break;
                default:
                    call.Fail(new ProtocolException(ProtocolErrorCode.OutOfOrder, $"{Name} answered stream {streamId} with an unexpected {message.Type}.") { StreamId = streamId });
                    break;
            }
        }
        catch (ProtocolException e)
        {
            call.Fail(e);
        }

        return ValueTask.CompletedTask;
    }

    void IProtocolMessageHandler.OnStreamFailed(ProtocolConnection connection, uint streamId, ProtocolException failure)
    {
        if (_pending.TryRemove(streamId, out var call))
        {
            call.Fail(new ProtocolException(failure.Code, $"The answer of {Name} on stream {streamId} was malformed: {failure.Message}", failure) { StreamId = streamId });
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _connection.DisposeAsync().ConfigureAwait(false);
        await _run.ConfigureAwait(false);
    }

    private void Decode(PendingCall call, WireTensor hidden)
    {
        if (hidden.Shape.ElementCount != call.Destination.Length)
        {
            throw new ProtocolException(
                ProtocolErrorCode.BadShape,
                string.Create(CultureInfo.InvariantCulture, $"{Name} answered stream {call.StreamId} with hidden states {hidden.Shape} ({hidden.Shape.ElementCount} values); {call.Destination.Length} were expected."))
            { StreamId = call.StreamId };
        }

        hidden.CopyTo(call.Destination.Span);
    }

    private async Task RunAsync()
    {
        Exception failure;
        try
        {
            await _connection.RunAsync(this).ConfigureAwait(false);
            failure = new TransportException(TransportErrorKind.ConnectionReset, $"{Name} closed the connection.");
        }
        catch (Exception e) when (e is TransportException or ProtocolException or OperationCanceledException or ObjectDisposedException)
        {
            failure = e;
        }

        _failure = failure;
        foreach (var call in _pending.Values)
        {
            if (_pending.TryRemove(call.StreamId, out _))
            {
                call.Fail(Lost(failure));
            }
        }
    }

    private Exception Lost(Exception failure) => failure switch
    {
        ProtocolException p => new ProtocolException(p.Code, $"The connection to {Name} failed: {p.Message}", p) { IsConnectionFatal = true },
        TransportException t => new TransportException(t.Kind, $"The connection to {Name} was lost: {t.Message}", t),
        _ => new TransportException(TransportErrorKind.ConnectionReset, $"The connection to {Name} was closed.", failure),
    };

    /// <summary>What a call's answer carried besides the hidden states written into the caller's buffer.</summary>
    internal readonly record struct CallOutcome(ulong StepId, int Position, ProtocolMessage? Message);

    /// <summary>One call waiting for its answer.</summary>
    internal sealed class PendingCall(uint streamId, Memory<float> destination)
    {
        private readonly TaskCompletionSource<CallOutcome> _done = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public uint StreamId => streamId;

        public Memory<float> Destination => destination;

        public Task<CallOutcome> Task => _done.Task;

        public void Complete(CallOutcome outcome) => _done.TrySetResult(outcome);

        public void Fail(Exception failure) => _done.TrySetException(failure);
    }
}
