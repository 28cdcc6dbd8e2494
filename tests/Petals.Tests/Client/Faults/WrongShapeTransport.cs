using System.Buffers;
using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.IO.Pipelines;
using Petals.Protocol;
using Petals.Transport;

namespace Petals.Tests.Client.Faults;

/// <summary>
/// A client-side transport decorator that makes a server appear to answer a step with hidden states of the wrong
/// shape. Every stream it connects is re-framed: the bytes the server sends pass through the real protocol reader and
/// writer (the preamble verbatim), and while a tamper is armed for the server's address (<see cref="ArmWrongShape"/>),
/// the next <see cref="InferenceStepResult"/> read from a stream connected to it is re-encoded with
/// <see cref="Reshape"/>'s shape (by default one more token: <c>[batch, tokens + 1, hidden]</c>; the original values
/// first, zeros after). Everything else, and everything the client sends, is unchanged. Listening is not decorated. It re-encodes frames with the core's protocol
/// writer, so it lives with the core's tests rather than in Petals.Testing (which references the abstractions only).
/// </summary>
internal sealed class WrongShapeTransport(ITransport inner) : DelegatingTransport(inner)
{
    private readonly ConcurrentDictionary<PeerAddress, int> _armed = new();
    private int _tampered;

    /// <summary>The shape a tampered result gets, from its true shape.</summary>
    public Func<TensorShape, TensorShape> Reshape { get; init; } = static s => new TensorShape(s[0], s[1] + 1, s[2]);

    /// <summary>How many step results were tampered with so far.</summary>
    public int Tampered => Volatile.Read(ref _tampered);

    /// <summary>Arms one more tamper for <paramref name="server"/> (compared without peer id): the next step result from it gets the wrong shape.</summary>
    public void ArmWrongShape(PeerAddress server) => _armed.AddOrUpdate(server.WithPeerId(null), 1, static (_, n) => n + 1);

    /// <summary>Tampers armed for <paramref name="server"/> and not yet used.</summary>
    public int Armed(PeerAddress server) => _armed.TryGetValue(server.WithPeerId(null), out var n) ? n : 0;

    public override async ValueTask<ITransportStream> ConnectAsync(PeerAddress address, CancellationToken cancellationToken = default)
    {
        var stream = await InnerTransport.ConnectAsync(address, cancellationToken).ConfigureAwait(false);
        return new TamperingStream(stream, this, address.WithPeerId(null));
    }

    private bool TryTakeArm(PeerAddress address)
    {
        while (_armed.TryGetValue(address, out var n) && n > 0)
        {
            if (_armed.TryUpdate(address, n - 1, n))
            {
                Interlocked.Increment(ref _tampered);
                return true;
            }
        }

        return false;
    }

    private WireTensor Tamper(WireTensor hidden)
    {
        var shape = Reshape(hidden.Shape);
        var original = hidden.ToArray();
        var values = new float[shape.ElementCount];
        Array.Copy(original, values, Math.Min(original.Length, values.Length));
        return WireTensor.FromValues(shape, values, hidden.Codec);
    }

    private sealed class TamperingStream : ITransportStream
    {
        // The server writes frames no larger than the client advertised; the reader accepts more to be safe.
        private static readonly ProtocolLimits ReadLimits = new() { MaxFrameSize = 16 << 20, MaxMessageSize = 256 << 20 };

        private readonly ITransportStream _inner;
        private readonly WrongShapeTransport _owner;
        private readonly PeerAddress _address;
        private readonly PipeReader _source;
        private readonly Pipe _output = new(new PipeOptions(useSynchronizationContext: false));
        private readonly CancellationTokenSource _stop = new();
        private readonly Task _pump;
        private int _disposed;

        public TamperingStream(ITransportStream inner, WrongShapeTransport owner, PeerAddress address)
        {
            _inner = inner;
            _owner = owner;
            _address = address;
            _source = PipeReader.Create(inner.AsStream(leaveOpen: true));
            _pump = Task.Run(PumpAsync);
        }

