namespace Petals.Transport;

/// <summary>
/// One reliable, ordered, bidirectional byte stream between two peers.
/// </summary>
/// <remarks>
/// <para>Each direction is closed independently: <see cref="CompleteWritesAsync"/> ends this side's writes
/// (the peer's reads then return 0 once it has read everything), while this side may keep reading.</para>
/// <para><see cref="Abort"/> ends both directions at once and discards data in flight; the peer's pending and
/// later operations fail with a <see cref="TransportException"/> of kind <see cref="TransportErrorKind.Aborted"/>
/// whose message is <c>"aborted by peer: {reason}"</c> (transports that cannot carry a reason say so in the message).</para>
/// <para>Disposing a stream whose writes were not completed aborts it with the reason <c>"stream disposed"</c>.</para>
/// <para>Thread-safety: one read and one write may be in flight at the same time (from different threads);
/// concurrent reads, or concurrent writes, are not supported. <see cref="Abort"/> may be called from any thread at any time.</para>
/// </remarks>
[System.Diagnostics.CodeAnalysis.SuppressMessage("Naming", "CA1711:Identifiers should not have incorrect suffix", Justification = "A transport stream is the established name (QuicStream, NetworkStream); it is not a System.IO.Stream by design.")]
public interface ITransportStream : IAsyncDisposable
{
    /// <summary>The peer's address (for accepted streams, as the transport sees the remote end).</summary>
    PeerAddress RemoteAddress { get; }

    /// <summary>Reads at least one byte into <paramref name="buffer"/>, waiting until some are available.</summary>
    /// <param name="buffer">Where to put the bytes; must not be empty.</param>
    /// <param name="cancellationToken">Cancels the wait; the stream stays usable afterwards.</param>
    /// <returns>The number of bytes read, or 0 when the peer completed its writes and everything was read.</returns>
    /// <exception cref="TransportException">The stream was aborted (by either side) or the connection broke.</exception>
    /// <exception cref="ObjectDisposedException">The stream was disposed.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default);

    /// <summary>Writes all of <paramref name="buffer"/>, waiting while the transport applies back-pressure.</summary>
    /// <param name="buffer">The bytes to send.</param>
    /// <param name="cancellationToken">Cancels the wait. A write cancelled part-way may leave the stream unusable; abort it then.</param>
    /// <returns>A task that completes when the bytes were handed to the transport.</returns>
    /// <exception cref="InvalidOperationException">Writes were already completed.</exception>
    /// <exception cref="TransportException">The stream was aborted (by either side) or the connection broke.</exception>
    /// <exception cref="ObjectDisposedException">The stream was disposed.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default);

    /// <summary>Ends this side's writes (half-close) after all bytes written so far; idempotent.</summary>
    /// <param name="cancellationToken">Cancels the wait.</param>
    /// <returns>A task that completes when the end of writes was handed to the transport.</returns>
    /// <exception cref="TransportException">The stream was aborted or the connection broke.</exception>
    /// <exception cref="ObjectDisposedException">The stream was disposed.</exception>
    ValueTask CompleteWritesAsync(CancellationToken cancellationToken = default);

    /// <summary>Ends both directions immediately, telling the peer <paramref name="reason"/>; idempotent (the first reason wins).</summary>
    /// <param name="reason">Why, in a few words; sent to the peer where the transport can (long reasons are truncated).</param>
    void Abort(string reason);

    /// <summary>Returns an object of the requested type that this stream provides (e.g. the underlying socket), or null.</summary>
    /// <param name="serviceType">The type of object requested.</param>
    /// <param name="serviceKey">An optional key to select among objects of that type.</param>
    /// <returns>The object, or <see langword="null"/>.</returns>
    object? GetService(Type serviceType, object? serviceKey = null);
}
