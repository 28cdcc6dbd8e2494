using Petals.Execution;
using Petals.Models;

namespace Petals.Inference;

/// <summary>
/// Runs all blocks of a model in this process through one or more <see cref="IBlockExecutor"/>s whose
/// spans, in order, cover every block exactly once.
/// </summary>
/// <remarks>Thread-safe for opening sessions; each session is used by one caller at a time.</remarks>
public sealed class LocalTransformerBlocks : ITransformerBlocks, IDisposable
{
    private readonly IBlockExecutor[] _executors;
    private readonly bool _ownsExecutors;

    /// <summary>Creates a stack over <paramref name="executors"/>.</summary>
    /// <param name="executors">Executors whose spans are contiguous, start at block 0 and end at the model's last block.</param>
    /// <param name="ownsExecutors">Whether disposing the stack disposes the executors.</param>
    /// <exception cref="ArgumentException">When the spans leave a gap, overlap, or do not cover all blocks, or the executors disagree on the model.</exception>
    public LocalTransformerBlocks(IReadOnlyList<IBlockExecutor> executors, bool ownsExecutors = true)
    {
        ArgumentNullException.ThrowIfNull(executors);
        if (executors.Count == 0)
        {
            throw new ArgumentException("At least one executor is required.", nameof(executors));
        }

        Config = executors[0].Config;
        var next = 0;
        foreach (var executor in executors)
        {
            if (executor.Config.HiddenSize != Config.HiddenSize || executor.Config.NumLayers != Config.NumLayers)
            {
                throw new ArgumentException(
                    $"Executor for blocks {executor.Blocks} has hidden size {executor.Config.HiddenSize} and {executor.Config.NumLayers} layers; expected {Config.HiddenSize} and {Config.NumLayers}.",
                    nameof(executors));
            }

            if (executor.Blocks.Start != next)
            {
                throw new ArgumentException(
                    $"Executor spans must be contiguous from block 0: expected a span starting at {next}, got {executor.Blocks}.",
                    nameof(executors));
            }

            next = executor.Blocks.End;
        }

        if (next != Config.NumLayers)
        {
            throw new ArgumentException($"Executor spans end at block {next}, but the model has {Config.NumLayers} blocks.", nameof(executors));
        }

        _executors = [.. executors];
        _ownsExecutors = ownsExecutors;
    }

    /// <inheritdoc />
    public ModelConfig Config { get; }

    /// <summary>The executors, in block order (e.g. to ask each for its <see cref="ExecutorWeightsInfo"/>).</summary>
    public IReadOnlyList<IBlockExecutor> Executors => _executors;

    /// <inheritdoc />
    public ValueTask<ITransformerSession> OpenSessionAsync(int batchSize, int maxLength, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(batchSize, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxLength, 1);
        cancellationToken.ThrowIfCancellationRequested();
        var caches = new IKvCache[_executors.Length];
        try
        {
            for (var i = 0; i < caches.Length; i++)
            {
                caches[i] = _executors[i].CreateCache(batchSize, maxLength);
            }
        }
        catch
        {
            foreach (var cache in caches)
            {
                cache?.Dispose();
            }

            throw;
        }

        return ValueTask.FromResult<ITransformerSession>(new Session(this, caches, batchSize, maxLength));
    }

    /// <inheritdoc />
    public void Dispose()
    {
        if (_ownsExecutors)
        {
            foreach (var executor in _executors)
            {
                executor.Dispose();
            }
        }
    }

    private sealed class Session(LocalTransformerBlocks owner, IKvCache[] caches, int batchSize, int maxLength) : ITransformerSession
    {
        private bool _disposed;

        public int BatchSize { get; } = batchSize;

        public int MaxLength { get; } = maxLength;

        public int Position { get; private set; }

        public ValueTask ForwardAsync(Memory<float> hidden, int tokenCount, CancellationToken cancellationToken = default)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            ArgumentOutOfRangeException.ThrowIfLessThan(tokenCount, 1);
            cancellationToken.ThrowIfCancellationRequested();
            var expected = (long)BatchSize * tokenCount * owner.Config.HiddenSize;
            if (hidden.Length != expected)
            {
                throw new ArgumentException(
                    $"Hidden states hold {hidden.Length} values; expected batch {BatchSize} x tokens {tokenCount} x hidden {owner.Config.HiddenSize} = {expected}.",
                    nameof(hidden));
            }

            if (Position + tokenCount > MaxLength)
            {
                throw new InvalidOperationException(
                    $"The session holds {Position} of at most {MaxLength} positions and cannot take {tokenCount} more.");
            }

            for (var i = 0; i < owner._executors.Length; i++)
            {
                cancellationToken.ThrowIfCancellationRequested();
                owner._executors[i].Forward(hidden.Span, BatchSize, tokenCount, caches[i]);
            }

            Position += tokenCount;
            return ValueTask.CompletedTask;
        }

        public ValueTask DisposeAsync()
        {
            if (!_disposed)
            {
                _disposed = true;
                foreach (var cache in caches)
                {
                    cache.Dispose();
                }
            }

            return ValueTask.CompletedTask;
        }
    }
}
