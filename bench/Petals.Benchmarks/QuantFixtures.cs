using System.Buffers.Binary;
using System.Globalization;
using System.Runtime.InteropServices;
using Petals.Tensors;

namespace Petals.Benchmarks;

/// <summary>
/// <c>quant-fixtures --out DIR [--lib libggml-base.so]</c>: writes the reference fixtures that the block-quantization tests
/// compare <see cref="BlockQuantization"/> against, computed by ggml itself (the CPU natives of LLamaSharp.Backend.Cpu,
/// called through P/Invoke: a comparison peer, never a dependency of the library).
/// </summary>
/// <remarks>
/// Files (little-endian): <c>gaussian.bin</c> = "PQFG", rows, columns, then rows × columns fp32 values (seeded standard
/// normal rows; the last row has outliers). <c>&lt;type&gt;.bin</c> = "PQF1", ggml type id, rows, columns, random elements,
/// then ggml's <c>quantize_row_&lt;type&gt;_ref</c> bytes of the Gaussian rows, random block bytes (their fp16 scales
/// replaced by finite values), and ggml's <c>dequantize_row_&lt;type&gt;</c> floats of those random blocks.
/// </remarks>
internal static class QuantFixtures
{
    public const int Rows = 8;
    public const int Columns = 512;
    public const int RandomElements = 1024;

    private static readonly (string Name, TensorDType DType, int GgmlId)[] Types =
    [
        ("q4_0", TensorDType.Q4_0, 2), ("q4_1", TensorDType.Q4_1, 3), ("q5_0", TensorDType.Q5_0, 6), ("q5_1", TensorDType.Q5_1, 7),
        ("q8_0", TensorDType.Q8_0, 8), ("q2_K", TensorDType.Q2_K, 10), ("q3_K", TensorDType.Q3_K, 11), ("q4_K", TensorDType.Q4_K, 12),
        ("q5_K", TensorDType.Q5_K, 13), ("q6_K", TensorDType.Q6_K, 14),
    ];

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    private delegate void QuantizeRow([In] float[] x, [Out] byte[] y, long k);

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    private delegate void DequantizeRow([In] byte[] x, [Out] float[] y, long k);

    public static int Run(string outDir, string? lib)
    {
        lib ??= FindLibrary();
        Directory.CreateDirectory(outDir);
        var handle = NativeLibrary.Load(lib);
        var source = Gaussian(Rows, Columns, seed: 14);
        using (var f = File.Create(Path.Combine(outDir, "gaussian.bin")))
        {
            WriteInt(f, 0x47465150); // "PQFG"
            WriteInt(f, Rows);
            WriteInt(f, Columns);
            f.Write(MemoryMarshal.AsBytes(source.AsSpan()));
        }

        var random = new Random(1414);
        foreach (var (name, dtype, id) in Types)
        {
            var quantize = Marshal.GetDelegateForFunctionPointer<QuantizeRow>(NativeLibrary.GetExport(handle, $"quantize_row_{name}_ref"));
            var dequantize = Marshal.GetDelegateForFunctionPointer<DequantizeRow>(NativeLibrary.GetExport(handle, $"dequantize_row_{name}"));
            var quantized = new byte[dtype.ByteSize(source.Length)];
            quantize(source, quantized, source.Length);

            const int randomElements = RandomElements;
            var randomBytes = new byte[dtype.ByteSize(randomElements)];
            random.NextBytes(randomBytes);
            ForceFiniteScales(dtype, randomBytes, random);
            var decoded = new float[randomElements];
            dequantize(randomBytes, decoded, randomElements);

            using var f = File.Create(Path.Combine(outDir, $"{dtype}.bin"));
            WriteInt(f, 0x31465150); // "PQF1"
            WriteInt(f, id);
            WriteInt(f, Rows);
            WriteInt(f, Columns);
            WriteInt(f, randomElements);
            f.Write(quantized);
            f.Write(randomBytes);
            f.Write(MemoryMarshal.AsBytes(decoded.AsSpan()));
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{dtype,-5} {quantized.Length + randomBytes.Length + (4 * decoded.Length) + 20,7} bytes"));
        }

        return 0;
    }

    private static string FindLibrary()
    {
        var local = Path.Combine(AppContext.BaseDirectory, "llama-native", "libggml-base.so");
        if (File.Exists(local))
        {
            return local;
        }

        var home = Environment.GetEnvironmentVariable("NUGET_PACKAGES") ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
        var restored = Path.Combine(home, "llamasharp.backend.cpu", "0.30.0", "LLamaSharpRuntimes", "linux-x64", "native", "avx512", "libggml-base.so");
        return File.Exists(restored) ? restored : throw new ArgumentException($"libggml-base.so not found at {local} or {restored}; pass --lib.");
    }

