using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using Petals.Execution;
using Petals.Models;
using Petals.Tensors;

namespace Petals.Benchmarks;

/// <summary>
/// A plain, obviously-correct executor (fp32 weights, one dot product per output element, rows split across
/// threads) used to validate the harness and the cross-check independently of the optimised CPU backend
/// (<c>--backend reference</c>). Not tuned: it is the floor the real executor must beat.
/// </summary>
internal sealed class ReferenceBlockExecutorFactory(int threads) : IBlockExecutorFactory
{
    public string Name => "reference";

    public IBlockExecutor Create(IModelWeights weights, BlockRange blocks) => new ReferenceBlockExecutor(weights, blocks, threads);
}

internal sealed class ReferenceBlockExecutor : IBlockExecutor
{
    private readonly ParallelOptions _parallel;
    private readonly Layer[] _layers;
    private readonly float[] _invFreq;

    public ReferenceBlockExecutor(IModelWeights weights, BlockRange blocks, int threads)
    {
        Config = weights.Config;
        Blocks = blocks;
        if (blocks.End > Config.NumLayers)
        {
            throw new ArgumentOutOfRangeException(nameof(blocks), $"Blocks {blocks} go past the model's {Config.NumLayers} layers.");
        }

        _parallel = new ParallelOptions { MaxDegreeOfParallelism = threads };
        _layers = new Layer[blocks.Count];
        for (var i = 0; i < blocks.Count; i++)
        {
            float[] Load(string suffix)
            {
                var t = weights.GetTensor(LlamaTensorNames.Block(blocks.Start + i, suffix));
                var expected = BlockShapes.TensorShape(Config, suffix);
                if (!t.Descriptor.Shape.SequenceEqual(expected))
                {
                    throw new InvalidDataException($"{weights.Source}: tensor '{t.Descriptor.Name}' has shape [{string.Join(", ", t.Descriptor.Shape)}], expected [{string.Join(", ", expected)}].");
                }

                return ToFloat(t);
            }

            _layers[i] = new Layer(Load(LlamaTensorNames.InputNorm), Load(LlamaTensorNames.QProj), Load(LlamaTensorNames.KProj),
                Load(LlamaTensorNames.VProj), Load(LlamaTensorNames.OProj), Load(LlamaTensorNames.PostAttentionNorm),
                Load(LlamaTensorNames.GateProj), Load(LlamaTensorNames.UpProj), Load(LlamaTensorNames.DownProj));
        }

        var hd = Config.HeadDim;
        _invFreq = new float[hd / 2];
        for (var i = 0; i < hd / 2; i++)
        {
            // As Hugging Face: 1 / theta^(2i/d), computed in fp32.
            _invFreq[i] = 1.0f / MathF.Pow((float)Config.RopeTheta, 2 * i / (float)hd);
        }
    }

    public ModelConfig Config { get; }

    public BlockRange Blocks { get; }

    public IKvCache CreateCache(int batchSize, int maxLength) =>
        new ReferenceCache(batchSize, maxLength, Blocks.Count, Config.NumKeyValueHeads * Config.HeadDim);

    public void Forward(Span<float> hidden, int batchSize, int tokenCount, IKvCache? cache)
    {
        var c = Config;
        var h = c.HiddenSize;
        if (hidden.Length != batchSize * tokenCount * h)
        {
            throw new ArgumentException($"Hidden states hold {hidden.Length} values, not {batchSize} x {tokenCount} x {h}.", nameof(hidden));
        }

        var kvCache = cache as ReferenceCache ?? (cache is null
            ? new ReferenceCache(batchSize, tokenCount, Blocks.Count, c.NumKeyValueHeads * c.HeadDim)
            : throw new ArgumentException("The cache was not created by this executor.", nameof(cache)));
        if (kvCache.BatchSize != batchSize)
        {
            throw new ArgumentException($"Batch size {batchSize} differs from the cache's {kvCache.BatchSize}.", nameof(batchSize));
        }

        var p0 = kvCache.Length;
        if (p0 + tokenCount > kvCache.MaxLength)
        {
            throw new InvalidOperationException($"The cache holds {p0} of {kvCache.MaxLength} positions; {tokenCount} more do not fit.");
        }

        var x = hidden.ToArray();
        for (var l = 0; l < _layers.Length; l++)
        {
            for (var b = 0; b < batchSize; b++)
            {
                var rows = x.AsSpan(b * tokenCount * h, tokenCount * h).ToArray();
                LayerForward(_layers[l], rows, tokenCount, p0, kvCache.Keys[l][b], kvCache.Values[l][b]);
                rows.CopyTo(x.AsSpan(b * tokenCount * h));
            }
        }

        x.CopyTo(hidden);
        kvCache.Length = p0 + tokenCount;
    }

