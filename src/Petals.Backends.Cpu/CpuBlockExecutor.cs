// Over 500 lines on purpose: one block's forward (norms, projections, rotary, attention over the cache, SwiGLU) is
// one hot path over shared scratch buffers and worker partitions; splitting it would add calls and buffer handoffs
// per token where decode is memory-bound.
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using Petals.Backends.Cpu.Kernels;
using Petals.Backends.Cpu.Linear;
using Petals.Backends.Cpu.Native;
using Petals.Backends.Cpu.Threading;
using Petals.Execution;
using Petals.Models;

namespace Petals.Backends.Cpu;

/// <summary>
/// Runs a span of Llama decoder blocks on the CPU: RMSNorm, rotary GQA attention with a KV cache, SwiGLU MLP,
/// residuals. Linear layers run on a <see cref="WorkerPool"/> (output rows partitioned per thread) or a native BLAS.
/// </summary>
/// <remarks>
/// Thread-safe: forward passes on different caches may be called concurrently and run one after the other
/// (each one already uses every core). Scratch buffers are kept between calls and grow only when a call needs more.
/// </remarks>
internal sealed unsafe partial class CpuBlockExecutor : IBlockExecutor
{
    private readonly BlockWeights[] _blocks;
    private readonly CpuExecutorOptions _options;
    private readonly NativeBlas? _blas;
    private readonly WorkerPool _pool;
    private readonly RotaryEmbedding _rotary;
    /// <summary>From this many rows (batch × tokens) on, linear layers use the packed GEMM rather than the streaming kernel.</summary>
    internal const int PackedMinTokens = 24;


    private readonly Lock _lock = new();
    private readonly Workspace _ws = new();
    private readonly LinearWork _linearWork = new();
    private readonly AttentionWork _attentionWork = new();
    private readonly int _qDim;
    private readonly int _kvDim;
    private bool _disposed;

    public CpuBlockExecutor(ModelConfig config, BlockRange blocks, BlockWeights[] weights, CpuExecutorOptions options, NativeBlas? blas, string source)
    {
        Config = config;
        Blocks = blocks;
        _blocks = weights;
        _options = options;
        _blas = blas;
        _rotary = new RotaryEmbedding(config, source);
        _qDim = config.NumHeads * config.HeadDim;
        _kvDim = config.NumKeyValueHeads * config.HeadDim;
        _pool = new WorkerPool(options.ThreadCount);
    }

    public ModelConfig Config { get; }

    public BlockRange Blocks { get; }

    /// <summary>The weights of block <paramref name="layer"/> of the span (index from 0), for tests that read them back.</summary>
    internal BlockWeights WeightsOf(int layer) => _blocks[layer];

    /// <summary>The native BLAS in use, if any.</summary>
    public NativeBlas? NativeBlas => _blas;

    public IKvCache CreateCache(int batchSize, int maxLength) => CreateCache(batchSize, maxLength, Blocks);

