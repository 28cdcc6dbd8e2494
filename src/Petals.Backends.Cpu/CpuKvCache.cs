using Petals.Execution;

namespace Petals.Backends.Cpu;

/// <summary>
/// The attention cache of one session on a <see cref="CpuBlockExecutor"/>: per block, keys and values laid out
/// <c>[batch, kvHeads, maxLength, headDim]</c> in pinned fp32 arrays, so one head's keys are contiguous. It holds only
/// the blocks of the range it was created for (<see cref="Blocks"/>, the executor's span or a sub-range of it).
/// </summary>
internal sealed class CpuKvCache : IKvCache
{
    private readonly float[][] _keys;
    private readonly float[][] _values;
    private float[]? _reorderScratch;
    private bool _disposed;

    public CpuKvCache(CpuBlockExecutor owner, Petals.Models.BlockRange blocks, int batchSize, int maxLength, int kvHeads, int headDim)
    {
        Owner = owner;
        Blocks = blocks;
        var blockCount = blocks.Count;
        BatchSize = batchSize;
        MaxLength = maxLength;
        KvHeads = kvHeads;
        HeadDim = headDim;
        var perBlock = (long)batchSize * kvHeads * maxLength * headDim;
        if (perBlock > Array.MaxLength)
        {
            throw new ArgumentOutOfRangeException(nameof(maxLength), maxLength, $"A cache of {batchSize} x {maxLength} positions needs {perBlock} values per block, more than one array can hold.");
        }

        _keys = new float[blockCount][];
        _values = new float[blockCount][];
        for (var i = 0; i < blockCount; i++)
        {
            _keys[i] = GC.AllocateUninitializedArray<float>((int)perBlock, pinned: true);
            _values[i] = GC.AllocateUninitializedArray<float>((int)perBlock, pinned: true);
        }
    }

    public CpuBlockExecutor Owner { get; }

    /// <summary>The blocks whose keys and values the cache holds.</summary>
    public Petals.Models.BlockRange Blocks { get; }

    public int BatchSize { get; }

    public int MaxLength { get; }

    public int Length { get; internal set; }

    public int KvHeads { get; }

    public int HeadDim { get; }

    public bool IsDisposed => _disposed;

    /// <summary>The keys of block <paramref name="layer"/> of the cache's range (index from 0).</summary>
    public float[] Keys(int layer) => _keys[layer];

    /// <summary>The values of block <paramref name="layer"/> of the cache's range (index from 0).</summary>
    public float[] Values(int layer) => _values[layer];

    public void Reorder(ReadOnlySpan<int> hypoIds)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (hypoIds.Length != BatchSize)
        {
            throw new ArgumentException($"hypoIds has {hypoIds.Length} entries; the cache's batch size is {BatchSize}.", nameof(hypoIds));
        }

        var identity = true;
        for (var i = 0; i < hypoIds.Length; i++)
        {
            if ((uint)hypoIds[i] >= (uint)BatchSize)
            {
                throw new ArgumentException($"hypoIds[{i}] = {hypoIds[i]} is outside [0, {BatchSize}).", nameof(hypoIds));
            }

            identity &= hypoIds[i] == i;
        }

        if (identity || Length == 0)
        {
            return;
        }

        // Rows may be duplicated, so sources are copied aside first; only the filled positions move.
        var rowValues = (long)KvHeads * MaxLength * HeadDim;
        var filled = Length * HeadDim;
        var needed = BatchSize * KvHeads * filled;
        if (_reorderScratch is null || _reorderScratch.Length < needed)
        {
            // Grow geometrically (up to one full block) so that beam search does not allocate on every step.
            var full = BatchSize * KvHeads * MaxLength * HeadDim;
            _reorderScratch = new float[Math.Min(full, Math.Max(needed, 2 * (_reorderScratch?.Length ?? 0)))];
        }

        var scratch = _reorderScratch.AsSpan(0, needed);
        for (var layer = 0; layer < _keys.Length; layer++)
        {
            ReorderStore(_keys[layer], hypoIds, scratch, rowValues, filled);
            ReorderStore(_values[layer], hypoIds, scratch, rowValues, filled);
        }
    }

    private void ReorderStore(float[] store, ReadOnlySpan<int> hypoIds, Span<float> scratch, long rowValues, int filled)
    {
        var headValues = (long)MaxLength * HeadDim;
        for (var b = 0; b < BatchSize; b++)
        {
            for (var g = 0; g < KvHeads; g++)
            {
                store.AsSpan((int)((b * rowValues) + (g * headValues)), filled)
                    .CopyTo(scratch.Slice(((b * KvHeads) + g) * filled, filled));
            }
        }

        for (var b = 0; b < BatchSize; b++)
        {
            var src = hypoIds[b];
            for (var g = 0; g < KvHeads; g++)
            {
                scratch.Slice(((src * KvHeads) + g) * filled, filled)
                    .CopyTo(store.AsSpan((int)((b * rowValues) + (g * headValues)), filled));
            }
        }
    }

    public void Truncate(int length)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(length, Length);
        Length = length;
    }

    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        Array.Clear(_keys);
        Array.Clear(_values);
        _reorderScratch = null;
    }
}
