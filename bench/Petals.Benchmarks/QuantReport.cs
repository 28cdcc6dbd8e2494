using System.Globalization;
using Petals.Backends.Cpu;
using Petals.Execution;
using Petals.Formats.Gguf;
using Petals.Models;
using Petals.Tensors;

namespace Petals.Benchmarks;

/// <summary>
/// <c>quant-accuracy</c> and <c>quant-memory</c>: the relative error of block outputs of every weight format against the
/// fp32 source, and the resident memory a server holds per block in each format.
/// </summary>
internal static class QuantReport
{
    /// <summary>
    /// <c>quant-accuracy --dir D [--shape llama2-7b --blocks 1 --threads 2]</c>: the blocks of the F32 file are the reference;
    /// each other file of the shape (F16, Q8_0, Q4_0, Q4_K_M, quantized by llama.cpp) and the F32 file quantized at load
    /// (int8, nf4, q8_0, q4_k) run the same inputs: a 32-token prefill and 8 decode steps of standard-normal hidden states.
    /// Prints the relative L2 error of all outputs, per variant.
    /// </summary>
    public static int Accuracy(string[] args)
    {
        string dir = "/work/bench-models", shape = "llama2-7b";
        int blocks = 1, threads = 2;
        for (var i = 0; i < args.Length; i += 2)
        {
            var value = i + 1 < args.Length ? args[i + 1] : throw new ArgumentException($"{args[i]} needs a value.");
            switch (args[i])
            {
                case "--dir": dir = value; break;
                case "--shape": shape = value; break;
                case "--blocks": blocks = OptionValues.Int("--blocks", value, 1); break;
                case "--threads": threads = OptionValues.Int("--threads", value, 1); break;
                default: throw new ArgumentException($"Unknown option {args[i]}.");
            }
        }

        var f32 = Path.Combine(dir, $"{shape}-4blk.f32.gguf");
        var reference = Run(f32, WeightQuantization.None, blocks, threads, out var refInfo);
        Console.WriteLine($"| variant | weights held | bytes per block | relative error vs f32 |");
        Console.WriteLine($"|---|---|---:|---:|");
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| f32 file | {refInfo.Quantization} | {refInfo.WeightBytes / blocks / 1e6:F1} MB | 0 |"));
        foreach (var format in new[] { "f16", "q8_0", "q4_0", "q4_k_m" })
        {
            var file = Path.Combine(dir, $"{shape}-4blk.{format}.gguf");
            var outputs = Run(file, WeightQuantization.None, blocks, threads, out var info);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| {format} file (llama.cpp quantize) | {info.Quantization} | {info.WeightBytes / blocks / 1e6:F1} MB | {RelativeError(outputs, reference):G3} |"));
        }

        foreach (var quant in new[] { "int8", "nf4", "q8_0", "q4_k" })
        {
            var outputs = Run(f32, WeightQuantization.Parse(quant), blocks, threads, out var info);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| f32 file, --quant {quant} | {info.Quantization} | {info.WeightBytes / blocks / 1e6:F1} MB | {RelativeError(outputs, reference):G3} |"));
        }

        return 0;
    }

