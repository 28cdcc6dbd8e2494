using System.Collections.Concurrent;

namespace Petals.Transport.Multiplexing.Tests;

/// <summary>A real decorator that counts the physical connects made through it and keeps their streams (to break them).</summary>
internal sealed class CountingTransport(ITransport inner) : DelegatingTransport(inner)
{
    private int _connects;

    public int Connects => Volatile.Read(ref _connects);

    public ConcurrentQueue<RecordingStream> Streams { get; } = new();

    public override async ValueTask<ITransportStream> ConnectAsync(PeerAddress address, CancellationToken cancellationToken = default)
    {
        var stream = new RecordingStream(await base.ConnectAsync(address, cancellationToken));
        Interlocked.Increment(ref _connects);
        Streams.Enqueue(stream);
        return stream;
    }

    /// <summary>Passes everything to the inner stream and remembers whether it was aborted.</summary>
    internal sealed class RecordingStream(ITransportStream inner) : ITransportStream
    {
        public bool IsBroken { get; private set; }

        public PeerAddress RemoteAddress => inner.RemoteAddress;

        public ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) => inner.ReadAsync(buffer, cancellationToken);

        public ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default) => inner.WriteAsync(buffer, cancellationToken);

        public ValueTask CompleteWritesAsync(CancellationToken cancellationToken = default) => inner.CompleteWritesAsync(cancellationToken);

        public void Abort(string reason)
        {
            IsBroken = true;
            inner.Abort(reason);
        }

        public ValueTask DisposeAsync() => inner.DisposeAsync();

        public object? GetService(Type serviceType, object? serviceKey = null) =>
            serviceKey is null && serviceType.IsInstanceOfType(this) ? this : inner.GetService(serviceType, serviceKey);
    }
}
