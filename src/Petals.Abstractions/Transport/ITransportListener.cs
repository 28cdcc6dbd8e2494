namespace Petals.Transport;

/// <summary>Accepts incoming streams at one local address. Disposing it stops listening; streams already accepted stay open.</summary>
public interface ITransportListener : IAsyncDisposable
{
    /// <summary>The address peers connect to (with the actual port when the bind address asked for port 0).</summary>
    PeerAddress LocalAddress { get; }

    /// <summary>Waits for the next incoming stream.</summary>
    /// <param name="cancellationToken">Cancels the wait.</param>
    /// <returns>The accepted stream; the caller disposes it.</returns>
    /// <exception cref="ObjectDisposedException">The listener was disposed (also ends a pending accept).</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    ValueTask<ITransportStream> AcceptAsync(CancellationToken cancellationToken = default);
}
