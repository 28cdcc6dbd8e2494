using System.Buffers.Binary;
using Petals.Tensors;

namespace Petals.Backends.Cpu.Tests.Quant;

/// <summary>
/// An independent float64 decoder of the block formats, written per element from the layouts (not per block like the
/// kernels), and random well-formed blocks to feed both.
/// </summary>
internal static class ReferenceBlocks
{
    public static readonly TensorDType[] Formats =
    [
        TensorDType.Q8_0, TensorDType.Q4_0, TensorDType.Q4_1, TensorDType.Q5_0, TensorDType.Q5_1,
        TensorDType.Q2_K, TensorDType.Q3_K, TensorDType.Q4_K, TensorDType.Q5_K, TensorDType.Q6_K, TensorDType.NF4,
    ];

    private static readonly double[] Nf4 =
    [
        -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635, -0.18477343022823334,
        -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
        0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
    ];

    /// <summary>Random blocks whose fp16 scales are finite and moderate (every other byte is uniformly random).</summary>
    public static byte[] RandomBlocks(TensorDType dtype, int blocks, Random random)
    {
        var bytes = new byte[dtype.BlockBytes() * blocks];
        random.NextBytes(bytes);
        for (var b = 0; b < blocks; b++)
        {
            var block = bytes.AsSpan(b * dtype.BlockBytes(), dtype.BlockBytes());
            foreach (var offset in HalfFields(dtype))
            {
                var sign = random.Next(2) == 0 ? 1 : -1;
                var value = (Half)(sign * (0.0005 + (random.NextDouble() * 0.05)));
                BinaryPrimitives.WriteHalfLittleEndian(block[offset..], value);
            }
        }

        return bytes;
    }

    /// <summary>Byte offsets of the fp16 scale fields of one block.</summary>
    public static int[] HalfFields(TensorDType dtype) => dtype switch
    {
        TensorDType.Q8_0 or TensorDType.Q4_0 or TensorDType.Q5_0 or TensorDType.NF4 => [0],
        TensorDType.Q4_1 or TensorDType.Q5_1 or TensorDType.Q4_K or TensorDType.Q5_K => [0, 2],
        TensorDType.Q2_K => [80, 82],
        TensorDType.Q3_K => [108],
        TensorDType.Q6_K => [208],
        _ => throw new ArgumentException(dtype.ToString()),
    };

    /// <summary>Decodes whole blocks, one element at a time, in float64.</summary>
    public static double[] Decode(TensorDType dtype, ReadOnlySpan<byte> data)
    {
        var be = dtype.BlockElements();
        var bb = dtype.BlockBytes();
        var blocks = data.Length / bb;
        var result = new double[blocks * be];
        for (var b = 0; b < blocks; b++)
        {
            var block = data.Slice(b * bb, bb);
            for (var e = 0; e < be; e++)
            {
                result[(b * be) + e] = Element(dtype, block, e);
            }
        }

        return result;
    }

    private static double H(ReadOnlySpan<byte> block, int offset) => (double)BinaryPrimitives.ReadHalfLittleEndian(block[offset..]);

    private static double Element(TensorDType dtype, ReadOnlySpan<byte> b, int e)
    {
        switch (dtype)
        {
            case TensorDType.Q8_0:
                return H(b, 0) * (sbyte)b[2 + e];
            case TensorDType.Q4_0:
                return H(b, 0) * (Nibble(b[2..], e, 16) - 8);
            case TensorDType.Q4_1:
                return (H(b, 0) * Nibble(b[4..], e, 16)) + H(b, 2);
            case TensorDType.Q5_0:
                return H(b, 0) * ((Nibble(b[6..], e, 16) | (FifthBit(b[2..], e) << 4)) - 16);
            case TensorDType.Q5_1:
                return (H(b, 0) * (Nibble(b[8..], e, 16) | (FifthBit(b[4..], e) << 4))) + H(b, 2);
            case TensorDType.NF4:
                return H(b, 0) * Nf4[Nibble(b[2..], e, 32)];
            case TensorDType.Q2_K:
            {
                int n = e / 128, j = e % 128 / 32, h = e % 32 / 16, l = e % 16;
                var code = (b[16 + (32 * n) + (16 * h) + l] >> (2 * j)) & 3;
                var sc = b[(8 * n) + (2 * j) + h];
                return (H(b, 80) * (sc & 15) * code) - (H(b, 82) * (sc >> 4));
            }

            case TensorDType.Q3_K:
            {
                int n = e / 128, j = e % 128 / 32, h = e % 32 / 16, l = e % 16;
                var low = (b[32 + (32 * n) + (16 * h) + l] >> (2 * j)) & 3;
                var high = (b[(16 * h) + l] >> ((4 * n) + j)) & 1;
                var s = (8 * n) + (2 * j) + h;
                var scaleLow = s < 8 ? b[96 + s] & 15 : b[96 + s - 8] >> 4;
                var scaleHigh = (b[96 + 8 + (s % 4)] >> (2 * (s / 4))) & 3;
                return H(b, 108) * ((scaleLow | (scaleHigh << 4)) - 32) * (low - (high == 1 ? 0 : 4));
            }

            case TensorDType.Q4_K:
            case TensorDType.Q5_K:
            {
                int pair = e / 64, half = e % 64 / 32, l = e % 32;
                var qs = dtype == TensorDType.Q4_K ? 16 : 48;
                var q = b[qs + (32 * pair) + l];
                var code = half == 0 ? q & 15 : q >> 4;
                if (dtype == TensorDType.Q5_K)
                {
                    code |= ((b[16 + l] >> ((2 * pair) + half)) & 1) << 4;
                }

                var (sc, m) = ScaleMin(b.Slice(4, 12), (2 * pair) + half);
                return (H(b, 0) * sc * code) - (H(b, 2) * m);
            }

            case TensorDType.Q6_K:
            {
                int n = e / 128, quarter = e % 128 / 32, l = e % 32;
                var lowByte = b[(64 * n) + (quarter % 2 == 1 ? 32 : 0) + l];
                var low = quarter < 2 ? lowByte & 15 : lowByte >> 4;
                var high = (b[128 + (32 * n) + l] >> (2 * quarter)) & 3;
                var scale = (sbyte)b[192 + (8 * n) + (l / 16) + (2 * quarter)];
                return H(b, 208) * scale * ((low | (high << 4)) - 32);
            }

            default:
                throw new ArgumentException(dtype.ToString());
        }
    }

    /// <summary>Element <paramref name="e"/> of a nibble-packed array whose high nibbles hold elements from <paramref name="half"/> on.</summary>
    private static int Nibble(ReadOnlySpan<byte> q, int e, int half) => e < half ? q[e] & 15 : q[e - half] >> 4;

    private static int FifthBit(ReadOnlySpan<byte> qh, int e) => (int)((BinaryPrimitives.ReadUInt32LittleEndian(qh) >> e) & 1);

    private static (int Scale, int Min) ScaleMin(ReadOnlySpan<byte> s, int j) => j < 4
        ? (s[j] & 63, s[j + 4] & 63)
        : ((s[j + 4] & 15) | ((s[j - 4] >> 6) << 4), (s[j + 4] >> 4) | ((s[j] >> 6) << 4));
}
