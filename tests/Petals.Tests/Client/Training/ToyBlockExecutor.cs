using Petals.Execution;
using Petals.Models;

namespace Petals.Tests.Client.Training;

/// <summary>
/// A small differentiable causal model with an exact backward pass, deep prompts and LoRA on <c>q_proj</c>, for testing
/// the fine-tuning wire path (remote against local with the same executor) independently of the CPU kernels. Block b:
/// <c>x_t = h_t + prompt_b[t]</c> (t below the prompt length), <c>q_t = x_t Wᵀ + s (x_t Aᵀ) Bᵀ</c>,
/// <c>out_t = x_t + mean_{u ≤ t} tanh(q_u)</c>. Weights are seeded by block number, so every instance agrees.
/// </summary>
internal sealed class ToyBlockExecutor(ModelConfig config, BlockRange blocks) : IBlockExecutor
{
    private readonly float[][] _weights = [.. Enumerable.Range(0, config.NumLayers).Select(b => Weights(config.HiddenSize, b))];

    public static ModelConfig ToyConfig(int layers = 6) => new()
    {
        HiddenSize = 8, IntermediateSize = 16, NumLayers = layers, NumHeads = 2, NumKeyValueHeads = 2, HeadDim = 4, VocabSize = 32,
    };

    public ModelConfig Config { get; } = config;

    public BlockRange Blocks { get; } = blocks;

    public IKvCache CreateCache(int batchSize, int maxLength) => CreateCache(batchSize, maxLength, Blocks);

    public IKvCache CreateCache(int batchSize, int maxLength, BlockRange blocks) => new Cache(batchSize, maxLength, blocks, Config.HiddenSize);

    public void Forward(Span<float> hidden, int batchSize, int tokenCount, IKvCache? cache) => Forward(hidden, batchSize, tokenCount, cache, Blocks, null);

    public void Forward(Span<float> hidden, int batchSize, int tokenCount, IKvCache? cache, BlockRange blocks) => Forward(hidden, batchSize, tokenCount, cache, blocks, null);

    public void Forward(Span<float> hidden, int batchSize, int tokenCount, IKvCache? cache, BlockRange blocks, BlockAdaptation? adaptation)
    {
        Check(blocks, adaptation);
        var h = Config.HiddenSize;
        var c = (Cache?)cache;
        var start = c?.Length ?? 0;
        for (var b = blocks.Start; b < blocks.End; b++)
        {
            var k = b - blocks.Start;
            for (var row = 0; row < batchSize; row++)
            {
                var tanhSum = new double[h];
                if (c is not null)
                {
                    for (var u = 0; u < start; u++)
                    {
                        for (var j = 0; j < h; j++)
                        {
                            tanhSum[j] += c.Tanh(k, row, u)[j];
                        }
                    }
                }

                for (var t = 0; t < tokenCount; t++)
                {
                    var pos = start + t;
                    var x = Input(hidden, row, t, tokenCount, h, adaptation, blocks, b, batchSize, pos);
                    var q = Query(b, x, adaptation?.Lora);
                    var hrow = hidden.Slice(((row * tokenCount) + t) * h, h);
                    for (var j = 0; j < h; j++)
                    {
                        var th = Math.Tanh(q[j]);
                        tanhSum[j] += th;
                        if (c is not null)
                        {
                            c.Tanh(k, row, pos)[j] = (float)th;
                        }

                        hrow[j] = (float)(x[j] + (tanhSum[j] / (pos + 1)));
                    }
                }
            }
        }

        if (c is not null)
        {
            c.Length = start + tokenCount;
        }
    }