    public object? GetService(Type serviceType, object? serviceKey = null) => serviceType.IsInstanceOfType(this) ? this : null;

    public void Dispose()
    {
    }

    public override string ToString() => $"reference executor ({_parallel.MaxDegreeOfParallelism} threads)";

    private void LayerForward(Layer w, float[] x, int tokens, int p0, float[] keys, float[] values)
    {
        var c = Config;
        int h = c.HiddenSize, hd = c.HeadDim, qDim = c.NumHeads * hd, kvDim = c.NumKeyValueHeads * hd, inter = c.IntermediateSize;
        var normed = new float[tokens * h];
        RmsNorm(x, w.InputNorm, normed, tokens);
        var q = MatMul(normed, tokens, h, w.Q, qDim);
        var k = MatMul(normed, tokens, h, w.K, kvDim);
        var v = MatMul(normed, tokens, h, w.V, kvDim);
        for (var t = 0; t < tokens; t++)
        {
            Rope(q.AsSpan(t * qDim, qDim), p0 + t);
            Rope(k.AsSpan(t * kvDim, kvDim), p0 + t);
        }

        k.CopyTo(keys, p0 * kvDim);
        v.CopyTo(values, p0 * kvDim);
        var attn = new float[tokens * qDim];
        var scale = 1.0f / MathF.Sqrt(hd);
        var group = c.NumHeads / c.NumKeyValueHeads;
        Parallel.For(0, c.NumHeads * tokens, _parallel, ht =>
        {
            int head = ht / tokens, t = ht % tokens, kvHead = head / group, visible = p0 + t + 1;
            var qRow = q.AsSpan((t * qDim) + (head * hd), hd);
            var scores = new float[visible];
            for (var j = 0; j < visible; j++)
            {
                scores[j] = TensorPrimitives.Dot(qRow, keys.AsSpan((j * kvDim) + (kvHead * hd), hd)) * scale;
            }

            TensorPrimitives.SoftMax(scores, scores);
            var outRow = attn.AsSpan((t * qDim) + (head * hd), hd);
            for (var j = 0; j < visible; j++)
            {
                TensorPrimitives.MultiplyAdd(values.AsSpan((j * kvDim) + (kvHead * hd), hd), scores[j], outRow, outRow);
            }
        });
        var o = MatMul(attn, tokens, qDim, w.O, h);
        TensorPrimitives.Add(x, o, x);
        RmsNorm(x, w.PostNorm, normed, tokens);
        var gate = MatMul(normed, tokens, h, w.Gate, inter);
        var up = MatMul(normed, tokens, h, w.Up, inter);
        for (var i = 0; i < gate.Length; i++)
        {
            var g = gate[i];
            gate[i] = g / (1.0f + MathF.Exp(-g)) * up[i];
        }

        var down = MatMul(gate, tokens, inter, w.Down, h);
        TensorPrimitives.Add(x, down, x);
    }

    private void RmsNorm(float[] x, float[] weight, float[] destination, int tokens)
    {
        var h = Config.HiddenSize;
        for (var t = 0; t < tokens; t++)
        {
            var row = x.AsSpan(t * h, h);
            var sumSquares = 0.0;
            foreach (var value in row)
            {
                sumSquares += (double)value * value;
            }

            var inv = (float)(1.0 / Math.Sqrt((sumSquares / h) + Config.RmsNormEps));
            TensorPrimitives.Multiply(row, inv, destination.AsSpan(t * h, h));
            TensorPrimitives.Multiply(destination.AsSpan(t * h, h), weight, destination.AsSpan(t * h, h));
        }
    }