    /// <summary>
    /// <c>quant-memory --file F [--quant none --blocks 4 --threads 2]</c>: resident memory (anonymous and file-backed, from
    /// /proc/self/status) added by creating an executor over the file's first blocks and running one prefill and one decode
    /// step, per block, beside the bytes of weights it holds. Run one case per process.
    /// </summary>
    public static int Memory(string[] args)
    {
        string? file = null;
        var quant = WeightQuantization.None;
        int blocks = 4, threads = 2;
        for (var i = 0; i < args.Length; i += 2)
        {
            var value = i + 1 < args.Length ? args[i + 1] : throw new ArgumentException($"{args[i]} needs a value.");
            switch (args[i])
            {
                case "--file": file = value; break;
                case "--quant": quant = WeightQuantization.Parse(value); break;
                case "--blocks": blocks = OptionValues.Int("--blocks", value, 1); break;
                case "--threads": threads = OptionValues.Int("--threads", value, 1); break;
                default: throw new ArgumentException($"Unknown option {args[i]}.");
            }
        }

        if (file is null)
        {
            throw new ArgumentException("--file is required.");
        }
        GC.Collect();
        var (anon0, file0) = Rss();
        using var weights = GgufModelWeights.Open(file);
        using var executor = new CpuBlockExecutorFactory(new CpuExecutorOptions { ThreadCount = threads, Quantization = quant })
            .Create(weights, new BlockRange(0, blocks));
        var h = weights.Config.HiddenSize;
        using (var cache = executor.CreateCache(1, 64))
        {
            executor.Forward(new float[16 * h], 1, 16, cache);
            executor.Forward(new float[h], 1, 1, cache);
        }

        // Let the GC give back what quantizing at load freed (the fp32 Q/K copies), so RssAnon is what stays.
        System.Runtime.GCSettings.LargeObjectHeapCompactionMode = System.Runtime.GCLargeObjectHeapCompactionMode.CompactOnce;
        GC.Collect(2, GCCollectionMode.Aggressive, blocking: true, compacting: true);
        var (anon1, file1) = Rss();
        var info = (ExecutorWeightsInfo)executor.GetService(typeof(ExecutorWeightsInfo))!;
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"| {Path.GetFileName(file)} | {quant} | {info.Quantization} | {info.WeightBytes / blocks / 1e6:F1} MB | {(anon1 - anon0) / blocks / 1e6:F1} MB | {(file1 - file0) / blocks / 1e6:F1} MB | {(anon1 - anon0) / (double)info.WeightBytes:F3} | {(anon1 - anon0 + file1 - file0) / (double)info.WeightBytes:F3} |"));
        return 0;
    }

    private static float[] Run(string file, WeightQuantization quant, int blocks, int threads, out ExecutorWeightsInfo info)
    {
        using var weights = GgufModelWeights.Open(file);
        using var executor = new CpuBlockExecutorFactory(new CpuExecutorOptions { ThreadCount = threads, Quantization = quant })
            .Create(weights, new BlockRange(0, blocks));
        info = (ExecutorWeightsInfo)executor.GetService(typeof(ExecutorWeightsInfo))!;
        var h = weights.Config.HiddenSize;
        var random = new Random(11);
        var outputs = new List<float>();
        using var cache = executor.CreateCache(1, 64);
        var prefill = Normal(random, 32 * h);
        executor.Forward(prefill, 1, 32, cache);
        outputs.AddRange(prefill);
        for (var s = 0; s < 8; s++)
        {
            var step = Normal(random, h);
            executor.Forward(step, 1, 1, cache);
            outputs.AddRange(step);
        }

        return [.. outputs];
    }

    private static float[] Normal(Random random, int n)
    {
        var a = new float[n];
        for (var i = 0; i < n; i++)
        {
            a[i] = (float)(Math.Sqrt(-2 * Math.Log(1 - random.NextDouble())) * Math.Cos(2 * Math.PI * random.NextDouble()));
        }

        return a;
    }

    private static double RelativeError(float[] actual, float[] expected)
    {
        double num = 0, den = 0;
        for (var i = 0; i < actual.Length; i++)
        {
            var d = actual[i] - (double)expected[i];
            num += d * d;
            den += (double)expected[i] * expected[i];
        }

        return Math.Sqrt(num / den);
    }

    private static (long Anon, long File) Rss()
    {
        long anon = 0, file = 0;
        foreach (var line in File.ReadLines("/proc/self/status"))
        {
            if (line.StartsWith("RssAnon:", StringComparison.Ordinal))
            {
                anon = Kb(line);
            }
            else if (line.StartsWith("RssFile:", StringComparison.Ordinal))
            {
                file = Kb(line);
            }
        }

        return (anon, file);

        static long Kb(string line) => long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) * 1024;
    }
}
