using System.Globalization;
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using Petals.Backends.Cpu.Kernels;
using Petals.Backends.Cpu.Linear;
using Petals.Backends.Cpu.Threading;
using Petals.Execution;
using Petals.Models;

namespace Petals.Backends.Cpu;

/// <content>
/// The backward pass (frozen weights) and the adaptations (deep prompts, sent LoRA) of the forward pass.
/// </content>
internal sealed unsafe partial class CpuBlockExecutor
{
    private readonly BackwardWorkspace _bw = new();
    private readonly InputGradientWork _inputGradientWork = new();
    private readonly AttentionBackwardWork _attentionBackwardWork = new();
    private readonly SwiGluBackwardWork _swiGluBackwardWork = new();
    private float[] _loraZ = [];

    /// <summary>
    /// The backward pass of a stateless forward over <paramref name="blocks"/> (see <see cref="IBlockExecutor"/>). A first
    /// forward keeps each block's input; then, block by block in reverse, the block's forward is recomputed into scratch and
    /// the gradient is propagated through it. Nothing is kept between calls.
    /// </summary>
    /// <remarks>
    /// Memory per call (fp32 values, kept and reused between calls, grown on demand): with <c>R = batch × tokens</c>, block
    /// count <c>n</c>, hidden <c>H</c>, query width <c>Q = heads × headDim</c>, key-value width <c>KV</c>, intermediate <c>I</c>,
    /// LoRA rank <c>r</c> (0 without) and <c>P</c> threads: <c>R·(n·H + 4·H + 4·Q + 4·KV + 4·I + 2·r) + P·(2·tokens + 3·1024)</c>
    /// for the backward, plus the forward's scratch <c>R·(H + 2·Q + 2·KV + 2·I)</c> (and the packed inputs of the GEMM).
    /// </remarks>
    public void Backward(ReadOnlySpan<float> inputs, Span<float> gradients, int batchSize, int tokenCount, BlockRange blocks, BlockAdaptation? adaptation = null, BlockGradients? adaptationGradients = null)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentOutOfRangeException.ThrowIfLessThan(batchSize, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(tokenCount, 1);
        CheckRange(blocks);
        var rows = (long)batchSize * tokenCount;
        var size = rows * Config.HiddenSize;
        if (inputs.Length != size)
        {
            throw new ArgumentException(
                string.Create(CultureInfo.InvariantCulture, $"inputs has {inputs.Length} values; [batch {batchSize}, tokens {tokenCount}, hidden {Config.HiddenSize}] needs {size}."), nameof(inputs));
        }

        if (gradients.Length != size)
        {
            throw new ArgumentException(
                string.Create(CultureInfo.InvariantCulture, $"gradients has {gradients.Length} values; [batch {batchSize}, tokens {tokenCount}, hidden {Config.HiddenSize}] needs {size}."), nameof(gradients));
        }

        CheckFinite(inputs, "inputs", nameof(inputs));
        CheckFinite(gradients, "gradients", nameof(gradients));
        if (adaptation is not null && adaptation.IsEmpty)
        {
            adaptation = null;
        }

        if (adaptation is not null)
        {
            CheckAdaptation(adaptation, blocks, batchSize, tokenCount);
        }

        adaptationGradients?.Validate(adaptation);

        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            fixed (float* input = inputs, grad = gradients)
            {
                BackwardCore(input, grad, batchSize, tokenCount, blocks, adaptation, adaptationGradients);
            }
        }
    }

    private void BackwardCore(float* input, float* grad, int batch, int tokens, BlockRange blocks, BlockAdaptation? adaptation, BlockGradients? adaptationGradients)
    {
        var c = Config;
        var rows = batch * tokens;
        var hs = c.HiddenSize;
        var perBlock = (long)rows * hs;
        var rank = adaptation?.Lora?.Rank ?? 0;
        _ws.Ensure(c, rows, tokens, tokens, _pool.PartCount);
        _bw.Ensure(c, rows, tokens, blocks.Count, _pool.PartCount);
        BackwardWorkspace.Grow(ref _loraZ, 2L * rows * rank);
        _rotary.Fill(0, tokens, _ws.Cos, _ws.Sin);
        var first = blocks.Start - Blocks.Start;
        var promptGrads = adaptationGradients is { Prompts.IsEmpty: false } ? adaptationGradients.Prompts : default;
        var loraGrads = adaptationGradients?.Lora;
        loraGrads?.Values.Span.Clear();

        fixed (float* store = _bw.Inputs)
        {
            // The input of every block (prompts added): the first forward over the span. The last block's output is not needed.
            Buffer.MemoryCopy(input, store, perBlock * sizeof(float), perBlock * sizeof(float));
            Adapt.For(adaptation, blocks, 0, batch, hs).AddPrompts(store, batch, tokens, 0, hs);
            for (var i = 1; i < blocks.Count; i++)
            {
                var x = store + (i * perBlock);
                Buffer.MemoryCopy(x - perBlock, x, perBlock * sizeof(float), perBlock * sizeof(float));
                RunBlock(first + i - 1, i - 1, x, batch, tokens, 0, null, Adapt.For(adaptation, blocks, i - 1, batch, hs), _ws.Buffers);
                Adapt.For(adaptation, blocks, i, batch, hs).AddPrompts(x, batch, tokens, 0, hs);
            }

            for (var i = blocks.Count - 1; i >= 0; i--)
            {
                var x = store + (i * perBlock);
                var adapt = Adapt.For(adaptation, blocks, i, batch, hs);
                fixed (float* hm = _bw.Residual)
                {
                    Buffer.MemoryCopy(x, hm, perBlock * sizeof(float), perBlock * sizeof(float));
                    RunBlock(first + i, i, hm, batch, tokens, 0, null, adapt, _bw);
                }

                BackwardBlock(first + i, x, grad, batch, tokens, adapt, loraGrads);
                if (adapt.PromptLength > 0 && !promptGrads.IsEmpty)
                {
                    var p = adapt.PromptLength;
                    var dst = promptGrads.Span.Slice(i * batch * p * hs, batch * p * hs);
                    for (var b = 0; b < batch; b++)
                    {
                        new ReadOnlySpan<float>(grad + ((long)b * tokens * hs), p * hs).CopyTo(dst.Slice(b * p * hs, p * hs));
                    }
                }
            }
        }
    }

    /// <summary>
    /// Propagates <paramref name="grad"/> (dLoss/dOutput of block <paramref name="layer"/>, in place) back to the block's input
    /// <paramref name="x"/>, from the intermediates <see cref="RunBlock"/> left in the backward workspace.
    /// </summary>
    private void BackwardBlock(int layer, float* x, float* grad, int batch, int tokens, in Adapt adapt, LoraWeights? loraGrads)
    {
        var c = Config;
        var w = _blocks[layer];
        var bw = _bw;
        var rows = batch * tokens;
        var hs = c.HiddenSize;
        var inter = c.IntermediateSize;
        var lora = adapt.Lora;
        var block = Blocks.Start + layer;
        var eps = (float)c.RmsNormEps;

        fixed (float* dm = bw.GradMlp, g = bw.Gate, u = bw.Up, m = bw.Mlp, dn = bw.GradNormed, n1 = bw.Normed, n2 = bw.Normed2,
               hm = bw.Residual, attn = bw.Attn, da = bw.GradAttn, q = bw.Q, k = bw.K, v = bw.V, dq = bw.GradQ, dk = bw.GradK, dv = bw.GradV)
        {
            // MLP: out = h + down(silu(g) * u).
            InputGradient(rows, dm, false, w.Down, grad);
            if (lora is not null)
            {
                LoraBackward(lora, loraGrads, block, LoraTarget.Down, m, rows, grad, dm);
            }

            var sw = _swiGluBackwardWork;
            sw.Gate = g;
            sw.Up = u;
            sw.GradMlp = dm;
            sw.Count = (long)rows * inter;
            sw.Scratch = bw.PartScratch;
            RunParallel(sw, sw.Count * 8);
            InputGradient(rows, dn, false, w.Gate, g, w.Up, u);
            if (lora is not null)
            {
                LoraBackward(lora, loraGrads, block, LoraTarget.Gate, n2, rows, g, dn);
                LoraBackward(lora, loraGrads, block, LoraTarget.Up, n2, rows, u, dn);
            }

            RmsNormBackward(hm, dn, grad, rows, hs, w.PostAttentionNorm, eps);

            // Attention: h = x + o(attn(rope(q(n(x))), rope(k(n(x))), v(n(x)))).
            InputGradient(rows, da, false, w.O, grad);
            if (lora is not null)
            {
                LoraBackward(lora, loraGrads, block, LoraTarget.Output, attn, rows, grad, da);
            }

            var aw = _attentionBackwardWork;
            aw.Q = q;
            aw.K = k;
            aw.V = v;
            aw.GradOut = da;
            aw.GradQ = dq;
            aw.GradK = dk;
            aw.GradV = dv;
            aw.Scratch = bw.AttentionScratch;
            aw.Batch = batch;
            aw.Tokens = tokens;
            aw.Heads = c.NumHeads;
            aw.KvHeads = c.NumKeyValueHeads;
            aw.Group = c.GroupSize;
            aw.HeadDim = c.HeadDim;
            aw.Scale = 1f / MathF.Sqrt(c.HeadDim);
            RunParallel(aw, 3L * batch * c.NumHeads * tokens * (tokens + 1) * c.HeadDim);

            var half = c.HeadDim / 2;
            for (var r = 0; r < rows; r++)
            {
                var t = r % tokens;
                var cos = new ReadOnlySpan<float>(_ws.Cos, t * half, half);
                var sin = new ReadOnlySpan<float>(_ws.Sin, t * half, half);
                RotaryEmbedding.RotateBack(new Span<float>(dq + ((long)r * _qDim), _qDim), c.NumHeads, c.HeadDim, cos, sin);
                RotaryEmbedding.RotateBack(new Span<float>(dk + ((long)r * _kvDim), _kvDim), c.NumKeyValueHeads, c.HeadDim, cos, sin);
            }

            InputGradient(rows, dn, false, w.Q, dq, w.K, dk, w.V, dv);
            if (lora is not null)
            {
                LoraBackward(lora, loraGrads, block, LoraTarget.Query, n1, rows, dq, dn);
                LoraBackward(lora, loraGrads, block, LoraTarget.Key, n1, rows, dk, dn);
                LoraBackward(lora, loraGrads, block, LoraTarget.Value, n1, rows, dv, dn);
            }

            RmsNormBackward(x, dn, grad, rows, hs, w.InputNorm, eps);
        }
    }

    /// <summary>
    /// <c>dx += dRMSNorm(x)ᵀ dy</c> for <c>y = x / rms(x) · w</c> (weight frozen): per row,
    /// <c>dx += inv · (w ⊙ dy) − x · inv³ · ⟨x, w ⊙ dy⟩ / width</c>.
    /// </summary>
    private void RmsNormBackward(float* x, float* dy, float* dx, int rows, int width, float[] weight, float eps)
    {
        var tmp = _bw.NormScratch.AsSpan(0, width);
        for (var r = 0; r < rows; r++)
        {
            var xr = new ReadOnlySpan<float>(x + ((long)r * width), width);
            var dyr = new ReadOnlySpan<float>(dy + ((long)r * width), width);
            var dxr = new Span<float>(dx + ((long)r * width), width);
            var meanSquare = TensorPrimitives.SumOfSquares(xr) / width;
            var inv = 1.0 / Math.Sqrt(meanSquare + eps);
            TensorPrimitives.Multiply(dyr, weight, tmp);
            var dot = TensorPrimitives.Dot(xr, tmp);
            TensorPrimitives.MultiplyAdd(tmp, (float)inv, dxr, dxr);
            TensorPrimitives.MultiplyAdd(xr, (float)(-inv * inv * inv * dot / width), dxr, dxr);
        }
    }

    /// <summary><c>dx[m, in] (+)= dy[m, out] W</c> over up to three layers of the same input width, columns split across threads.</summary>
    private void InputGradient(int rows, float* dx, bool accumulate, LinearLayer a, float* dya, LinearLayer? b = null, float* dyb = null, LinearLayer? c = null, float* dyc = null)
    {
        var job = _inputGradientWork;
        job.Set(rows, dx, accumulate, a, dya, b, dyb, c, dyc);
        RunParallel(job, job.MultiplyAdds);
    }

    /// <summary>Checks an adaptation for a pass: resolved weights only (no adapter name), and <see cref="BlockAdaptation.Validate"/>.</summary>
    private void CheckAdaptation(BlockAdaptation adaptation, BlockRange blocks, int batchSize, int? tokenCount)
    {
        if (adaptation.Adapter is not null)
        {
            throw new ArgumentException(
                $"The adaptation names the adapter '{adaptation.Adapter}'; an executor takes only resolved LoRA weights (BlockAdaptation.Lora), so whoever holds the named adapters must resolve it first.",
                nameof(adaptation));
        }

        adaptation.Validate(Config, blocks, batchSize, tokenCount);
    }

    /// <summary>Throws when <paramref name="values"/> holds an infinity or NaN, naming the tensor and the first such index.</summary>
    private static void CheckFinite(ReadOnlySpan<float> values, string what, string parameter)
    {
        var i = 0;
        fixed (float* p = values)
        {
            if (Vector256.IsHardwareAccelerated)
            {
                // v - v is 0 for finite v and NaN for infinities and NaNs; one compare per vector finds a bad one.
                var bad = Vector256<float>.Zero;
                for (; i + 8 <= values.Length; i += 8)
                {
                    var v = Vector256.Load(p + i);
                    bad |= ~Vector256.Equals(v - v, Vector256<float>.Zero);
                }

                if (bad == Vector256<float>.Zero)
                {
                    for (; i < values.Length && float.IsFinite(values[i]); i++)
                    {
                    }

                    if (i == values.Length)
                    {
                        return;
                    }
                }

                i = 0;
            }
        }

        for (; i < values.Length; i++)
        {
            if (!float.IsFinite(values[i]))
            {
                throw new ArgumentException(string.Create(CultureInfo.InvariantCulture, $"{what} holds {values[i]} at index {i}; it must be finite."), parameter);
            }
        }
    }

    /// <summary><c>y[rows, out] += Scale · (x Aᵀ) Bᵀ</c> for <paramref name="target"/> of <paramref name="block"/>.</summary>
    private void LoraForward(LoraWeights lora, int block, LoraTarget target, float[] x, int rows, float[] y)
    {
        fixed (float* py = y)
        {
            LoraForward(lora, block, target, x, rows, py);
        }
    }

    /// <summary><c>y[rows, out] += Scale · (x Aᵀ) Bᵀ</c> for <paramref name="target"/> of <paramref name="block"/>.</summary>
    private void LoraForward(LoraWeights lora, int block, LoraTarget target, float[] x, int rows, float* y)
    {
        var r = lora.Rank;
        var inF = LoraTargets.InFeatures(Config, target);
        var outF = LoraTargets.OutFeatures(Config, target);
        if (!lora.Has(target))
        {
            return;
        }

        BackwardWorkspace.Grow(ref _loraZ, 2L * rows * r);
        fixed (float* pa = lora.A(block, target).Span, pb = lora.B(block, target).Span, px = x, pz = _loraZ)
        {
            for (var row = 0; row < rows; row++)
            {
                var xr = px + ((long)row * inF);
                var zr = pz + ((long)row * r);
                for (var j = 0; j < r; j++)
                {
                    zr[j] = lora.Scale * VectorMath.Dot(xr, pa + ((long)j * inF), inF);
                }

                var yr = y + ((long)row * outF);
                for (var o = 0; o < outF; o++)
                {
                    yr[o] += VectorMath.Dot(pb + ((long)o * r), zr, r);
                }
            }
        }
    }

    /// <summary>
    /// The backward pass of the LoRA term of <paramref name="target"/>: <c>dz = Scale · dy B</c>, <c>dx += dz A</c> and, when
    /// <paramref name="grads"/> is given, <c>dB += Scale · dyᵀ (x Aᵀ)</c> and <c>dA += dzᵀ x</c>.
    /// </summary>
    private void LoraBackward(LoraWeights lora, LoraWeights? grads, int block, LoraTarget target, float* x, int rows, float* dy, float* dx)
    {
        if (!lora.Has(target))
        {
            return;
        }

        var r = lora.Rank;
        var inF = LoraTargets.InFeatures(Config, target);
        var outF = LoraTargets.OutFeatures(Config, target);
        var scale = lora.Scale;
        var gA = grads is null ? default : grads.A(block, target).Span;
        var gB = grads is null ? default : grads.B(block, target).Span;
        fixed (float* pa = lora.A(block, target).Span, pb = lora.B(block, target).Span, pz = _loraZ, pga = gA, pgb = gB)
        {
            var z = pz;
            var dz = pz + ((long)rows * r);
            for (var row = 0; row < rows; row++)
            {
                var xr = x + ((long)row * inF);
                var dyr = dy + ((long)row * outF);
                var dzr = dz + ((long)row * r);
                new Span<float>(dzr, r).Clear();
                for (var o = 0; o < outF; o++)
                {
                    VectorMath.MultiplyAdd(pb + ((long)o * r), scale * dyr[o], dzr, r);
                }

                if (grads is not null)
                {
                    var zr = z + ((long)row * r);
                    for (var j = 0; j < r; j++)
                    {
                        zr[j] = VectorMath.Dot(xr, pa + ((long)j * inF), inF);
                    }

                    for (var o = 0; o < outF; o++)
                    {
                        VectorMath.MultiplyAdd(zr, scale * dyr[o], pgb + ((long)o * r), r);
                    }

                    for (var j = 0; j < r; j++)
                    {
                        VectorMath.MultiplyAdd(xr, dzr[j], pga + ((long)j * inF), inF);
                    }
                }

                var dxr = dx + ((long)row * inF);
                for (var j = 0; j < r; j++)
                {
                    VectorMath.MultiplyAdd(pa + ((long)j * inF), dzr[j], dxr, inF);
                }
            }
        }
    }

    /// <summary>What an adaptation gives one block: its sent adapters and its deep prompts <c>[batch, PromptLength, hidden]</c>.</summary>
    private readonly struct Adapt
    {
        public LoraWeights? Lora { get; init; }

        public ReadOnlyMemory<float> Prompts { get; init; }

        public int PromptLength { get; init; }

        /// <summary>The part of <paramref name="adaptation"/> for block <paramref name="index"/> of <paramref name="blocks"/>.</summary>
        public static Adapt For(BlockAdaptation? adaptation, BlockRange blocks, int index, int batch, int hidden)
        {
            if (adaptation is null)
            {
                return default;
            }

            var p = adaptation.PromptLength;
            var perBlock = batch * p * hidden;
            return new Adapt
            {
                Lora = adaptation.Lora,
                PromptLength = p,
                Prompts = p == 0 ? default : adaptation.Prompts.Slice(index * perBlock, perBlock),
            };
        }

        /// <summary>Adds prompt <c>p</c> to the hidden state of position <c>p</c> (positions <c>start..start+tokens-1</c>) for <c>p &lt; PromptLength</c>.</summary>
        public void AddPrompts(float* hidden, int batch, int tokens, int start, int width)
        {
            var count = Math.Min(PromptLength - start, tokens);
            if (count <= 0)
            {
                return;
            }

            var prompts = Prompts.Span;
            for (var b = 0; b < batch; b++)
            {
                var src = prompts.Slice(((b * PromptLength) + start) * width, count * width);
                var dst = new Span<float>(hidden + ((long)b * tokens * width), count * width);
                TensorPrimitives.Add(dst, src, dst);
            }
        }
    }

    /// <summary>The buffers one block's forward writes its intermediates into.</summary>
    private class BlockBuffers
    {
        public float[] Normed = [];
        public float[] Normed2 = [];
        public float[] Q = [];
        public float[] K = [];
        public float[] V = [];
        public float[] Attn = [];
        public float[] Gate = [];
        public float[] Up = [];
        public float[] Mlp = [];

        /// <summary>Whether every intermediate gets its own buffer and the block stops before the down projection (backward recomputation).</summary>
        public bool KeepIntermediates { get; init; }
    }

    /// <summary>Scratch of a backward pass: the blocks' inputs, one block's intermediates and the gradients through it.</summary>
    private sealed class BackwardWorkspace : BlockBuffers
    {
        public BackwardWorkspace()
        {
            KeepIntermediates = true;
        }

        public float[] Inputs = [];
        public float[] Residual = [];
        public float[] GradMlp = [];
        public float[] GradNormed = [];
        public float[] GradAttn = [];
        public float[] GradQ = [];
        public float[] GradK = [];
        public float[] GradV = [];
        public float[] NormScratch = [];
        public float[][] AttentionScratch = [];
        public float[][] PartScratch = [];

        public void Ensure(ModelConfig c, int rows, int tokens, int blocks, int parts)
        {
            var qDim = c.NumHeads * c.HeadDim;
            var kvDim = c.NumKeyValueHeads * c.HeadDim;
            var hs = (long)rows * c.HiddenSize;
            var inter = (long)rows * c.IntermediateSize;
            Grow(ref Inputs, blocks * hs);
            Grow(ref Residual, hs);
            Grow(ref Normed, hs);
            Grow(ref Normed2, hs);
            Grow(ref GradNormed, hs);
            Grow(ref Q, (long)rows * qDim);
            Grow(ref Attn, (long)rows * qDim);
            Grow(ref GradAttn, (long)rows * qDim);
            Grow(ref GradQ, (long)rows * qDim);
            Grow(ref K, (long)rows * kvDim);
            Grow(ref V, (long)rows * kvDim);
            Grow(ref GradK, (long)rows * kvDim);
            Grow(ref GradV, (long)rows * kvDim);
            Grow(ref Gate, inter);
            Grow(ref Up, inter);
            Grow(ref Mlp, inter);
            Grow(ref GradMlp, inter);
            Grow(ref NormScratch, c.HiddenSize);
            if (AttentionScratch.Length != parts)
            {
                AttentionScratch = new float[parts][];
                PartScratch = new float[parts][];
                for (var i = 0; i < parts; i++)
                {
                    AttentionScratch[i] = [];
                    PartScratch[i] = new float[3 * SwiGluBackwardWork.Chunk];
                }
            }

            for (var i = 0; i < parts; i++)
            {
                Grow(ref AttentionScratch[i], 2L * tokens);
            }
        }

        public static void Grow(ref float[] buffer, long size) => Workspace.Grow(ref buffer, size);
    }

    /// <summary>The input gradients of up to three layers of one input width: <c>dx (+)= Σ dy_i W_i</c>, input columns split across the parts.</summary>
    private sealed class InputGradientWork : IParallelWork
    {
        private readonly LinearLayer?[] _layers = new LinearLayer?[3];
        private readonly nint[] _dy = new nint[3];
        private int _count;
        private int _rows;
        private float* _dx;
        private bool _accumulate;
        private int _alignment;

        public long MultiplyAdds { get; private set; }

        public void Set(int rows, float* dx, bool accumulate, LinearLayer a, float* dya, LinearLayer? b, float* dyb, LinearLayer? c, float* dyc)
        {
            _rows = rows;
            _dx = dx;
            _accumulate = accumulate;
            _layers[0] = a;
            _layers[1] = b;
            _layers[2] = c;
            _dy[0] = (nint)dya;
            _dy[1] = (nint)dyb;
            _dy[2] = (nint)dyc;
            _count = c is not null ? 3 : b is not null ? 2 : 1;
            _alignment = 1;
            long total = 0;
            for (var i = 0; i < _count; i++)
            {
                var layer = _layers[i]!;
                _alignment = Lcm(_alignment, layer.ColumnAlignment);
                total += (long)layer.OutFeatures * layer.InFeatures;
            }

            MultiplyAdds = total * rows;
        }

        public void Execute(int part, int parts)
        {
            var inF = _layers[0]!.InFeatures;
            var (s, e) = WorkerPool.Slice(inF, part, parts, _alignment);
            if (s >= e)
            {
                return;
            }

            for (var i = 0; i < _count; i++)
            {
                _layers[i]!.InputGradientColumns((float*)_dy[i], _rows, _dx, s, e, _accumulate || i > 0);
            }
        }

        private static int Lcm(int a, int b)
        {
            int x = a, y = b;
            while (y != 0)
            {
                (x, y) = (y, x % y);
            }

            return a / x * b;
        }
    }

    /// <summary>
    /// The SwiGLU backward pass in place: from <c>dm</c> (gradient of <c>m = silu(g) ⊙ u</c>), <c>g ← dm ⊙ u ⊙ σ(g)(1 + g(1 − σ(g)))</c>
    /// and <c>u ← dm ⊙ g ⊙ σ(g)</c>; contiguous chunks split across the parts.
    /// </summary>
    private sealed class SwiGluBackwardWork : IParallelWork
    {
        public const int Chunk = 1024;

        public float* Gate;
        public float* Up;
        public float* GradMlp;
        public long Count;
        public float[][] Scratch = [];

        public void Execute(int part, int parts)
        {
            var chunks = (int)((Count + Chunk - 1) / Chunk);
            var (s, e) = WorkerPool.Slice(chunks, part, parts);
            var scratch = Scratch[part];
            for (var ch = s; ch < e; ch++)
            {
                var off = (long)ch * Chunk;
                var n = (int)Math.Min(Chunk, Count - off);
                var g = new Span<float>(Gate + off, n);
                var u = new Span<float>(Up + off, n);
                var dm = new ReadOnlySpan<float>(GradMlp + off, n);
                var sig = scratch.AsSpan(0, n);
                var silu = scratch.AsSpan(Chunk, n);
                var t = scratch.AsSpan(2 * Chunk, n);
                TensorPrimitives.Sigmoid(g, sig);
                TensorPrimitives.Multiply(g, sig, silu);
                TensorPrimitives.Subtract(1f, sig, t);
                TensorPrimitives.MultiplyAdd(g, t, 1f, t);
                TensorPrimitives.Multiply(t, sig, t);
                TensorPrimitives.Multiply(t, u, t);
                TensorPrimitives.Multiply(t, dm, g);
                TensorPrimitives.Multiply(silu, dm, u);
            }
        }
    }

    /// <summary>
    /// The backward pass of causal softmax attention, one (sequence, key-value head) per work item so that the gradients of
    /// a group's keys and values are summed by one thread: per query, the scores and softmax are recomputed, then
    /// <c>dP = dO·V</c>, <c>dS = P ⊙ (dP − ⟨P, dP⟩)</c>, <c>dQ = scale · dS K</c>, <c>dK += scale · dSᵀ Q</c>, <c>dV += Pᵀ dO</c>.
    /// </summary>
    private sealed class AttentionBackwardWork : IParallelWork
    {
        public float* Q;
        public float* K;
        public float* V;
        public float* GradOut;
        public float* GradQ;
        public float* GradK;
        public float* GradV;
        public float[][] Scratch = [];
        public int Batch;
        public int Tokens;
        public int Heads;
        public int KvHeads;
        public int Group;
        public int HeadDim;
        public float Scale;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Execute(int part, int parts)
        {
            var (s, e) = WorkerPool.Slice(Batch * KvHeads, part, parts);
            var d = HeadDim;
            var qDim = Heads * d;
            var kvDim = KvHeads * d;
            fixed (float* scratch = Scratch[part])
            {
                var p = scratch;
                var dp = scratch + Tokens;
                for (var item = s; item < e; item++)
                {
                    var b = item / KvHeads;
                    var g = item % KvHeads;
                    var rowBase = (long)b * Tokens;
                    for (var j = 0; j < Tokens; j++)
                    {
                        new Span<float>(GradK + ((rowBase + j) * kvDim) + (g * d), d).Clear();
                        new Span<float>(GradV + ((rowBase + j) * kvDim) + (g * d), d).Clear();
                    }

                    for (var h = g * Group; h < (g + 1) * Group; h++)
                    {
                        for (var t = 0; t < Tokens; t++)
                        {
                            var q = Q + ((rowBase + t) * qDim) + (h * d);
                            var dO = GradOut + ((rowBase + t) * qDim) + (h * d);
                            var keys = t + 1;
                            var max = float.NegativeInfinity;
                            for (var j = 0; j < keys; j++)
                            {
                                var sc = VectorMath.Dot(q, K + ((rowBase + j) * kvDim) + (g * d), d) * Scale;
                                p[j] = sc;
                                max = MathF.Max(max, sc);
                                dp[j] = VectorMath.Dot(dO, V + ((rowBase + j) * kvDim) + (g * d), d);
                            }

                            var ps = new Span<float>(p, keys);
                            TensorPrimitives.Subtract(ps, max, ps);
                            TensorPrimitives.Exp(ps, ps);
                            TensorPrimitives.Multiply(ps, 1f / TensorPrimitives.Sum(ps), ps);
                            var dps = new Span<float>(dp, keys);
                            var mean = TensorPrimitives.Dot(ps, dps);
                            TensorPrimitives.Subtract(dps, mean, dps);
                            TensorPrimitives.Multiply(dps, ps, dps);
                            var dq = GradQ + ((rowBase + t) * qDim) + (h * d);
                            new Span<float>(dq, d).Clear();
                            for (var j = 0; j < keys; j++)
                            {
                                var row = (rowBase + j) * kvDim;
                                var ds = dp[j] * Scale;
                                VectorMath.MultiplyAdd(K + row + (g * d), ds, dq, d);
                                VectorMath.MultiplyAdd(q, ds, GradK + row + (g * d), d);
                                VectorMath.MultiplyAdd(dO, p[j], GradV + row + (g * d), d);
                            }
                        }
                    }
                }
            }
        }
    }
}