    /// <summary>Standard normal rows (Box–Muller over a seeded <see cref="Random"/>); the last row gets eight outliers of ±20 to ±60.</summary>
    private static float[] Gaussian(int rows, int columns, int seed)
    {
        var random = new Random(seed);
        var values = new float[rows * columns];
        for (var i = 0; i < values.Length; i++)
        {
            var u1 = 1.0 - random.NextDouble();
            var u2 = random.NextDouble();
            values[i] = (float)(Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2));
        }

        var last = (rows - 1) * columns;
        for (var k = 0; k < 8; k++)
        {
            values[last + random.Next(columns)] = (float)((k % 2 == 0 ? 1 : -1) * (20 + (40 * random.NextDouble())));
        }

        return values;
    }

    /// <summary>Overwrites every fp16 scale of random blocks with a finite value in [-2, 2] (random bytes would hold NaN/Inf scales).</summary>
    private static void ForceFiniteScales(TensorDType dtype, byte[] bytes, Random random)
    {
        int[] offsets = dtype switch
        {
            TensorDType.Q8_0 or TensorDType.Q4_0 or TensorDType.Q5_0 => [0],
            TensorDType.Q4_1 or TensorDType.Q5_1 or TensorDType.Q4_K or TensorDType.Q5_K => [0, 2],
            TensorDType.Q2_K => [80, 82],
            TensorDType.Q3_K => [108],
            TensorDType.Q6_K => [208],
            _ => throw new ArgumentException($"No scale layout for {dtype}.", nameof(dtype)),
        };
        var bb = dtype.BlockBytes();
        for (var b = 0; b < bytes.Length / bb; b++)
        {
            foreach (var o in offsets)
            {
                var h = (Half)((random.NextDouble() * 4) - 2);
                BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan((b * bb) + o), BitConverter.HalfToUInt16Bits(h));
            }
        }
    }

    private static void WriteInt(Stream s, int value)
    {
        Span<byte> b = stackalloc byte[4];
        BinaryPrimitives.WriteInt32LittleEndian(b, value);
        s.Write(b);
    }
}

/// <summary><c>quant-speed [--rows 256 --columns 4096]</c>: single-thread throughput of the reference codecs (Quantize and Dequantize) per type.</summary>
internal static class QuantSpeed
{
    public static int Run(int rows, int columns)
    {
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"quant-speed: {rows} x {columns} Gaussian values, 1 thread, best of 3 rounds after 1 s of warm-up; load {File.ReadAllText("/proc/loadavg").Trim()}"));
        var random = new Random(5);
        var x = new float[rows * columns];
        for (var i = 0; i < x.Length; i++)
        {
            x[i] = (float)(Math.Sqrt(-2 * Math.Log(1 - random.NextDouble())) * Math.Cos(2 * Math.PI * random.NextDouble()));
        }

        var y = new float[x.Length];
        foreach (var dtype in new[] { TensorDType.Q8_0, TensorDType.Q4_0, TensorDType.Q4_1, TensorDType.Q5_0, TensorDType.Q5_1, TensorDType.Q2_K, TensorDType.Q3_K, TensorDType.Q4_K, TensorDType.Q5_K, TensorDType.Q6_K, TensorDType.NF4 })
        {
            var bytes = new byte[dtype.ByteSize(x.Length)];
            double quantize = double.MaxValue, dequantize = double.MaxValue;

            // Tiered JIT: the first rounds run unoptimized code; rounds for at least a second before any is kept (best of the last 3).
            var warm = System.Diagnostics.Stopwatch.StartNew();
            for (var round = 0; round < 3 || warm.Elapsed.TotalSeconds < 1; round++)
            {
                if (warm.Elapsed.TotalSeconds < 1)
                {
                    quantize = dequantize = double.MaxValue;
                }

                var sw = System.Diagnostics.Stopwatch.StartNew();
                for (var r = 0; r < rows; r++)
                {
                    BlockQuantization.Quantize(dtype, x.AsSpan(r * columns, columns), bytes.AsSpan((int)dtype.ByteSize((long)r * columns), (int)dtype.ByteSize(columns)));
                }

                quantize = Math.Min(quantize, sw.Elapsed.TotalSeconds);
                sw.Restart();
                BlockQuantization.Dequantize(dtype, bytes, y);
                dequantize = Math.Min(dequantize, sw.Elapsed.TotalSeconds);
            }

            // A Llama-2-7B block holds 202M weights.
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{dtype,-5} quantize {x.Length / quantize / 1e6,7:F1} M values/s ({202e6 * quantize / x.Length,5:F1} s per 7B block), dequantize {x.Length / dequantize / 1e6,7:F1} M values/s"));
        }

        return 0;
    }
}
