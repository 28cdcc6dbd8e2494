using System.Buffers.Binary;
using System.Runtime.InteropServices;
using Petals.Tensors;

namespace Petals.Abstractions.Tests.Tensors;

/// <summary>
/// The ggml reference outputs in TestData/quant, written by <c>bench/quant-fixtures.sh</c> (P/Invoke into llama.cpp's
/// libggml-base.so): seeded Gaussian rows, ggml's reference quantization of them, and ggml's dequantization of random blocks.
/// </summary>
internal sealed class GgmlFixtures
{
    private static readonly string Directory = Path.Combine(AppContext.BaseDirectory, "TestData", "quant");

    private GgmlFixtures(byte[] quantized, byte[] randomBlocks, float[] randomDecoded)
    {
        Quantized = quantized;
        RandomBlocks = randomBlocks;
        RandomDecoded = randomDecoded;
    }

    /// <summary>The ggml types with fixtures.</summary>
    public static TensorDType[] Types { get; } =
    [
        TensorDType.Q4_0, TensorDType.Q4_1, TensorDType.Q5_0, TensorDType.Q5_1, TensorDType.Q8_0,
        TensorDType.Q2_K, TensorDType.Q3_K, TensorDType.Q4_K, TensorDType.Q5_K, TensorDType.Q6_K,
    ];

    /// <summary>The Gaussian rows (8 × 512; the last row has outliers).</summary>
    public static float[] Gaussian { get; } = ReadGaussian();

    /// <summary>The row length of <see cref="Gaussian"/>.</summary>
    public static int Columns { get; private set; }

    /// <summary>ggml's <c>quantize_row_*_ref</c> of <see cref="Gaussian"/>.</summary>
    public byte[] Quantized { get; }

    /// <summary>Random blocks with finite scales.</summary>
    public byte[] RandomBlocks { get; }

    /// <summary>ggml's <c>dequantize_row_*</c> of <see cref="RandomBlocks"/>.</summary>
    public float[] RandomDecoded { get; }

    public static GgmlFixtures Load(TensorDType dtype)
    {
        var bytes = File.ReadAllBytes(Path.Combine(Directory, $"{dtype}.bin"));
        Assert.Equal(0x31465150, BinaryPrimitives.ReadInt32LittleEndian(bytes));
        var rows = BinaryPrimitives.ReadInt32LittleEndian(bytes.AsSpan(8));
        var columns = BinaryPrimitives.ReadInt32LittleEndian(bytes.AsSpan(12));
        var randomElements = BinaryPrimitives.ReadInt32LittleEndian(bytes.AsSpan(16));
        var q = (int)dtype.ByteSize((long)rows * columns);
        var r = (int)dtype.ByteSize(randomElements);
        var offset = 20;
        var quantized = bytes.AsSpan(offset, q).ToArray();
        offset += q;
        var random = bytes.AsSpan(offset, r).ToArray();
        offset += r;
        var decoded = MemoryMarshal.Cast<byte, float>(bytes.AsSpan(offset, 4 * randomElements)).ToArray();
        Assert.Equal(bytes.Length, offset + (4 * randomElements));
        return new GgmlFixtures(quantized, random, decoded);
    }

    private static float[] ReadGaussian()
    {
        var bytes = File.ReadAllBytes(Path.Combine(Directory, "gaussian.bin"));
        var rows = BinaryPrimitives.ReadInt32LittleEndian(bytes.AsSpan(4));
        Columns = BinaryPrimitives.ReadInt32LittleEndian(bytes.AsSpan(8));
        return MemoryMarshal.Cast<byte, float>(bytes.AsSpan(12, 4 * rows * Columns)).ToArray();
    }
}
