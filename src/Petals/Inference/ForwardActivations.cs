using System.Buffers;
using Petals.Execution;
using Petals.Models;

namespace Petals.Inference;

/// <summary>
/// What a stateless training forward pass (<see cref="ITransformerBlocks.ForwardAsync(Memory{float}, int, int, BlockAdaptation?, CancellationToken)"/>)
/// keeps for its backward pass: the shape, the adaptation, and the input of each part of the model in block order.
/// Inputs are pooled buffers; dispose to return them.
/// </summary>
/// <remarks>Not thread-safe: one forward fills it, one backward reads it.</remarks>
public sealed class ForwardActivations : IDisposable
{
    private readonly List<Segment> _segments = [];
    private bool _disposed;

    /// <summary>Creates empty activations of a pass.</summary>
    /// <param name="config">The model.</param>
    /// <param name="batchSize">Sequences of the pass, at least 1.</param>
    /// <param name="tokenCount">Positions per sequence, at least 1.</param>
    /// <param name="adaptation">The adaptation of the pass (for all blocks), or <see langword="null"/>.</param>
    public ForwardActivations(ModelConfig config, int batchSize, int tokenCount, BlockAdaptation? adaptation)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentOutOfRangeException.ThrowIfLessThan(batchSize, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(tokenCount, 1);
        Config = config;
        BatchSize = batchSize;
        TokenCount = tokenCount;
        Adaptation = adaptation is null || adaptation.IsEmpty ? null : adaptation;
    }

    /// <summary>The model.</summary>
    public ModelConfig Config { get; }

    /// <summary>Sequences of the pass.</summary>
    public int BatchSize { get; }

    /// <summary>Positions per sequence.</summary>
    public int TokenCount { get; }

    /// <summary>Values of one hidden-state tensor of the pass: <c>BatchSize × TokenCount × HiddenSize</c>.</summary>
    public int Length => checked(BatchSize * TokenCount * Config.HiddenSize);

    /// <summary>The adaptation of the pass, or <see langword="null"/> when it had none.</summary>
    public BlockAdaptation? Adaptation { get; }

    /// <summary>The parts in block order, each with the blocks it ran and the input it got.</summary>
    public IReadOnlyList<Segment> Segments => _segments;

    /// <summary>The blocks the saved parts cover, from the first part's start to the last part's end.</summary>
    public BlockRange Blocks => _segments.Count == 0 ? default : new BlockRange(_segments[0].Blocks.Start, _segments[^1].Blocks.End);

    /// <summary>Saves a copy of the input <paramref name="input"/> of the part that runs <paramref name="blocks"/>, after the parts saved so far.</summary>
    /// <param name="blocks">The part's blocks; must start where the previous part ended (at 0 for the first).</param>
    /// <param name="input">The part's input, <see cref="Length"/> values.</param>
    /// <param name="runner">Who ran the part (e.g. a server's peer id), or <see langword="null"/>.</param>
    /// <exception cref="ArgumentException">The blocks do not follow the previous part, or the input has the wrong length.</exception>
    public void Add(BlockRange blocks, ReadOnlySpan<float> input, string? runner = null)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var next = _segments.Count == 0 ? 0 : _segments[^1].Blocks.End;
        if (blocks.Start != next || blocks.Count <= 0)
        {
            throw new ArgumentException($"Part {blocks} does not follow the saved parts (next block {next}).", nameof(blocks));
        }

        if (input.Length != Length)
        {
            throw new ArgumentException($"The input holds {input.Length} values; the pass's hidden states hold {Length}.", nameof(input));
        }

        var buffer = ArrayPool<float>.Shared.Rent(Length);
        input.CopyTo(buffer);
        _segments.Add(new Segment(blocks, buffer, Length, runner));
    }

    /// <inheritdoc />
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        foreach (var segment in _segments)
        {
            ArrayPool<float>.Shared.Return(segment.Buffer);
        }

        _segments.Clear();
    }

    /// <summary>One part of a pass: its blocks, the input it got, and who ran it.</summary>
    public sealed class Segment
    {
        private readonly int _length;

        internal Segment(BlockRange blocks, float[] buffer, int length, string? runner)
        {
            Blocks = blocks;
            Buffer = buffer;
            _length = length;
            Runner = runner;
        }

        /// <summary>The blocks the part ran.</summary>
        public BlockRange Blocks { get; }

        /// <summary>Who ran the part, or <see langword="null"/>.</summary>
        public string? Runner { get; }

        /// <summary>The part's input.</summary>
        public ReadOnlyMemory<float> Input => Buffer.AsMemory(0, _length);

        internal float[] Buffer { get; }
    }
}
