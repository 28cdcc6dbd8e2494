using System.Buffers;
using System.Diagnostics;
using System.Globalization;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using Petals.Backends.Cpu;
using Petals.Execution;
using Petals.Formats.Gguf;
using Petals.Models;
using Petals.Tensors;

namespace Petals.Benchmarks.LlamaCpp;

/// <summary>
/// <c>decode-profile</c>: where one decode step of our executor goes on a GGUF file (issue 14's f32 gap), through public
/// APIs only: the full step on the memory-mapped file, on a pre-faulted copy of the weights in anonymous memory (4 KiB
/// pages, and 2 MiB transparent huge pages), with 1 thread, and at a long position; against bench-local references over
/// the same bytes: a plain 2-thread read of all block weights, and the block's seven matrix-vector products alone
/// (4-row AVX-512 kernel, spinning hand-offs) with and without splitting K into 2048-column blocks as ours does.
/// </summary>
internal static unsafe class DecodeProfile
{
    public static int Run(string[] args, TextWriter output)
    {
        string Arg(string name, string fallback)
        {
            var i = Array.IndexOf(args, name);
            return i >= 0 && i + 1 < args.Length ? args[i + 1] : fallback;
        }

        var file = Arg("--file", "/work/bench-models/" + CompareModels.FileName(CompareShape.Llama2_7B, 4, "f32"));
        var threads = OptionValues.Int("--threads", Arg("--threads", "2"), 1);
        var steps = OptionValues.Int("--steps", Arg("--steps", "20"), 1);
        var position = OptionValues.Int("--position", Arg("--position", "16"), 1);
        var longPosition = OptionValues.Int("--long-position", Arg("--long-position", "1024"), 1);
        var loopSeconds = OptionValues.NonNegative("--loop-seconds", Arg("--loop-seconds", "0"));
        var sections = Arg("--sections", "mmap,reference,managed,hugepage,threads1,long,llama").Split(',', StringSplitOptions.RemoveEmptyEntries);
        if (!File.Exists(file))
        {
            throw new ArgumentException($"--file {file} does not exist (run model-files).");
        }

        using var gguf = GgufModelWeights.Open(file);
        var config = gguf.Config;
        var names = Enumerable.Range(0, config.NumLayers).SelectMany(b => LlamaTensorNames.BlockTensors.Select(s => LlamaTensorNames.Block(b, s))).ToArray();
        var blockBytes = names.Sum(n => gguf.Tensors[n].ByteSize);
        var inv = CultureInfo.InvariantCulture;
        output.WriteLine(string.Create(inv, $"decode-profile {Path.GetFileName(file)}: {config.NumLayers} blocks, {blockBytes / 1e9:F3} GB of block weights, {threads} threads, position {position}, {steps} timed steps (medians; first = the first step after creating the executor)"));

        string Line(string what, double ms, double? first = null) => string.Create(inv,
            $"  {what,-58} {ms,8:F2} ms  {1000 / ms,7:F2} tok/s  {blockBytes / (ms / 1000) / 1e9,6:F1} GB/s{(first is { } f ? $"  (first step {f:F1} ms)" : string.Empty)}");

        if (loopSeconds > 0 && sections is ["llama"])
        {
            // For `perf record`: llama.cpp's steady decode steps for the given time.
            LlamaNative.Initialize();
            using var side = new LlamaSide(file, Math.Max(256, position + 16), threads, 1);
            side.PrepareShort(position);
            var times = new List<double>();
            var until = Stopwatch.GetTimestamp() + (long)(loopSeconds * Stopwatch.Frequency);
            while (Stopwatch.GetTimestamp() < until)
            {
                times.Add(side.DecodeStep(position, longCache: false));
            }

            output.WriteLine(Line($"llama.cpp, loop of {times.Count} steps", Median(times.ToArray())));
            return 0;
        }

        if (loopSeconds > 0)
        {
            // For `perf record`: steady decode steps on the mapped file for the given time, nothing else.
            using var ex = Create(gguf, threads);
            var (median, _) = Steps(ex, config, position, int.MaxValue, loopSeconds);
            output.WriteLine(Line("ours, mmapped file, loop", median));
            return 0;
        }

        foreach (var section in sections)
        {
            switch (section)
            {
                case "mmap":
                    {
                        using var ex = Create(gguf, threads);
                        var (median, first) = Steps(ex, config, position, steps);
                        output.WriteLine(Line("ours, full step, mmapped file", median, first));
                        break;
                    }

                case "long":
                    {
                        using var ex = Create(gguf, threads);
                        var (median, _) = Steps(ex, config, longPosition, steps);
                        output.WriteLine(Line($"ours, full step, mmapped file, position {longPosition}", median));
                        break;
                    }

                case "threads1":
                    {
                        using var ex = Create(gguf, 1);
                        var (median, _) = Steps(ex, config, position, Math.Max(3, steps / 2));
                        output.WriteLine(Line("ours, full step, mmapped file, 1 thread", median));
                        break;
                    }

                case "managed":
                case "hugepage":
                    {
                        using var copy = new WeightCopy(gguf, names, huge: section == "hugepage");
                        var label = section == "hugepage" ? "anonymous 2 MiB THP copy" : "managed-array copy (4 KiB pages)";
                        output.WriteLine(string.Create(inv, $"  [{label}: {copy.Bytes / 1e9:F2} GB copied and pre-faulted in {copy.CopyMs:F0} ms; AnonHugePages now {AnonHugePagesMb():F0} MB]"));
                        using (var ex = Create(copy.Weights(config, file), threads))
                        {
                            var (median, first) = Steps(ex, config, position, steps);
                            output.WriteLine(Line($"ours, full step, {label}", median, first));
                        }

                        if (section == "hugepage")
                        {
                            Reference(output, Line, copy.Tensors(names), config, threads, steps, "THP copy");
                        }

                        break;
                    }

                case "reference":
                    {
                        var pins = names.Select(n => gguf.GetTensor(n).Data.Pin()).ToArray();
                        try
                        {
                            var tensors = pins.Select(p => (nint)p.Pointer).ToArray();
                            Reference(output, Line, tensors, config, threads, steps, "mmapped file");
                        }
                        finally
                        {
                            foreach (var p in pins)
                            {
                                p.Dispose();
                            }
                        }

                        break;
                    }

                case "llama":
                    {
                        LlamaNative.Initialize();
                        using var side = new LlamaSide(file, Math.Max(256, position + 16), threads, 1);
                        side.PrepareShort(position);
                        var times = new double[steps];
                        for (var i = -2; i < steps; i++)
                        {
                            var ms = side.DecodeStep(position, longCache: false);
                            if (i >= 0)
                            {
                                times[i] = ms;
                            }
                        }

                        output.WriteLine(Line("llama.cpp, full step (incl. embedding + 259-row LM head)", Median(times)));
                        break;
                    }

                default:
                    throw new ArgumentException($"--sections: unknown section '{section}' (mmap, reference, managed, hugepage, threads1, long, llama).");
            }
        }

        return 0;
    }