    /// <summary>Hugging Face rotate-half rotary embedding of every head in <paramref name="row"/>.</summary>
    private void Rope(Span<float> row, int position)
    {
        var hd = Config.HeadDim;
        var half = hd / 2;
        for (var head = 0; head < row.Length / hd; head++)
        {
            var x = row.Slice(head * hd, hd);
            for (var i = 0; i < half; i++)
            {
                var angle = position * _invFreq[i];
                float cos = MathF.Cos(angle), sin = MathF.Sin(angle), x1 = x[i], x2 = x[i + half];
                x[i] = (x1 * cos) - (x2 * sin);
                x[i + half] = (x2 * cos) + (x1 * sin);
            }
        }
    }

    /// <summary><c>[tokens, inDim] x W^T</c> with <c>W</c> of shape <c>[outDim, inDim]</c>: one dot product per output.</summary>
    private float[] MatMul(float[] input, int tokens, int inDim, float[] weight, int outDim)
    {
        var output = new float[tokens * outDim];
        Parallel.For(0, outDim, _parallel, o =>
        {
            var w = weight.AsSpan(o * inDim, inDim);
            for (var t = 0; t < tokens; t++)
            {
                output[(t * outDim) + o] = TensorPrimitives.Dot(input.AsSpan(t * inDim, inDim), w);
            }
        });
        return output;
    }

    private static float[] ToFloat(WeightTensor t)
    {
        var span = t.Data.Span;
        switch (t.Descriptor.DType)
        {
            case TensorDType.F32:
                return MemoryMarshal.Cast<byte, float>(span).ToArray();
            case TensorDType.BF16:
                var bits = MemoryMarshal.Cast<byte, ushort>(span);
                var result = new float[bits.Length];
                for (var i = 0; i < bits.Length; i++)
                {
                    result[i] = BitConverter.UInt32BitsToSingle((uint)bits[i] << 16);
                }

                return result;
            default:
                throw new InvalidDataException($"Tensor '{t.Descriptor.Name}': the reference executor reads F32 or BF16, not {t.Descriptor.DType}.");
        }
    }

    private sealed record Layer(float[] InputNorm, float[] Q, float[] K, float[] V, float[] O, float[] PostNorm, float[] Gate, float[] Up, float[] Down);

    private sealed class ReferenceCache : IKvCache
    {
        private readonly int _kvDim;

        public ReferenceCache(int batchSize, int maxLength, int layers, int kvDim)
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(batchSize, 1);
            ArgumentOutOfRangeException.ThrowIfLessThan(maxLength, 1);
            BatchSize = batchSize;
            MaxLength = maxLength;
            _kvDim = kvDim;
            Keys = new float[layers][][];
            Values = new float[layers][][];
            for (var l = 0; l < layers; l++)
            {
                Keys[l] = new float[batchSize][];
                Values[l] = new float[batchSize][];
                for (var b = 0; b < batchSize; b++)
                {
                    Keys[l][b] = new float[maxLength * kvDim];
                    Values[l][b] = new float[maxLength * kvDim];
                }
            }
        }

        public float[][][] Keys { get; }

        public float[][][] Values { get; }

        public int BatchSize { get; }

        public int MaxLength { get; }

        public int Length { get; set; }

        public void Reorder(ReadOnlySpan<int> hypoIds)
        {
            if (hypoIds.Length != BatchSize)
            {
                throw new ArgumentException($"{hypoIds.Length} hypothesis ids for a batch of {BatchSize}.", nameof(hypoIds));
            }

            foreach (var id in hypoIds)
            {
                if ((uint)id >= (uint)BatchSize)
                {
                    throw new ArgumentException($"Hypothesis id {id} is outside [0, {BatchSize}).", nameof(hypoIds));
                }
            }

            foreach (var perLayer in new[] { Keys, Values })
            {
                foreach (var rows in perLayer)
                {
                    var copies = new float[BatchSize][];
                    for (var b = 0; b < BatchSize; b++)
                    {
                        copies[b] = rows[hypoIds[b]].AsSpan(0, Length * _kvDim).ToArray();
                    }

                    for (var b = 0; b < BatchSize; b++)
                    {
                        copies[b].CopyTo(rows[b], 0);
                    }
                }
            }
        }

        public void Truncate(int length)
        {
            ArgumentOutOfRangeException.ThrowIfNegative(length);
            ArgumentOutOfRangeException.ThrowIfGreaterThan(length, Length);
            Length = length;
        }

        public void Dispose()
        {
        }
    }
}
