using Petals.Inference;
using Petals.Models;

namespace Petals.Extensions.AI.Tests.Infrastructure;

/// <summary>Real blocks with a count of the sessions open at once (the most seen is <see cref="PeakSessions"/>).</summary>
internal sealed class ConcurrencyTrackingBlocks(ITransformerBlocks inner) : ITransformerBlocks
{
    private int _open;
    private int _peak;
    private int _opened;
    private int _forwards;

    public ModelConfig Config => inner.Config;

    public int PeakSessions => Volatile.Read(ref _peak);

    public int SessionsOpened => Volatile.Read(ref _opened);

    /// <summary>Sessions open now.</summary>
    public int OpenSessions => Volatile.Read(ref _open);

    /// <summary>Called with the running count of forward calls before each one runs (e.g. to cancel at a given point).</summary>
    public Action<int>? OnForward { get; init; }

    public async ValueTask<ITransformerSession> OpenSessionAsync(int batchSize, int maxLength, CancellationToken cancellationToken = default)
    {
        var session = await inner.OpenSessionAsync(batchSize, maxLength, cancellationToken);
        Interlocked.Increment(ref _opened);
        var open = Interlocked.Increment(ref _open);
        int peak;
        while (open > (peak = Volatile.Read(ref _peak)) && Interlocked.CompareExchange(ref _peak, open, peak) != peak)
        {
        }

        return new Session(session, this);
    }

    private sealed class Session(ITransformerSession inner, ConcurrencyTrackingBlocks owner) : ITransformerSession
    {
        public int BatchSize => inner.BatchSize;

        public int MaxLength => inner.MaxLength;

        public int Position => inner.Position;

        public async ValueTask ForwardAsync(Memory<float> hidden, int tokenCount, CancellationToken cancellationToken = default)
        {
            owner.OnForward?.Invoke(Interlocked.Increment(ref owner._forwards));
            // Give other texts the chance to open their sessions while this one is open.
            await Task.Yield();
            await inner.ForwardAsync(hidden, tokenCount, cancellationToken);
        }

        public async ValueTask DisposeAsync()
        {
            Interlocked.Decrement(ref owner._open);
            await inner.DisposeAsync();
        }
    }
}