    private static IBlockExecutor Create(IModelWeights weights, int threads) =>
        new CpuBlockExecutorFactory(new CpuExecutorOptions { ThreadCount = threads, NativeBlas = NativeBlasMode.Never })
            .Create(weights, new BlockRange(0, weights.Config.NumLayers));

    /// <summary>Times single-token steps at <paramref name="position"/>: (median, first step) in ms.</summary>
    private static (double Median, double First) Steps(IBlockExecutor ex, ModelConfig config, int position, int steps, double seconds = 0)
    {
        using var cache = ex.CreateCache(1, position + 1);
        var hidden = new float[config.HiddenSize];
        var inputs = new float[(long)position * config.HiddenSize];
        InMemoryBlockWeights.FillUniform(inputs, 5, 0f, 0.035f);
        InMemoryBlockWeights.FillUniform(hidden, 6, 0f, 0.035f);
        var h0 = (float[])hidden.Clone();
        // The first step runs before the cache fill so that it is the first touch of every weight page.
        var start = Stopwatch.GetTimestamp();
        ex.Forward(hidden, 1, 1, cache);
        var first = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
        cache.Truncate(0);
        for (var p = 0; p < position; p += 256)
        {
            var n = Math.Min(256, position - p);
            ex.Forward(inputs.AsSpan(p * config.HiddenSize, n * config.HiddenSize), 1, n, cache);
        }

        var times = new List<double>();
        var deadline = Stopwatch.GetTimestamp() + (long)(seconds * Stopwatch.Frequency);
        for (var i = -2; i < steps && (seconds == 0 || Stopwatch.GetTimestamp() < deadline); i++)
        {
            cache.Truncate(position);
            h0.CopyTo(hidden, 0);
            start = Stopwatch.GetTimestamp();
            ex.Forward(hidden, 1, 1, cache);
            var ms = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
            if (i >= 0)
            {
                times.Add(ms);
            }

            if (seconds > 0)
            {
                i = Math.Min(i, 0); // loop until the deadline
            }
        }

        return (Median(times.ToArray()), first);
    }