        public PeerAddress RemoteAddress => _inner.RemoteAddress;

        public async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            var result = await _output.Reader.ReadAsync(cancellationToken).ConfigureAwait(false);
            var data = result.Buffer;
            var n = (int)Math.Min(data.Length, buffer.Length);
            data.Slice(0, n).CopyTo(buffer.Span);
            _output.Reader.AdvanceTo(data.GetPosition(n));
            return n;
        }

        public ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default) => _inner.WriteAsync(buffer, cancellationToken);

        public ValueTask CompleteWritesAsync(CancellationToken cancellationToken = default) => _inner.CompleteWritesAsync(cancellationToken);

        public void Abort(string reason) => _inner.Abort(reason);

        public object? GetService(Type serviceType, object? serviceKey = null)
        {
            ArgumentNullException.ThrowIfNull(serviceType);
            return serviceKey is null && serviceType.IsInstanceOfType(this) ? this : _inner.GetService(serviceType, serviceKey);
        }

        public async ValueTask DisposeAsync()
        {
            if (Interlocked.Exchange(ref _disposed, 1) != 0)
            {
                return;
            }

            await _stop.CancelAsync().ConfigureAwait(false);
            try
            {
                await _pump.ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or TransportException or ProtocolException or IOException or ObjectDisposedException)
            {
                // Recorded for readers already.
            }

            await _source.CompleteAsync().ConfigureAwait(false);
            await _inner.DisposeAsync().ConfigureAwait(false);
            _stop.Dispose();
        }

        private async Task PumpAsync()
        {
            var token = _stop.Token;
            var output = _output.Writer;
            Exception? failure = null;
            try
            {
                if (await CopyPreambleAsync(output, token).ConfigureAwait(false))
                {
                    using var reader = new ProtocolReader(_source, ReadLimits);
                    var writer = new ProtocolWriter(output);
                    while (await reader.ReadAsync(token).ConfigureAwait(false) is { } received)
                    {
                        var message = received.Message;
                        if (message is InferenceStepResult result && _owner.TryTakeArm(_address))
                        {
                            message = result with { Hidden = _owner.Tamper(result.Hidden) };
                        }

                        writer.Write(received.StreamId, message);
                        await writer.FlushAsync(token).ConfigureAwait(false);
                    }
                }
            }
#pragma warning disable CA1031 // Whatever ended the pump is what the client's reads see.
            catch (Exception e)
#pragma warning restore CA1031
            {
                failure = e;
            }
            finally
            {
                await output.CompleteAsync(failure).ConfigureAwait(false);
            }
        }

        /// <summary>Passes the server's preamble (6-byte prefix and body) through unchanged; false when the stream ended first.</summary>
        private async Task<bool> CopyPreambleAsync(PipeWriter output, CancellationToken token)
        {
            var result = await _source.ReadAtLeastAsync(6, token).ConfigureAwait(false);
            if (result.Buffer.Length < 6)
            {
                Forward(output, result.Buffer, result.Buffer.Length);
                return false;
            }

            Span<byte> prefix = stackalloc byte[6];
            result.Buffer.Slice(0, 6).CopyTo(prefix);
            var total = 6 + BinaryPrimitives.ReadUInt16LittleEndian(prefix[4..]);
            _source.AdvanceTo(result.Buffer.Start); // nothing consumed or examined: the next read may return at once
            result = await _source.ReadAtLeastAsync(total, token).ConfigureAwait(false);
            var length = (int)Math.Min(total, result.Buffer.Length);
            Forward(output, result.Buffer, length);
            await output.FlushAsync(token).ConfigureAwait(false);
            return length == total;
        }

        private void Forward(PipeWriter output, ReadOnlySequence<byte> data, long length)
        {
            foreach (var segment in data.Slice(0, length))
            {
                output.Write(segment.Span);
            }

            _source.AdvanceTo(data.GetPosition(length));
        }
    }
}