    public IKvCache CreateCache(int batchSize, int maxLength, BlockRange blocks)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentOutOfRangeException.ThrowIfLessThan(batchSize, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxLength, 1);
        CheckRange(blocks);
        return new CpuKvCache(this, blocks, batchSize, maxLength, Config.NumKeyValueHeads, Config.HeadDim);
    }

    public void Forward(Span<float> hidden, int batchSize, int tokenCount, IKvCache? cache) => Forward(hidden, batchSize, tokenCount, cache, Blocks);

    public void Forward(Span<float> hidden, int batchSize, int tokenCount, IKvCache? cache, BlockRange blocks) =>
        Forward(hidden, batchSize, tokenCount, cache, blocks, null);

    public void Forward(Span<float> hidden, int batchSize, int tokenCount, IKvCache? cache, BlockRange blocks, BlockAdaptation? adaptation)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentOutOfRangeException.ThrowIfLessThan(batchSize, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(tokenCount, 1);
        CheckRange(blocks);
        var rows = (long)batchSize * tokenCount;
        if (hidden.Length != rows * Config.HiddenSize)
        {
            throw new ArgumentException(
                $"hidden has {hidden.Length} values; [batch {batchSize}, tokens {tokenCount}, hidden {Config.HiddenSize}] needs {rows * Config.HiddenSize}.", nameof(hidden));
        }

        if (adaptation is not null && adaptation.IsEmpty)
        {
            adaptation = null;
        }

        if (adaptation is not null)
        {
            CheckAdaptation(adaptation, blocks, batchSize, cache is null ? tokenCount : null);
        }

        CpuKvCache? kv = null;
        if (cache is not null)
        {
            kv = cache as CpuKvCache;
            if (kv is null || !ReferenceEquals(kv.Owner, this))
            {
                throw new ArgumentException("The cache was not created by this executor.", nameof(cache));
            }

            ObjectDisposedException.ThrowIf(kv.IsDisposed, kv);
            if (kv.Blocks != blocks)
            {
                throw new ArgumentException($"The cache holds blocks {kv.Blocks}; it cannot be used to run blocks {blocks}.", nameof(cache));
            }

            if (kv.BatchSize != batchSize)
            {
                throw new ArgumentException($"batchSize is {batchSize}; the cache holds {kv.BatchSize} sequences.", nameof(batchSize));
            }

            if ((long)kv.Length + tokenCount > kv.MaxLength)
            {
                throw new InvalidOperationException(
                    $"The cache holds {kv.Length} of at most {kv.MaxLength} positions; {tokenCount} more do not fit.");
            }
        }

        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            var start = kv?.Length ?? 0;
            // Scores are sized for the whole cache at once so that a session's decode steps never reallocate them.
            _ws.Ensure(Config, (int)rows, tokenCount, kv?.MaxLength ?? tokenCount, _pool.PartCount);
            _rotary.Fill(start, tokenCount, _ws.Cos, _ws.Sin);
            fixed (float* h = hidden)
            {
                var first = blocks.Start - Blocks.Start;
                for (var i = 0; i < blocks.Count; i++)
                {
                    var adapt = Adapt.For(adaptation, blocks, i, batchSize, Config.HiddenSize);
                    adapt.AddPrompts(h, batchSize, tokenCount, start, Config.HiddenSize);
                    RunBlock(first + i, i, h, batchSize, tokenCount, start, kv, adapt, _ws.Buffers);
                }
            }

            if (kv is not null)
            {
                kv.Length = start + tokenCount;
            }
        }
    }

    /// <summary>Throws when <paramref name="blocks"/> is empty or not within the span.</summary>
    private void CheckRange(BlockRange blocks)
    {
        if (blocks.Count <= 0 || blocks.Start < Blocks.Start || blocks.End > Blocks.End)
        {
            throw new ArgumentOutOfRangeException(nameof(blocks), blocks, $"Blocks {blocks} are not a non-empty range within this executor's span {Blocks}.");
        }
    }

    /// <summary>
    /// Runs block <paramref name="layer"/> of the span (index from 0), whose keys and values are block <paramref name="cacheLayer"/>
    /// of the cache, with the sent adapters of <paramref name="adapt"/> (prompts are added by the caller). With
    /// <see cref="BlockBuffers.KeepIntermediates"/> (the backward pass's recomputation), every intermediate stays in its own
    /// buffer and the block stops before the down projection: <paramref name="hidden"/> then holds the attention residual.
    /// </summary>
    private void RunBlock(int layer, int cacheLayer, float* hidden, int batch, int tokens, int start, CpuKvCache? kv, in Adapt adapt, BlockBuffers ws)
    {
        var c = Config;
        var w = _blocks[layer];
        var rows = batch * tokens;
        var hs = c.HiddenSize;
        var d = c.HeadDim;
        var lora = adapt.Lora;
        var block = Blocks.Start + layer;

        // Attention: x + o(attn(rope(q(n(x))), rope(k(n(x))), v(n(x)))).
        RmsNorm(hidden, ws.Normed, rows, hs, w.InputNorm, (float)c.RmsNormEps);
        Linear(ws.Normed, rows, w.Q, ws.Q, w.K, ws.K, w.V, ws.V, accumulate: false);
        if (lora is not null)
        {
            LoraForward(lora, block, LoraTarget.Query, ws.Normed, rows, ws.Q);
            LoraForward(lora, block, LoraTarget.Key, ws.Normed, rows, ws.K);
            LoraForward(lora, block, LoraTarget.Value, ws.Normed, rows, ws.V);
        }

        var half = d / 2;
        for (var r = 0; r < rows; r++)
        {
            var t = r % tokens;
            var cos = new ReadOnlySpan<float>(_ws.Cos, t * half, half);
            var sin = new ReadOnlySpan<float>(_ws.Sin, t * half, half);
            RotaryEmbedding.Rotate(new Span<float>(ws.Q, r * _qDim, _qDim), c.NumHeads, d, cos, sin);
            RotaryEmbedding.Rotate(new Span<float>(ws.K, r * _kvDim, _kvDim), c.NumKeyValueHeads, d, cos, sin);
        }

        var aw = _attentionWork;
        fixed (float* q = ws.Q, k = ws.K, v = ws.V, o = ws.Attn)
        {
            aw.Q = q;
            aw.Out = o;
            aw.Scores = _ws.Scores;
            aw.Batch = batch;
            aw.Tokens = tokens;
            aw.Start = start;
            aw.Heads = c.NumHeads;
            aw.Group = c.GroupSize;
            aw.HeadDim = d;
            aw.QDim = _qDim;
            aw.Scale = 1f / MathF.Sqrt(d);
            if (kv is null)
            {
                aw.K = k;
                aw.V = v;
                aw.StrideBatch = (long)tokens * _kvDim;
                aw.StrideHead = d;
                aw.StridePos = _kvDim;
                RunParallel(aw, (long)batch * c.NumHeads * tokens * (start + tokens) * d);
            }
            else
            {
                var keys = kv.Keys(cacheLayer);
                var values = kv.Values(cacheLayer);
                var maxLen = kv.MaxLength;
                for (var b = 0; b < batch; b++)
                {
                    for (var t = 0; t < tokens; t++)
                    {
                        var srcRow = ((b * tokens) + t) * _kvDim;
                        for (var g = 0; g < c.NumKeyValueHeads; g++)
                        {
                            var dst = ((((long)b * c.NumKeyValueHeads) + g) * maxLen + start + t) * d;
                            ws.K.AsSpan(srcRow + (g * d), d).CopyTo(keys.AsSpan((int)dst, d));
                            ws.V.AsSpan(srcRow + (g * d), d).CopyTo(values.AsSpan((int)dst, d));
                        }
                    }
                }

                fixed (float* ck = keys, cv = values)
                {
                    aw.K = ck;
                    aw.V = cv;
                    aw.StrideBatch = (long)c.NumKeyValueHeads * maxLen * d;
                    aw.StrideHead = (long)maxLen * d;
                    aw.StridePos = d;
                    RunParallel(aw, (long)batch * c.NumHeads * tokens * (start + tokens) * d);
                }
            }
        }

        Linear(ws.Attn, rows, w.O, hidden, hs, accumulate: true);
        if (lora is not null)
        {
            LoraForward(lora, block, LoraTarget.Output, ws.Attn, rows, hidden);
        }

        // MLP: x + down(silu(gate(n(x))) * up(n(x))).
        RmsNorm(hidden, ws.Normed2, rows, hs, w.PostAttentionNorm, (float)c.RmsNormEps);
        Linear(ws.Normed2, rows, w.Gate, ws.Gate, w.Up, ws.Up, null, null, accumulate: false);
        if (lora is not null)
        {
            LoraForward(lora, block, LoraTarget.Gate, ws.Normed2, rows, ws.Gate);
            LoraForward(lora, block, LoraTarget.Up, ws.Normed2, rows, ws.Up);
        }

        var n = rows * c.IntermediateSize;
        var gate = ws.Gate.AsSpan(0, n);
        var up = ws.Up.AsSpan(0, n);
        if (ws.KeepIntermediates)
        {
            // m = silu(g) * u into its own buffer: the backward pass needs g and u.
            var m = ws.Mlp.AsSpan(0, n);
            TensorPrimitives.Sigmoid(gate, m);
            TensorPrimitives.Multiply(m, gate, m);
            TensorPrimitives.Multiply(m, up, m);
            return;
        }

        TensorPrimitives.Multiply(up, gate, up);
        TensorPrimitives.Sigmoid(gate, gate);
        TensorPrimitives.Multiply(gate, up, gate);
        Linear(ws.Gate, rows, w.Down, hidden, hs, accumulate: true);
        if (lora is not null)
        {
            LoraForward(lora, block, LoraTarget.Down, ws.Gate, rows, hidden);
        }
    }

    private static void RmsNorm(float* x, float[] output, int rows, int width, float[] weight, float eps)
    {
        for (var r = 0; r < rows; r++)
        {
            var row = new ReadOnlySpan<float>(x + ((long)r * width), width);
            var dst = output.AsSpan(r * width, width);
            var meanSquare = TensorPrimitives.SumOfSquares(row) / width;
            var scale = (float)(1.0 / Math.Sqrt(meanSquare + eps));
            TensorPrimitives.Multiply(row, scale, dst);
            TensorPrimitives.Multiply(dst, weight, dst);
        }
    }

    private void Linear(float[] x, int rows, LinearLayer layer, float* y, int ldy, bool accumulate)
    {
        fixed (float* px = x)
        {
            var job = _linearWork;
            job.Set(px, rows, accumulate, ldy, layer, y, null, null, null, null);
            Dispatch(job);
        }
    }

    private void Linear(float[] x, int rows, LinearLayer a, float[] ya, LinearLayer b, float[] yb, LinearLayer? c, float[]? yc, bool accumulate)
    {
        fixed (float* px = x, pa = ya, pb = yb, pc = yc)
        {
            var job = _linearWork;
            job.Set(px, rows, accumulate, 0, a, pa, b, pb, c, pc);
            Dispatch(job);
        }
    }

    private void Dispatch(LinearWork job)
    {
        if (_blas is not null && (_options.NativeBlas == NativeBlasMode.Always || (job.Rows >= _options.NativeBlasMinTokens && !PackedGemm.HasFastMicroKernel)))
        {
            var all = true;
            for (var i = 0; i < job.Count; i++)
            {
                all &= job.Layers[i]!.DType == Tensors.TensorDType.F32;
            }

            if (all)
            {
                for (var i = 0; i < job.Count; i++)
                {
                    var layer = job.Layers[i]!;
                    layer.TryForwardNative(_blas, job.X, job.Rows, job.Outputs[i], job.Ldy == 0 ? layer.OutFeatures : job.Ldy, job.Accumulate);
                }

                return;
            }
        }

        if (job.Rows >= PackedMinTokens)
        {
            // Pack the inputs once for all threads; each thread then runs the packed micro-kernel on its rows.
            fixed (float* xp = _ws.PackedX)
            {
                PackedGemm.PackInput(job.X, job.Rows, job.Layers[0]!.InFeatures, xp);
                job.PackedX = xp;
                job.PartScratch = _ws.PartScratch;
                RunParallel(job, job.MultiplyAdds);
                job.PackedX = null;
            }

            return;
        }

        RunParallel(job, job.MultiplyAdds);
    }

    /// <summary>Runs <paramref name="work"/> on all threads, or on the calling thread alone when it is too small to pay for a dispatch.</summary>
    private void RunParallel(IParallelWork work, long multiplyAdds)
    {
        if (multiplyAdds < _options.ParallelMinMultiplyAdds)
        {
            work.Execute(0, 1);
        }
        else
        {
            _pool.Run(work);
        }
    }

    public object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        if (serviceKey is not null)
        {
            return null;
        }

        if (serviceType == typeof(CpuExecutorOptions))
        {
            return _options.Clone();
        }

        if (serviceType == typeof(ExecutorWeightsInfo))
        {
            return BlockWeights.Describe(_blocks);
        }

        return serviceType.IsInstanceOfType(this) ? this : null;
    }

    public void Dispose()
    {
        lock (_lock)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            _pool.Dispose();
            foreach (var b in _blocks)
            {
                b.Dispose();
            }
        }
    }

    /// <summary>Up to three linear layers over the same input, output rows of each split evenly across the parts.</summary>
    private sealed class LinearWork : IParallelWork
    {
        public readonly LinearLayer?[] Layers = new LinearLayer?[3];
        public readonly nint[] OutputAddresses = new nint[3];

        public float* X { get; private set; }

        public int Rows { get; private set; }

        public bool Accumulate { get; private set; }

        /// <summary>Row stride of the outputs; 0 means each layer's own output width.</summary>
        public int Ldy { get; private set; }

        public int Count { get; private set; }

        /// <summary>The multiply-adds of the whole job.</summary>
        public long MultiplyAdds
        {
            get
            {
                long total = 0;
                for (var i = 0; i < Count; i++)
                {
                    total += (long)Layers[i]!.OutFeatures * Layers[i]!.InFeatures;
                }

                return total * Rows;
            }
        }

        public OutputView Outputs => new(OutputAddresses);

        /// <summary>The packed inputs when the packed GEMM runs, else null.</summary>
        public float* PackedX { get; set; }

        /// <summary>Per-part scratch of the packed GEMM.</summary>
        public float[][] PartScratch { get; set; } = [];

        public void Set(float* x, int rows, bool accumulate, int ldy, LinearLayer a, float* ya, LinearLayer? b, float* yb, LinearLayer? c, float* yc)
        {
            X = x;
            Rows = rows;
            Accumulate = accumulate;
            Ldy = ldy;
            Layers[0] = a;
            Layers[1] = b;
            Layers[2] = c;
            OutputAddresses[0] = (nint)ya;
            OutputAddresses[1] = (nint)yb;
            OutputAddresses[2] = (nint)yc;
            Count = c is not null ? 3 : b is not null ? 2 : 1;
        }

        public void Execute(int part, int parts)
        {
            for (var i = 0; i < Count; i++)
            {
                var layer = Layers[i]!;
                var ldy = Ldy == 0 ? layer.OutFeatures : Ldy;
                if (PackedX != null)
                {
                    var (s, e) = WorkerPool.Slice(layer.OutFeatures, part, parts, PackedGemm.RowTile);
                    if (s < e)
                    {
                        fixed (float* scratch = PartScratch[part])
                        {
                            layer.ForwardRowsPacked(PackedX, Rows, (float*)OutputAddresses[i], ldy, s, e, Accumulate, scratch);
                        }
                    }
                }
                else
                {
                    var (s, e) = WorkerPool.Slice(layer.OutFeatures, part, parts, 4);
                    if (s < e)
                    {
                        layer.ForwardRows(X, Rows, (float*)OutputAddresses[i], ldy, s, e, Accumulate);
                    }
                }
            }
        }

        public readonly struct OutputView(nint[] addresses)
        {
            public float* this[int i] => (float*)addresses[i];
        }
    }

    /// <summary>Causal softmax attention, one (sequence, head) pair per work item, items split across the parts.</summary>
    private sealed class AttentionWork : IParallelWork
    {
        public float* Q;
        public float* K;
        public float* V;
        public float* Out;
        public float[][] Scores = [];
        public long StrideBatch;
        public long StrideHead;
        public long StridePos;
        public int Batch;
        public int Tokens;
        public int Start;
        public int Heads;
        public int Group;
        public int HeadDim;
        public int QDim;
        public float Scale;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Execute(int part, int parts)
        {
            var (s, e) = WorkerPool.Slice(Batch * Heads, part, parts);
            var d = HeadDim;
            fixed (float* scores = Scores[part])
            {
                for (var item = s; item < e; item++)
                {
                    var b = item / Heads;
                    var h = item % Heads;
                    var g = h / Group;
                    var kBase = K + (b * StrideBatch) + (g * StrideHead);
                    var vBase = V + (b * StrideBatch) + (g * StrideHead);
                    for (var t = 0; t < Tokens; t++)
                    {
                        var q = Q + ((((long)b * Tokens) + t) * QDim) + ((long)h * d);
                        var keys = Start + t + 1;
                        var max = float.NegativeInfinity;
                        for (var j = 0; j < keys; j++)
                        {
                            var sc = VectorMath.Dot(q, kBase + (j * StridePos), d) * Scale;
                            scores[j] = sc;
                            max = MathF.Max(max, sc);
                        }

                        var p = new Span<float>(scores, keys);
                        TensorPrimitives.Subtract(p, max, p);
                        TensorPrimitives.Exp(p, p);
                        var inv = 1f / TensorPrimitives.Sum(p);
                        var o = Out + ((((long)b * Tokens) + t) * QDim) + ((long)h * d);
                        new Span<float>(o, d).Clear();
                        for (var j = 0; j < keys; j++)
                        {
                            VectorMath.MultiplyAdd(vBase + (j * StridePos), scores[j] * inv, o, d);
                        }
                    }
                }
            }
        }
    }

    /// <summary>Scratch buffers of a forward pass, pinned and grown on demand.</summary>
    private sealed class Workspace : BlockBuffers
    {
        public Workspace()
        {
            Buffers = this;
        }

        /// <summary>This workspace as the buffers of a block (the forward pass shares one normed buffer and computes m in the gate buffer).</summary>
        public BlockBuffers Buffers { get; }

        public float[] Cos = [];
        public float[] Sin = [];
        public float[][] Scores = [];
        public float[] PackedX = [];
        public float[][] PartScratch = [];

        public void Ensure(ModelConfig c, int rows, int tokens, int keys, int parts)
        {
            var qDim = c.NumHeads * c.HeadDim;
            var kvDim = c.NumKeyValueHeads * c.HeadDim;
            Grow(ref Normed, (long)rows * c.HiddenSize);
            Normed2 = Normed;
            Grow(ref Q, (long)rows * qDim);
            Grow(ref K, (long)rows * kvDim);
            Grow(ref V, (long)rows * kvDim);
            Grow(ref Attn, (long)rows * qDim);
            Grow(ref Gate, (long)rows * c.IntermediateSize);
            Grow(ref Up, (long)rows * c.IntermediateSize);
            Grow(ref Cos, (long)tokens * c.HeadDim / 2);
            Grow(ref Sin, (long)tokens * c.HeadDim / 2);
            if (rows >= PackedMinTokens)
            {
                var maxK = Math.Max(Math.Max(c.HiddenSize, qDim), c.IntermediateSize);
                Grow(ref PackedX, PackedGemm.PackedSize(rows, maxK));
            }

            if (PartScratch.Length != parts)
            {
                PartScratch = new float[parts][];
                for (var i = 0; i < parts; i++)
                {
                    PartScratch[i] = GC.AllocateUninitializedArray<float>(PackedGemm.ScratchFloats, pinned: true);
                }
            }

            if (Scores.Length != parts)
            {
                Scores = new float[parts][];
                for (var i = 0; i < parts; i++)
                {
                    Scores[i] = [];
                }
            }

            for (var i = 0; i < parts; i++)
            {
                Grow(ref Scores[i], keys);
            }
        }

        internal static void Grow(ref float[] buffer, long size)
        {
            if (buffer.Length >= size)
            {
                return;
            }

            if (size > Array.MaxLength)
            {
                throw new InvalidOperationException($"A forward pass needs a scratch buffer of {size} values, more than one array can hold; split the batch.");
            }

            // Grow geometrically so that a session whose context grows token by token reallocates rarely.
            var target = Math.Min(Array.MaxLength, Math.Max(size, (long)buffer.Length * 3 / 2));
            buffer = GC.AllocateUninitializedArray<float>((int)target, pinned: true);
        }
    }
}