    private static double Median(double[] times)
    {
        var s = times.Order().ToArray();
        var n = s.Length;
        return n % 2 == 1 ? s[n / 2] : 0.5 * (s[(n / 2) - 1] + s[(n / 2)]);
    }

    /// <summary>The bench-local references over the same weight bytes (block tensors in <see cref="LlamaTensorNames.BlockTensors"/> order per block).</summary>
    private static void Reference(TextWriter output, Func<string, double, double?, string> line, nint[] tensors, ModelConfig c, int threads, int steps, string where)
    {
        var per = LlamaTensorNames.BlockTensors.Count;
        var products = new List<(nint W, int Rows, int K, int Group)>();
        for (var b = 0; b < c.NumLayers; b++)
        {
            nint T(string suffix) => tensors[(b * per) + IndexOf(suffix)];
            var q = c.NumHeads * c.HeadDim;
            var kv = c.NumKeyValueHeads * c.HeadDim;
            // Groups as our executor dispatches them: QKV, O, gate+up, down.
            products.Add((T(LlamaTensorNames.QProj), q, c.HiddenSize, (b * 4) + 0));
            products.Add((T(LlamaTensorNames.KProj), kv, c.HiddenSize, (b * 4) + 0));
            products.Add((T(LlamaTensorNames.VProj), kv, c.HiddenSize, (b * 4) + 0));
            products.Add((T(LlamaTensorNames.OProj), c.HiddenSize, q, (b * 4) + 1));
            products.Add((T(LlamaTensorNames.GateProj), c.IntermediateSize, c.HiddenSize, (b * 4) + 2));
            products.Add((T(LlamaTensorNames.UpProj), c.IntermediateSize, c.HiddenSize, (b * 4) + 2));
            products.Add((T(LlamaTensorNames.DownProj), c.HiddenSize, c.IntermediateSize, (b * 4) + 3));
        }

        var maxK = Math.Max(c.HiddenSize, c.IntermediateSize);
        var x = (float*)NativeMemory.AlignedAlloc((nuint)maxK * 4, 64);
        var y = (float*)NativeMemory.AlignedAlloc((nuint)c.IntermediateSize * 4, 64);
        try
        {
            for (var i = 0; i < maxK; i++)
            {
                x[i] = 0.01f * ((i % 13) - 6);
            }

            using var team = new SpinTeam(threads);
            var groups = products.GroupBy(p => p.Group).Select(g => g.ToArray()).ToArray();
            double Time(int kBlock, bool oneHandoff)
            {
                var times = new double[steps];
                for (var s = -2; s < steps; s++)
                {
                    var start = Stopwatch.GetTimestamp();
                    if (oneHandoff)
                    {
                        team.Run(part =>
                        {
                            foreach (var p in products)
                            {
                                Slice(p, part, threads, x, y, kBlock);
                            }
                        });
                    }
                    else
                    {
                        foreach (var g in groups)
                        {
                            team.Run(part =>
                            {
                                foreach (var p in g)
                                {
                                    Slice(p, part, threads, x, y, kBlock);
                                }
                            });
                        }
                    }

                    if (s >= 0)
                    {
                        times[s] = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
                    }
                }

                return Median(times);
            }

            double ReadAll()
            {
                var times = new double[steps];
                var sums = new float[threads * 16];
                for (var s = -2; s < steps; s++)
                {
                    var start = Stopwatch.GetTimestamp();
                    team.Run(part =>
                    {
                        var acc = Vector512<float>.Zero;
                        foreach (var p in products)
                        {
                            var (r0, r1) = Split(p.Rows, part, threads);
                            var f = (float*)p.W + ((long)r0 * p.K);
                            var n = (long)(r1 - r0) * p.K;
                            for (long i = 0; i + 16 <= n; i += 16)
                            {
                                acc += Vector512.Load(f + i);
                            }
                        }

                        sums[part * 16] = Vector512.Sum(acc);
                    });
                    if (s >= 0)
                    {
                        times[s] = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
                    }
                }

                return Median(times);
            }

            output.WriteLine(line($"reference: plain read of all block weights, {where}", ReadAll(), null));
            output.WriteLine(line($"reference: 7 GEMVs, full rows, 4 hand-offs/block, {where}", Time(int.MaxValue, false), null));
            output.WriteLine(line($"reference: 7 GEMVs, full rows, 1 hand-off/step, {where}", Time(int.MaxValue, true), null));
            output.WriteLine(line($"reference: 7 GEMVs, K split by 2048 (as ours), {where}", Time(2048, false), null));
        }
        finally
        {
            NativeMemory.AlignedFree(x);
            NativeMemory.AlignedFree(y);
        }
    }