    public void Backward(ReadOnlySpan<float> inputs, Span<float> gradients, int batchSize, int tokenCount, BlockRange blocks, BlockAdaptation? adaptation = null, BlockGradients? adaptationGradients = null)
    {
        Check(blocks, adaptation);
        var h = Config.HiddenSize;

        // Recompute each block's input.
        var blockInputs = new float[blocks.Count][];
        var current = inputs.ToArray();
        for (var b = blocks.Start; b < blocks.End; b++)
        {
            blockInputs[b - blocks.Start] = current.ToArray();
            Forward(current, batchSize, tokenCount, null, new BlockRange(b, b + 1), adaptation?.ForBlocks(blocks, new BlockRange(b, b + 1)));
        }

        adaptationGradients?.Prompts.Span.Clear();
        adaptationGradients?.Lora?.Values.Span.Clear();
        for (var b = blocks.End - 1; b >= blocks.Start; b--)
        {
            var k = b - blocks.Start;
            var input = blockInputs[k];
            var lora = adaptation?.Lora;
            var w = _weights[b];
            for (var row = 0; row < batchSize; row++)
            {
                var xs = new double[tokenCount][];
                var qs = new double[tokenCount][];
                for (var t = 0; t < tokenCount; t++)
                {
                    xs[t] = Input(input, row, t, tokenCount, h, adaptation, blocks, b, batchSize, t);
                    qs[t] = Query(b, xs[t], lora);
                }

                var suffix = new double[h];
                var dx = new double[tokenCount][];
                for (var t = tokenCount - 1; t >= 0; t--)
                {
                    var g = gradients.Slice(((row * tokenCount) + t) * h, h);
                    for (var j = 0; j < h; j++)
                    {
                        suffix[j] += g[j] / (t + 1.0);
                    }

                    var dq = new double[h];
                    for (var j = 0; j < h; j++)
                    {
                        var th = Math.Tanh(qs[t][j]);
                        dq[j] = suffix[j] * (1 - (th * th));
                    }

                    var d = new double[h];
                    for (var j = 0; j < h; j++)
                    {
                        d[j] = g[j];
                    }

                    for (var o = 0; o < h; o++)
                    {
                        for (var i = 0; i < h; i++)
                        {
                            d[i] += dq[o] * w[(o * h) + i];
                        }
                    }

                    if (lora is not null)
                    {
                        var a = lora.A(b, LoraTarget.Query).Span;
                        var bm = lora.B(b, LoraTarget.Query).Span;
                        var r = lora.Rank;
                        var dqB = new double[r];
                        var u = new double[r];
                        for (var m = 0; m < r; m++)
                        {
                            for (var o = 0; o < h; o++)
                            {
                                dqB[m] += dq[o] * bm[(o * r) + m];
                            }

                            for (var i = 0; i < h; i++)
                            {
                                u[m] += xs[t][i] * a[(m * h) + i];
                            }
                        }

                        for (var m = 0; m < r; m++)
                        {
                            for (var i = 0; i < h; i++)
                            {
                                d[i] += lora.Scale * dqB[m] * a[(m * h) + i];
                            }
                        }

                        if (adaptationGradients?.Lora is { } gl)
                        {
                            var ga = gl.A(b, LoraTarget.Query).Span;
                            var gb = gl.B(b, LoraTarget.Query).Span;
                            for (var m = 0; m < r; m++)
                            {
                                for (var i = 0; i < h; i++)
                                {
                                    ga[(m * h) + i] += (float)(lora.Scale * dqB[m] * xs[t][i]);
                                }

                                for (var o = 0; o < h; o++)
                                {
                                    gb[(o * r) + m] += (float)(lora.Scale * dq[o] * u[m]);
                                }
                            }
                        }
                    }

                    dx[t] = d;
                }

                for (var t = 0; t < tokenCount; t++)
                {
                    var g = gradients.Slice(((row * tokenCount) + t) * h, h);
                    for (var j = 0; j < h; j++)
                    {
                        g[j] = (float)dx[t][j];
                    }

                    if (adaptation is { HasPrompts: true } && t < adaptation.PromptLength && adaptationGradients is { Prompts.IsEmpty: false } ag)
                    {
                        var p = ag.Prompts.Span.Slice((((k * batchSize) + row) * adaptation.PromptLength + t) * h, h);
                        for (var j = 0; j < h; j++)
                        {
                            p[j] = (float)dx[t][j];
                        }
                    }
                }
            }
        }
    }

