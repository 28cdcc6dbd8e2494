namespace Petals.Transport.Multiplexing;

/// <summary>
/// A full-duplex <see cref="Stream"/> over an <see cref="ITransportStream"/> for Nerdbank's multiplexer: one read and
/// one write in flight at a time, as the transport stream allows. Transport errors surface as <see cref="IOException"/>
/// (what a stream reader expects of a broken connection) with the <see cref="TransportException"/> inside. Disposing it
/// does nothing to the transport stream: the owning connection closes that.
/// </summary>
internal sealed class TransportStreamAsStream(ITransportStream inner) : Stream
{
    private volatile bool _disposed;

    public override bool CanRead => !_disposed;

    public override bool CanWrite => !_disposed;

    public override bool CanSeek => false;

    public override long Length => throw new NotSupportedException("A transport stream has no length.");

    public override long Position
    {
        get => throw new NotSupportedException("A transport stream has no position.");
        set => throw new NotSupportedException("A transport stream has no position.");
    }

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (buffer.IsEmpty)
        {
            return 0;
        }

        try
        {
            return await inner.ReadAsync(buffer, cancellationToken).ConfigureAwait(false);
        }
        catch (TransportException e)
        {
            throw new IOException(e.Message, e);
        }
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override int Read(byte[] buffer, int offset, int count) =>
        throw new NotSupportedException("Read synchronously: the multiplexer reads asynchronously only.");

    public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        try
        {
            await inner.WriteAsync(buffer, cancellationToken).ConfigureAwait(false);
        }
        catch (TransportException e)
        {
            throw new IOException(e.Message, e);
        }
    }

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override void Write(byte[] buffer, int offset, int count) =>
        throw new NotSupportedException("Write synchronously: the multiplexer writes asynchronously only.");

    public override Task FlushAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public override void Flush()
    {
    }

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException("A transport stream cannot seek.");

    public override void SetLength(long value) => throw new NotSupportedException("A transport stream has no length.");

    protected override void Dispose(bool disposing)
    {
        _disposed = true;
        base.Dispose(disposing);
    }
}