    private static int IndexOf(string suffix)
    {
        for (var i = 0; i < LlamaTensorNames.BlockTensors.Count; i++)
        {
            if (LlamaTensorNames.BlockTensors[i] == suffix)
            {
                return i;
            }
        }

        throw new ArgumentException(suffix);
    }

    private static (int Start, int End) Split(int rows, int part, int parts)
    {
        var units = rows / 4;
        return ((int)((long)units * part / parts) * 4, (int)((long)units * (part + 1) / parts) * 4);
    }

    /// <summary>y[r] = W[r,:]·x for this part's rows, 4 rows at a time, K in blocks of <paramref name="kBlock"/> (outer loop, as ours).</summary>
    private static void Slice((nint W, int Rows, int K, int Group) p, int part, int parts, float* x, float* y, int kBlock)
    {
        var (r0, r1) = Split(p.Rows, part, parts);
        var w = (float*)p.W;
        var k = p.K;
        for (var k0 = 0; k0 < k; k0 += kBlock)
        {
            var kl = Math.Min(kBlock, k - k0);
            for (var r = r0; r < r1; r += 4)
            {
                var w0 = w + ((long)r * k) + k0;
                var w1 = w0 + k;
                var w2 = w1 + k;
                var w3 = w2 + k;
                Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default;
                for (var i = 0; i + 16 <= kl; i += 16)
                {
                    var xv = Vector512.Load(x + k0 + i);
                    a0 = Vector512.FusedMultiplyAdd(xv, Vector512.Load(w0 + i), a0);
                    a1 = Vector512.FusedMultiplyAdd(xv, Vector512.Load(w1 + i), a1);
                    a2 = Vector512.FusedMultiplyAdd(xv, Vector512.Load(w2 + i), a2);
                    a3 = Vector512.FusedMultiplyAdd(xv, Vector512.Load(w3 + i), a3);
                }

                var acc = k0 > 0;
                y[r] = (acc ? y[r] : 0) + Vector512.Sum(a0);
                y[r + 1] = (acc ? y[r + 1] : 0) + Vector512.Sum(a1);
                y[r + 2] = (acc ? y[r + 2] : 0) + Vector512.Sum(a2);
                y[r + 3] = (acc ? y[r + 3] : 0) + Vector512.Sum(a3);
            }
        }
    }

    private static double AnonHugePagesMb()
    {
        foreach (var l in File.ReadLines("/proc/meminfo"))
        {
            if (l.StartsWith("AnonHugePages:", StringComparison.Ordinal))
            {
                return double.Parse(l.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) / 1024;
            }
        }

        return double.NaN;
    }

