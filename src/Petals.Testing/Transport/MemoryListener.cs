using System.Threading.Channels;
using Petals.Transport;

namespace Petals.Testing.Transport;

internal sealed class MemoryListener : ITransportListener
{
    private readonly MemoryTransport _owner;
    private readonly Channel<MemoryStreamEnd> _pending = Channel.CreateUnbounded<MemoryStreamEnd>();

    public MemoryListener(MemoryTransport owner, PeerAddress localAddress)
    {
        _owner = owner;
        LocalAddress = localAddress;
    }

    public PeerAddress LocalAddress { get; }

    public bool Offer(MemoryStreamEnd stream) => _pending.Writer.TryWrite(stream);

    public async ValueTask<ITransportStream> AcceptAsync(CancellationToken cancellationToken = default)
    {
        try
        {
            return await _pending.Reader.ReadAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (ChannelClosedException e)
        {
            throw new ObjectDisposedException($"The listener at {LocalAddress} was disposed.", e);
        }
    }

    public async ValueTask DisposeAsync()
    {
        _owner.Remove(this);
        _pending.Writer.TryComplete();
        while (_pending.Reader.TryRead(out var stream))
        {
            stream.Abort("listener closed before accepting the stream");
            await stream.DisposeAsync().ConfigureAwait(false);
        }
    }
}
