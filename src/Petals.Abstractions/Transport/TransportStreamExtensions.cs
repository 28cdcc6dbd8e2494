namespace Petals.Transport;

/// <summary>Adapters from <see cref="ITransportStream"/> to the BCL's stream types.</summary>
public static class TransportStreamExtensions
{
    /// <summary>
    /// Wraps the transport stream in a <see cref="Stream"/> (readable, writable, not seekable), e.g. for
    /// <c>PipeReader.Create</c> / <c>PipeWriter.Create</c> or code that expects a <see cref="Stream"/>.
    /// Disposing the wrapper completes the writes and, unless <paramref name="leaveOpen"/>, disposes the
    /// transport stream. Errors surface as the transport stream's (<see cref="TransportException"/>), not as <see cref="IOException"/>.
    /// The synchronous <c>Read</c> and <c>Write</c> block on the asynchronous operations; prefer the asynchronous ones.
    /// </summary>
    /// <param name="stream">The transport stream.</param>
    /// <param name="leaveOpen">Whether disposing the wrapper leaves <paramref name="stream"/> undisposed (its writes are still completed).</param>
    /// <returns>The wrapper.</returns>
    public static Stream AsStream(this ITransportStream stream, bool leaveOpen = false)
    {
        ArgumentNullException.ThrowIfNull(stream);
        return new TransportStreamAdapter(stream, leaveOpen);
    }

    private sealed class TransportStreamAdapter(ITransportStream inner, bool leaveOpen) : Stream
    {
        private bool _disposed;

        public override bool CanRead => !_disposed;

        public override bool CanWrite => !_disposed;

        public override bool CanSeek => false;

        public override long Length => throw new NotSupportedException("A transport stream has no length.");

        public override long Position
        {
            get => throw new NotSupportedException("A transport stream has no position.");
            set => throw new NotSupportedException("A transport stream has no position.");
        }

        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            return buffer.IsEmpty ? ValueTask.FromResult(0) : inner.ReadAsync(buffer, cancellationToken);
        }

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override int Read(byte[] buffer, int offset, int count) => ReadAsync(buffer.AsMemory(offset, count)).AsTask().GetAwaiter().GetResult();

        public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            return inner.WriteAsync(buffer, cancellationToken);
        }

        public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override void Write(byte[] buffer, int offset, int count) => WriteAsync(buffer.AsMemory(offset, count)).AsTask().GetAwaiter().GetResult();

        public override Task FlushAsync(CancellationToken cancellationToken) => Task.CompletedTask;

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException("A transport stream cannot seek.");

        public override void SetLength(long value) => throw new NotSupportedException("A transport stream has no length.");

        public override async ValueTask DisposeAsync()
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            try
            {
                await inner.CompleteWritesAsync().ConfigureAwait(false);
            }
            catch (TransportException)
            {
                // An aborted or broken stream has nothing left to complete.
            }
            catch (ObjectDisposedException)
            {
                // Already disposed by its owner.
            }

            if (!leaveOpen)
            {
                await inner.DisposeAsync().ConfigureAwait(false);
            }

            await base.DisposeAsync().ConfigureAwait(false);
        }

        protected override void Dispose(bool disposing)
        {
            if (disposing && !_disposed)
            {
                DisposeAsync().AsTask().GetAwaiter().GetResult();
            }

            base.Dispose(disposing);
        }
    }
}
