using System.Numerics.Tensors;
using Petals.Generation;

namespace Petals.Training;

/// <summary>
/// The frozen client-side end of a model in fp32 for training: the final RMSNorm and the LM head <c>[vocab, hidden]</c>
/// (the embeddings when tied). Computes the causal-LM loss and its gradient with respect to the last block's outputs.
/// </summary>
/// <remarks>Thread-safe: read-only after construction.</remarks>
internal sealed class FrozenHead
{
    public FrozenHead(float[] head, int vocabSize, int hiddenSize, float[] normWeight, float normEpsilon)
    {
        if (head.Length != (long)vocabSize * hiddenSize || normWeight.Length != hiddenSize)
        {
            throw new ArgumentException($"A head of [{vocabSize}, {hiddenSize}] and a norm of {hiddenSize} values were expected; got {head.Length} and {normWeight.Length} values.");
        }

        Head = head;
        VocabSize = vocabSize;
        HiddenSize = hiddenSize;
        NormWeight = normWeight;
        NormEpsilon = normEpsilon;
    }

    public float[] Head { get; }

    public int VocabSize { get; }

    public int HiddenSize { get; }

    public float[] NormWeight { get; }

    public float NormEpsilon { get; }

    /// <summary>Widens the head and norm of <paramref name="head"/> to fp32 (once per model).</summary>
    public static FrozenHead From(LanguageModelHead head)
    {
        var config = head.Config;
        var matrix = head.HeadMatrix;
        var values = new float[(long)config.VocabSize * config.HiddenSize];
        for (var v = 0; v < config.VocabSize; v++)
        {
            matrix.ReadRow(v, values.AsSpan(v * config.HiddenSize, config.HiddenSize));
        }

        return new FrozenHead(values, config.VocabSize, config.HiddenSize, head.NormWeight.ToArray(), head.NormEpsilon);
    }

    /// <summary>RMSNorm of one row: <c>y = x r w</c> with <c>r = 1/sqrt(mean(x²) + eps)</c>; returns r.</summary>
    public static float Normalize(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, float eps, Span<float> y)
    {
        var r = 1f / MathF.Sqrt((TensorPrimitives.SumOfSquares(x) / x.Length) + eps);
        TensorPrimitives.Multiply(x, r, y);
        TensorPrimitives.Multiply(y, weight, y);
        return r;
    }

    /// <summary>
    /// The backward pass of <see cref="Normalize"/>: with <c>g = dy ⊙ w</c>, <c>dx = r g − x r³ (g·x) / n</c>. Writes (not adds) <paramref name="dx"/>.
    /// </summary>
    public static void NormalizeBackward(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, float r, ReadOnlySpan<float> dy, Span<float> dx)
    {
        TensorPrimitives.Multiply(dy, weight, dx);
        var dot = TensorPrimitives.Dot(dx, x);
        var c = r * r * r * dot / x.Length;
        TensorPrimitives.Multiply(dx, r, dx);
        TensorPrimitives.MultiplyAdd(x, -c, dx, dx);
    }

    /// <summary>
    /// The summed cross-entropy of the rows of <paramref name="hidden"/> (<c>[rows, hidden]</c>, the last block's outputs)
    /// against <paramref name="targets"/> (a token id per row, or −1 for a row that predicts nothing), and, when
    /// <paramref name="gradient"/> is not empty, the gradient of <c>sum / <paramref name="divisor"/></c> with respect to
    /// the rows (rows without a target get 0).
    /// </summary>
    /// <returns>The sum of the rows' losses in nats, summed in row order (deterministic).</returns>
    public double CrossEntropy(ReadOnlySpan<float> hidden, ReadOnlySpan<int> targets, double divisor, Span<float> gradient)
    {
        var h = HiddenSize;
        var rows = targets.Length;
        if (hidden.Length != rows * h || (!gradient.IsEmpty && gradient.Length != hidden.Length))
        {
            throw new ArgumentException($"{rows} rows of {h} values were expected; got {hidden.Length} hidden and {gradient.Length} gradient values.");
        }

        for (var row = 0; row < rows; row++)
        {
            if (targets[row] >= VocabSize)
            {
                throw new ArgumentOutOfRangeException(nameof(targets), targets[row], $"Target {targets[row]} of row {row} is outside the vocabulary [0, {VocabSize}).");
            }
        }

        var losses = new double[rows];
        var hiddenArray = hidden.ToArray();
        var targetArray = targets.ToArray();
        var gradientArray = gradient.IsEmpty ? null : new float[gradient.Length];
        var scale = (float)(1.0 / divisor);
        Parallel.For(0, rows, () => (Logits: new float[VocabSize], Normed: new float[h], DNormed: new float[h]), (row, _, scratch) =>
        {
            var target = targetArray[row];
            if (target < 0)
            {
                return scratch;
            }

            var x = hiddenArray.AsSpan(row * h, h);
            var r = Normalize(x, NormWeight, NormEpsilon, scratch.Normed);
            var logits = scratch.Logits;
            for (var v = 0; v < VocabSize; v++)
            {
                logits[v] = TensorPrimitives.Dot(Head.AsSpan(v * h, h), scratch.Normed);
            }

            var max = TensorPrimitives.Max(logits);
            var sum = 0.0;
            for (var v = 0; v < VocabSize; v++)
            {
                sum += Math.Exp(logits[v] - max);
            }

            var logSum = max + Math.Log(sum);
            losses[row] = logSum - logits[target];
            if (gradientArray is null)
            {
                return scratch;
            }

            // dLogits = (softmax − onehot) / divisor; dNormed = Headᵀ dLogits.
            var dNormed = scratch.DNormed;
            dNormed.AsSpan().Clear();
            for (var v = 0; v < VocabSize; v++)
            {
                var p = (float)Math.Exp(logits[v] - logSum);
                var d = (v == target ? p - 1f : p) * scale;
                TensorPrimitives.MultiplyAdd(Head.AsSpan(v * h, h), d, dNormed, dNormed);
            }

            NormalizeBackward(x, NormWeight, r, dNormed, gradientArray.AsSpan(row * h, h));
            return scratch;
        }, _ => { });

        gradientArray?.CopyTo(gradient);
        var total = 0.0;
        foreach (var loss in losses)
        {
            total += loss;
        }

        return total;
    }
}
