using System.Diagnostics;
using System.Globalization;
using System.Numerics.Tensors;
using Petals.Protocol;

namespace Petals.Benchmarks;

/// <summary>
/// The cost of the servers' non-finite input check (one <see cref="TensorPrimitives.IsFiniteAll{T}(ReadOnlySpan{T})"/>
/// pass over a step's hidden states) against the decode of the same tensor from the wire (fp32 and fp16), measured in
/// the same run: the reference is work every request already pays.
/// </summary>
internal static class FiniteCheckBench
{
    public static int Run(int iterations)
    {
        Console.WriteLine($"finite-check: {iterations} iterations per case, median of 7 batches; {Environment.ProcessorCount} cores, load {File.ReadAllText("/proc/loadavg").Trim()}");
        // Two passes, the first untimed in effect (printed as warm-up): tiered JIT must have optimized every path before timing.
        for (var pass = 0; pass < 2; pass++)
        {
            RunPass(iterations, pass == 0 ? "warm-up " : string.Empty);
        }

        return 0;
    }

    private static void RunPass(int iterations, string label)
    {
        foreach (var tokens in new[] { 1, 128 })
        {
            var shape = new TensorShape(1, tokens, 4096);
            var values = new float[shape.ElementCount];
            var random = new Random(1);
            for (var i = 0; i < values.Length; i++)
            {
                values[i] = (float)(random.NextDouble() - 0.5);
            }

            var destination = new float[values.Length];
            var fp32 = Encoded(shape, values, WireCodec.Fp32);
            var fp16 = Encoded(shape, values, WireCodec.Fp16);
            var check = Median(iterations, () => TensorPrimitives.IsFiniteAll<float>(destination) ? 0 : 1);
            var decode32 = Median(iterations, () => { fp32.CopyTo(destination); return 0; });
            var decode16 = Median(iterations, () => { fp16.CopyTo(destination); return 0; });
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{label}[1, {tokens}, 4096]: check {check * 1e3:0.00} us; decode fp32 {decode32 * 1e3:0.00} us (check/decode {check / decode32:0.00}); decode fp16 {decode16 * 1e3:0.00} us (check/decode {check / decode16:0.00}); check {values.Length * 4 / (check * 1e-3) / 1e9:0.0} GB/s"));
        }
    }

    private static WireTensor Encoded(TensorShape shape, float[] values, WireCodec codec)
    {
        var tensor = WireTensor.FromValues(shape, values, codec);
        var bytes = new byte[tensor.PayloadBytes];
        tensor.WritePayload(bytes);
        return WireTensor.FromEncoded(shape, codec, bytes);
    }

    /// <summary>Milliseconds per call, the median over 7 batches of <paramref name="iterations"/> calls.</summary>
    private static double Median(int iterations, Func<int> work)
    {
        var sink = 0;
        for (var i = 0; i < iterations; i++)
        {
            sink += work();
        }

        var batches = new double[7];
        for (var b = 0; b < batches.Length; b++)
        {
            var timer = Stopwatch.StartNew();
            for (var i = 0; i < iterations; i++)
            {
                sink += work();
            }

            batches[b] = timer.Elapsed.TotalMilliseconds / iterations;
        }

        Array.Sort(batches);
        GC.KeepAlive(sink);
        return batches[batches.Length / 2];
    }
}
