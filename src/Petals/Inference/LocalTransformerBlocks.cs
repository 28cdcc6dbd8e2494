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
    private readonly IReadOnlyDictionary<string, LoraWeights> _adapters;

    /// <summary>Creates a stack over <paramref name="executors"/>.</summary>
    /// <param name="executors">Executors whose spans are contiguous, start at block 0 and end at the model's last block.</param>
    /// <param name="ownsExecutors">Whether disposing the stack disposes the executors.</param>
    /// <param name="adapters">
    /// Named LoRA adapters for every block of the model, which sessions and calls may name
    /// (<see cref="BlockAdaptation.Adapter"/>) as they name a swarm's server-held adapters; none when null.
    /// </param>
    /// <exception cref="ArgumentException">
    /// When the spans leave a gap, overlap, or do not cover all blocks, the executors disagree on the model, or an
    /// adapter does not cover every block.
    /// </exception>
    public LocalTransformerBlocks(IReadOnlyList<IBlockExecutor> executors, bool ownsExecutors = true, IReadOnlyDictionary<string, LoraWeights>? adapters = null)
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
        _adapters = adapters ?? new Dictionary<string, LoraWeights>(StringComparer.Ordinal);
        foreach (var (name, lora) in _adapters)
        {
            if (lora.Blocks != new BlockRange(0, Config.NumLayers))
            {
                throw new ArgumentException($"Adapter '{name}' covers blocks {lora.Blocks}; local blocks need adapters for all {Config.NumLayers} blocks.", nameof(adapters));
            }
        }
    }

    /// <inheritdoc />
    public ModelConfig Config { get; }

    /// <summary>The executors, in block order (e.g. to ask each for its <see cref="ExecutorWeightsInfo"/>).</summary>
    public IReadOnlyList<IBlockExecutor> Executors => _executors;

    /// <summary>The names of the adapters sessions and calls may name.</summary>
    public IReadOnlyCollection<string> Adapters => [.. _adapters.Keys];

    /// <inheritdoc />
    public ValueTask<ITransformerSession> OpenSessionAsync(int batchSize, int maxLength, CancellationToken cancellationToken = default) =>
        OpenSessionAsync(batchSize, maxLength, adaptation: null, cancellationToken);

    /// <inheritdoc />
    /// <exception cref="ArgumentException">The adaptation does not fit, or names an adapter these blocks do not hold.</exception>
    public ValueTask<ITransformerSession> OpenSessionAsync(int batchSize, int maxLength, BlockAdaptation? adaptation, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(batchSize, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxLength, 1);
        cancellationToken.ThrowIfCancellationRequested();
        var resolved = Resolve(adaptation, batchSize, tokenCount: null);
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

        return ValueTask.FromResult<ITransformerSession>(new Session(this, caches, batchSize, maxLength, resolved));
    }

    /// <inheritdoc />
    /// <exception cref="ArgumentException">A shape is wrong, the input is not finite, the adaptation does not fit, or it names an adapter these blocks do not hold.</exception>
    public ValueTask<ForwardActivations> ForwardAsync(Memory<float> hidden, int batchSize, int tokenCount, BlockAdaptation? adaptation, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(batchSize, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(tokenCount, 1);
        cancellationToken.ThrowIfCancellationRequested();
        CheckHidden(hidden.Span, batchSize, tokenCount, "Hidden states");
        var resolved = Resolve(adaptation, batchSize, tokenCount);
        var activations = new ForwardActivations(Config, batchSize, tokenCount, adaptation);
        try
        {
            var all = new BlockRange(0, Config.NumLayers);
            foreach (var executor in _executors)
            {
                cancellationToken.ThrowIfCancellationRequested();
                activations.Add(executor.Blocks, hidden.Span);
                executor.Forward(hidden.Span, batchSize, tokenCount, cache: null, executor.Blocks, resolved?.ForBlocks(all, executor.Blocks));
            }

            return ValueTask.FromResult(activations);
        }
        catch
        {
            activations.Dispose();
            throw;
        }
    }

    /// <inheritdoc />
    /// <exception cref="ArgumentException">
    /// The activations are not of a pass over these blocks, the gradients have the wrong shape or are not finite, or the
    /// adaptation gradients do not fit (gradients of a named adapter are not computed).
    /// </exception>
    public ValueTask BackwardAsync(ForwardActivations activations, Memory<float> gradients, BlockGradients? adaptationGradients, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(activations);
        cancellationToken.ThrowIfCancellationRequested();
        if (activations.Segments.Count != _executors.Length || activations.Segments.Select(s => s.Blocks).Where((b, i) => b != _executors[i].Blocks).Any())
        {
            throw new ArgumentException("The activations were not saved by a forward pass of these local blocks.", nameof(activations));
        }

        CheckHidden(gradients.Span, activations.BatchSize, activations.TokenCount, "Gradients");
        adaptationGradients?.Validate(activations.Adaptation);
        var resolved = Resolve(activations.Adaptation, activations.BatchSize, activations.TokenCount);
        var all = new BlockRange(0, Config.NumLayers);
        for (var i = _executors.Length - 1; i >= 0; i--)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var executor = _executors[i];
            executor.Backward(
                activations.Segments[i].Input.Span,
                gradients.Span,
                activations.BatchSize,
                activations.TokenCount,
                executor.Blocks,
                resolved?.ForBlocks(all, executor.Blocks),
                adaptationGradients?.ForBlocks(all, executor.Blocks));
        }

        return ValueTask.CompletedTask;
    }

    /// <summary>Checks the adaptation for all blocks and replaces an adapter name by the adapter's weights; null when empty.</summary>
    private BlockAdaptation? Resolve(BlockAdaptation? adaptation, int batchSize, int? tokenCount)
    {
        if (adaptation is null || adaptation.IsEmpty)
        {
            return null;
        }

        adaptation.Validate(Config, new BlockRange(0, Config.NumLayers), batchSize, tokenCount);
        if (adaptation.Adapter is not { } name)
        {
            return adaptation;
        }

        if (!_adapters.TryGetValue(name, out var lora))
        {
            throw new ArgumentException(
                _adapters.Count == 0
                    ? $"No adapter named '{name}': these local blocks hold no adapters."
                    : $"No adapter named '{name}': these local blocks hold [{string.Join(", ", _adapters.Keys.Order(StringComparer.Ordinal))}].",
                nameof(adaptation));
        }

        return adaptation with { Adapter = null, Lora = lora };
    }

    /// <summary>Checks that <paramref name="values"/> is a finite <c>[batch, tokens, hidden]</c> tensor.</summary>
    private void CheckHidden(ReadOnlySpan<float> values, int batchSize, int tokenCount, string what)
    {
        var expected = (long)batchSize * tokenCount * Config.HiddenSize;
        if (values.Length != expected)
        {
            throw new ArgumentException(
                string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{what} hold {values.Length} values; expected batch {batchSize} x tokens {tokenCount} x hidden {Config.HiddenSize} = {expected}."));
        }

        var bad = Numerics.FiniteValues.IndexOfNonFinite(values);
        if (bad >= 0)
        {
            throw new ArgumentException($"{what} hold {Numerics.FiniteValues.Describe(values, bad, [batchSize, tokenCount, Config.HiddenSize])}.");
        }
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

    private sealed class Session(LocalTransformerBlocks owner, IKvCache[] caches, int batchSize, int maxLength, BlockAdaptation? adaptation) : ITransformerSession
    {
        /// <summary>Each executor's part of the adaptation, sliced once for all steps (null without one).</summary>
        private readonly BlockAdaptation?[]? _parts = adaptation is null
            ? null
            : [.. owner._executors.Select(e => adaptation.ForBlocks(new BlockRange(0, owner.Config.NumLayers), e.Blocks))];

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
                var executor = owner._executors[i];
                if (_parts is null)
                {
                    executor.Forward(hidden.Span, BatchSize, tokenCount, caches[i]);
                }
                else
                {
                    executor.Forward(hidden.Span, BatchSize, tokenCount, caches[i], executor.Blocks, _parts[i]);
                }
            }

            Position += tokenCount;
            return ValueTask.CompletedTask;
        }

        public void Truncate(int length)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            ArgumentOutOfRangeException.ThrowIfNegative(length);
            ArgumentOutOfRangeException.ThrowIfGreaterThan(length, Position);
            foreach (var cache in caches)
            {
                cache.Truncate(length);
            }

            Position = length;
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