    public object? GetService(Type serviceType, object? serviceKey = null) => null;

    public void Dispose()
    {
    }

    private static float[] Weights(int h, int block)
    {
        var random = new Random(1000 + block);
        return [.. Enumerable.Range(0, h * h).Select(_ => (float)((random.NextDouble() - 0.5) * 1.2))];
    }

    private void Check(BlockRange blocks, BlockAdaptation? adaptation)
    {
        if (blocks.Start < Blocks.Start || blocks.End > Blocks.End || blocks.Count <= 0)
        {
            throw new ArgumentOutOfRangeException(nameof(blocks), blocks, $"Blocks {blocks} are not within {Blocks}.");
        }

        if (adaptation?.Lora is { } lora && lora.Targets.Any(t => t != LoraTarget.Query))
        {
            throw new NotSupportedException("The toy executor adapts only q_proj.");
        }
    }

    private static double[] Input(ReadOnlySpan<float> hidden, int row, int t, int tokenCount, int h, BlockAdaptation? adaptation, BlockRange blocks, int block, int batchSize, int pos)
    {
        var x = new double[h];
        var src = hidden.Slice(((row * tokenCount) + t) * h, h);
        for (var j = 0; j < h; j++)
        {
            x[j] = src[j];
        }

        if (adaptation is { HasPrompts: true } && pos < adaptation.PromptLength)
        {
            var p = adaptation.Prompts.Span.Slice(((((block - blocks.Start) * batchSize) + row) * adaptation.PromptLength + pos) * h, h);
            for (var j = 0; j < h; j++)
            {
                x[j] += p[j];
            }
        }

        return x;
    }

    private double[] Query(int block, double[] x, LoraWeights? lora)
    {
        var h = x.Length;
        var w = _weights[block];
        var q = new double[h];
        for (var o = 0; o < h; o++)
        {
            for (var i = 0; i < h; i++)
            {
                q[o] += w[(o * h) + i] * x[i];
            }
        }

        if (lora is not null)
        {
            var a = lora.A(block, LoraTarget.Query).Span;
            var bm = lora.B(block, LoraTarget.Query).Span;
            var r = lora.Rank;
            for (var m = 0; m < r; m++)
            {
                double u = 0;
                for (var i = 0; i < h; i++)
                {
                    u += a[(m * h) + i] * x[i];
                }

                for (var o = 0; o < h; o++)
                {
                    q[o] += lora.Scale * u * bm[(o * r) + m];
                }
            }
        }

        return q;
    }

    /// <summary>Per block of the range, per row and position, the tanh of the query.</summary>
    private sealed class Cache(int batchSize, int maxLength, BlockRange blocks, int hidden) : IKvCache
    {
        private float[] _values = new float[blocks.Count * batchSize * maxLength * hidden];

        public int BatchSize { get; } = batchSize;

        public int MaxLength { get; } = maxLength;

        public int Length { get; set; }

        public Span<float> Tanh(int block, int row, int pos) => _values.AsSpan((((block * BatchSize) + row) * MaxLength + pos) * hidden, hidden);

        public void Reorder(ReadOnlySpan<int> hypoIds)
        {
            var old = _values.ToArray();
            var perRow = MaxLength * hidden;
            for (var b = 0; b < blocks.Count; b++)
            {
                for (var r = 0; r < BatchSize; r++)
                {
                    old.AsSpan(((b * BatchSize) + hypoIds[r]) * perRow, perRow).CopyTo(_values.AsSpan(((b * BatchSize) + r) * perRow));
                }
            }
        }

        public void Truncate(int length) => Length = length;

        public void Dispose() => _values = [];
    }
}
