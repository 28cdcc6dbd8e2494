using Petals.Execution;
using Petals.Inference;
using Petals.Models;

namespace Petals.Extensions.AI.Tests;

/// <summary>
/// Passes every call to the real blocks and counts what the client sent: positions run through sessions (prefill and
/// decode) and sessions open now. Thread-safe.
/// </summary>
internal sealed class CountingTransformerBlocks(ITransformerBlocks inner) : ITransformerBlocks
{
    private long _positions;
    private int _openSessions;
    private long _sessionsOpened;

    public ModelConfig Config => inner.Config;

    /// <summary>Positions run through all sessions so far.</summary>
    public long Positions => Interlocked.Read(ref _positions);

    /// <summary>Sessions open now.</summary>
    public int OpenSessions => Volatile.Read(ref _openSessions);

    /// <summary>Sessions opened so far.</summary>
    public long SessionsOpened => Interlocked.Read(ref _sessionsOpened);

    public async ValueTask<ITransformerSession> OpenSessionAsync(int batchSize, int maxLength, CancellationToken cancellationToken = default) =>
        Track(await inner.OpenSessionAsync(batchSize, maxLength, cancellationToken));

    public async ValueTask<ITransformerSession> OpenSessionAsync(int batchSize, int maxLength, BlockAdaptation? adaptation, CancellationToken cancellationToken = default) =>
        Track(await inner.OpenSessionAsync(batchSize, maxLength, adaptation, cancellationToken));

    private CountingSession Track(ITransformerSession session)
    {
        Interlocked.Increment(ref _openSessions);
        Interlocked.Increment(ref _sessionsOpened);
        return new CountingSession(this, session);
    }

    private sealed class CountingSession(CountingTransformerBlocks owner, ITransformerSession inner) : ITransformerSession
    {
        private int _disposed;

        public int BatchSize => inner.BatchSize;

        public int MaxLength => inner.MaxLength;

        public int Position => inner.Position;

        public async ValueTask ForwardAsync(Memory<float> hidden, int tokenCount, CancellationToken cancellationToken = default)
        {
            await inner.ForwardAsync(hidden, tokenCount, cancellationToken);
            Interlocked.Add(ref owner._positions, tokenCount);
        }

        public void Truncate(int length) => inner.Truncate(length);

        public async ValueTask DisposeAsync()
        {
            if (Interlocked.Exchange(ref _disposed, 1) == 0)
            {
                await inner.DisposeAsync();
                Interlocked.Decrement(ref owner._openSessions);
            }
        }
    }
}