    /// <summary>The block tensors copied into anonymous memory (managed arrays, or native memory advised for huge pages), pre-faulted by the copy.</summary>
    private sealed class WeightCopy : IDisposable
    {
        private readonly Dictionary<string, (TensorDescriptor Descriptor, nint Pointer, int Length, byte[]? Array)> _copies = [];

        public WeightCopy(GgufModelWeights source, string[] names, bool huge)
        {
            var start = Stopwatch.GetTimestamp();
            foreach (var name in names)
            {
                var t = source.GetTensor(name);
                var length = t.Data.Length;
                if (huge)
                {
                    var size = ((nuint)length + (2u << 20) - 1) & ~((2u << 20) - 1);
                    var p = NativeMemory.AlignedAlloc(size, 2u << 20);
                    _ = Madvise((nint)p, size, 14); // MADV_HUGEPAGE
                    t.Data.Span.CopyTo(new Span<byte>(p, length));
                    _copies[name] = (t.Descriptor, (nint)p, length, null);
                }
                else
                {
                    var a = GC.AllocateUninitializedArray<byte>(length, pinned: true);
                    t.Data.Span.CopyTo(a);
                    _copies[name] = (t.Descriptor, 0, length, a);
                }

                Bytes += length;
            }

            CopyMs = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
        }

        public long Bytes { get; }

        public double CopyMs { get; }

        public nint[] Tensors(string[] names) =>
            names.Select(n => _copies[n].Array is { } a ? (nint)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(a)) : _copies[n].Pointer).ToArray();

        public InMemoryBlockWeights Weights(ModelConfig config, string source)
        {
            var tensors = new Dictionary<string, WeightTensor>(StringComparer.Ordinal);
            foreach (var (name, c) in _copies)
            {
                ReadOnlyMemory<byte> data = c.Array ?? new NativeBytes((byte*)c.Pointer, c.Length).Memory;
                tensors[name] = new WeightTensor(c.Descriptor, data);
            }

            return new InMemoryBlockWeights(config, source + " (copy)", tensors);
        }

        public void Dispose()
        {
            foreach (var c in _copies.Values)
            {
                if (c.Pointer != 0)
                {
                    NativeMemory.AlignedFree((void*)c.Pointer);
                }
            }

            _copies.Clear();
        }
    }

    [DllImport("libc", EntryPoint = "madvise")]
    private static extern int Madvise(nint address, nuint length, int advice);

    private sealed class NativeBytes(byte* pointer, int length) : MemoryManager<byte>
    {
        public override Span<byte> GetSpan() => new(pointer, length);

        public override MemoryHandle Pin(int elementIndex = 0) => new(pointer + elementIndex);

        public override void Unpin()
        {
        }

        protected override void Dispose(bool disposing)
        {
        }
    }

    /// <summary>Threads that spin (never sleep) between runs: the cheapest possible hand-off, for the references.</summary>
    private sealed class SpinTeam : IDisposable
    {
        private readonly Thread[] _threads;
        private Action<int>? _work;
        private int _generation;
        private int _remaining;
        private volatile bool _stop;

        public SpinTeam(int threads)
        {
            _threads = new Thread[threads - 1];
            for (var i = 0; i < _threads.Length; i++)
            {
                var part = i + 1;
                _threads[i] = new Thread(() => Loop(part)) { IsBackground = true };
                _threads[i].Start();
            }
        }

        public void Run(Action<int> work)
        {
            _work = work;
            Volatile.Write(ref _remaining, _threads.Length);
            Interlocked.Increment(ref _generation);
            work(0);
            while (Volatile.Read(ref _remaining) != 0)
            {
                Thread.SpinWait(1);
            }
        }

        private void Loop(int part)
        {
            var seen = 0;
            while (!_stop)
            {
                var g = Volatile.Read(ref _generation);
                if (g == seen)
                {
                    Thread.SpinWait(1);
                    continue;
                }

                seen = g;
                _work!(part);
                Interlocked.Decrement(ref _remaining);
            }
        }

        public void Dispose()
        {
            _stop = true;
            foreach (var t in _threads)
            {
                t.Join();
            }
        }
    }
}
