using System.Runtime.Intrinsics;
using System.Buffers.Binary;

namespace Petals.Tensors;

/// <content>The 32-element formats (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1) and NF4.</content>
public static partial class BlockQuantization
{
    // Q8_0: d (fp16), 32 int8. Q4_0: d, 16 bytes (element j low nibble of byte j, element 16 + j high nibble), value (q - 8) d.
    // Q4_1: d, m, 16 bytes: q d + m. Q5_0: d, qh (uint32, bit j = fifth bit of element j), 16 bytes: (q - 16) d.
    // Q5_1: d, m, qh, 16 bytes: q d + m.
    private static void DequantizeQ8_0(ReadOnlySpan<byte> x, Span<float> y)
    {
        var d = Half16(x, 0);
        for (var j = 0; j < 32; j++)
        {
            y[j] = (sbyte)x[2 + j] * d;
        }
    }

    private static void DequantizeQ4_0(ReadOnlySpan<byte> x, Span<float> y)
    {
        var d = Half16(x, 0);
        var qs = x[2..];
        for (var j = 0; j < 16; j++)
        {
            y[j] = ((qs[j] & 0x0F) - 8) * d;
            y[j + 16] = ((qs[j] >> 4) - 8) * d;
        }
    }

    private static void DequantizeQ4_1(ReadOnlySpan<byte> x, Span<float> y)
    {
        var d = Half16(x, 0);
        var m = Half16(x, 2);
        var qs = x[4..];
        for (var j = 0; j < 16; j++)
        {
            y[j] = ((qs[j] & 0x0F) * d) + m;
            y[j + 16] = ((qs[j] >> 4) * d) + m;
        }
    }

    private static void DequantizeQ5_0(ReadOnlySpan<byte> x, Span<float> y)
    {
        var d = Half16(x, 0);
        var qh = BinaryPrimitives.ReadUInt32LittleEndian(x[2..]);
        var qs = x[6..];
        for (var j = 0; j < 16; j++)
        {
            var h0 = (int)((qh >> j) & 1) << 4;
            var h1 = (int)((qh >> (j + 16)) & 1) << 4;
            y[j] = (((qs[j] & 0x0F) | h0) - 16) * d;
            y[j + 16] = (((qs[j] >> 4) | h1) - 16) * d;
        }
    }

    private static void DequantizeQ5_1(ReadOnlySpan<byte> x, Span<float> y)
    {
        var d = Half16(x, 0);
        var m = Half16(x, 2);
        var qh = BinaryPrimitives.ReadUInt32LittleEndian(x[4..]);
        var qs = x[8..];
        for (var j = 0; j < 16; j++)
        {
            var h0 = (int)((qh >> j) & 1) << 4;
            var h1 = (int)((qh >> (j + 16)) & 1) << 4;
            y[j] = (((qs[j] & 0x0F) | h0) * d) + m;
            y[j + 16] = (((qs[j] >> 4) | h1) * d) + m;
        }
    }

    private static void DequantizeNf4(ReadOnlySpan<byte> x, Span<float> y)
    {
        var d = Half16(x, 0);
        var levels = Nf4Levels;
        var qs = x[2..];
        for (var j = 0; j < 32; j++)
        {
            y[j] = levels[qs[j] & 0x0F] * d;
            y[j + 32] = levels[qs[j] >> 4] * d;
        }
    }

    private static void QuantizeQ8_0(ReadOnlySpan<float> x, Span<byte> y)
    {
        var amax = Vector256<float>.Zero;
        for (var i = 0; i < 32; i += 8)
        {
            amax = Vector256.Max(amax, Vector256.Abs(Vector256.Create(x.Slice(i, 8))));
        }

        var d = HorizontalMax(amax) / 127f;
        var id = Vector256.Create(d != 0 ? 1f / d : 0f);
        WriteHalf(y, 0, d);
        var half = Vector256.Create(0.5f);
        for (var i = 0; i < 32; i += 8)
        {
            // roundf (ties away from zero), exactly: truncate, then step away from zero when the dropped part is >= 0.5
            // (x - trunc(x) is exact in binary floating point).
            var v = Vector256.Create(x.Slice(i, 8)) * id;
            var t = Vector256.Truncate(v);
            var up = Vector256.GreaterThanOrEqual(Vector256.Abs(v - t), half);
            var sign = (v & Vector256.Create(-0f)) | Vector256<float>.One;
            var q = t + (up & sign);
            for (var k = 0; k < 8; k++)
            {
                y[2 + i + k] = (byte)(sbyte)(int)q.GetElement(k);
            }
        }
    }

    private static float HorizontalMax(Vector256<float> v)
    {
        var m = 0f;
        for (var k = 0; k < 8; k++)
        {
            m = MathF.Max(m, v.GetElement(k));
        }

        return m;
    }

    /// <summary>The value of largest magnitude, with its sign (the first one on ties).</summary>
    private static float SignedAbsMax(ReadOnlySpan<float> x)
    {
        var amax = 0f;
        var max = 0f;
        foreach (var v in x)
        {
            if (amax < MathF.Abs(v))
            {
                amax = MathF.Abs(v);
                max = v;
            }
        }

        return max;
    }

    private static void QuantizeQ4_0(ReadOnlySpan<float> x, Span<byte> y)
    {
        // The largest magnitude maps to -8, so the sign of the scale follows it and the code range -8..7 is used whole.
        var d = SignedAbsMax(x) / -8f;
        var id = d != 0 ? 1f / d : 0f;
        WriteHalf(y, 0, d);
        Span<int> q = stackalloc int[32];
        Codes(x, Vector256.Create(id), Vector256<float>.Zero, Vector256.Create(8.5f), 15, q);
        for (var j = 0; j < 16; j++)
        {
            y[2 + j] = (byte)(q[j] | (q[j + 16] << 4));
        }
    }

    private static void QuantizeQ4_1(ReadOnlySpan<float> x, Span<byte> y)
    {
        var (min, max) = MinMax(x);
        var d = (max - min) / 15f;
        var id = d != 0 ? 1f / d : 0f;
        WriteHalf(y, 0, d);
        WriteHalf(y, 2, min);
        Span<int> q = stackalloc int[32];
        Codes(x, Vector256.Create(id), Vector256.Create(min), Vector256.Create(0.5f), 15, q);
        for (var j = 0; j < 16; j++)
        {
            y[4 + j] = (byte)(q[j] | (q[j + 16] << 4));
        }
    }

    private static void QuantizeQ5_0(ReadOnlySpan<float> x, Span<byte> y)
    {
        var d = SignedAbsMax(x) / -16f;
        var id = d != 0 ? 1f / d : 0f;
        WriteHalf(y, 0, d);
        uint qh = 0;
        Span<int> q = stackalloc int[32];
        Codes(x, Vector256.Create(id), Vector256<float>.Zero, Vector256.Create(16.5f), 31, q);
        for (var j = 0; j < 16; j++)
        {
            var q0 = q[j];
            var q1 = q[j + 16];
            y[6 + j] = (byte)((q0 & 0x0F) | ((q1 & 0x0F) << 4));
            qh |= (uint)((q0 >> 4) & 1) << j;
            qh |= (uint)((q1 >> 4) & 1) << (j + 16);
        }

        BinaryPrimitives.WriteUInt32LittleEndian(y[2..], qh);
    }

    private static void QuantizeQ5_1(ReadOnlySpan<float> x, Span<byte> y)
    {
        var (min, max) = MinMax(x);
        var d = (max - min) / 31f;
        var id = d != 0 ? 1f / d : 0f;
        WriteHalf(y, 0, d);
        WriteHalf(y, 2, min);
        uint qh = 0;
        Span<int> q = stackalloc int[32];
        Codes(x, Vector256.Create(id), Vector256.Create(min), Vector256.Create(0.5f), 31, q);
        for (var j = 0; j < 16; j++)
        {
            var q0 = q[j];
            var q1 = q[j + 16];
            y[8 + j] = (byte)((q0 & 0x0F) | ((q1 & 0x0F) << 4));
            qh |= (uint)((q0 >> 4) & 1) << j;
            qh |= (uint)((q1 >> 4) & 1) << (j + 16);
        }

        BinaryPrimitives.WriteUInt32LittleEndian(y[4..], qh);
    }

    private static void QuantizeNf4(ReadOnlySpan<float> x, Span<byte> y)
    {
        var amax = 0f;
        foreach (var v in x)
        {
            amax = MathF.Max(amax, MathF.Abs(v));
        }

        // Normalize by the stored (fp16-rounded) scale so that codes are chosen for the values that will be decoded.
        var d = RoundHalf(amax);
        WriteHalf(y, 0, amax);
        var id = Vector256.Create(d != 0 ? 1f / d : 0f);
        Span<byte> codes = stackalloc byte[64];
        var levels = Nf4Levels;
        for (var i = 0; i < 64; i += 8)
        {
            // The code is the number of midpoints between neighbouring levels that the value lies above.
            var v = Vector256.Create(x.Slice(i, 8)) * id;
            var code = Vector256<int>.Zero;
            for (var k = 0; k < 15; k++)
            {
                code -= Vector256.GreaterThan(v, Vector256.Create((levels[k] + levels[k + 1]) * 0.5f)).AsInt32();
            }

            for (var k = 0; k < 8; k++)
            {
                codes[i + k] = (byte)code.GetElement(k);
            }
        }

        for (var j = 0; j < 32; j++)
        {
            y[2 + j] = (byte)(codes[j] | (codes[j + 32] << 4));
        }
    }

    /// <summary>
    /// ggml's reference code of each value: <c>min(top, (int)((x - offset) * id + bias))</c>, in the same float operations
    /// (multiply, then add; truncation toward zero of a non-negative value), 8 values at a time.
    /// </summary>
    private static void Codes(ReadOnlySpan<float> x, Vector256<float> id, Vector256<float> offset, Vector256<float> bias, int top, Span<int> q)
    {
        var max = Vector256.Create(top);
        for (var i = 0; i < x.Length; i += 8)
        {
            var v = ((Vector256.Create(x.Slice(i, 8)) - offset) * id) + bias;
            Vector256.Min(max, Vector256.ConvertToInt32(Vector256.Truncate(v))).CopyTo(q.Slice(i, 8));
        }
    }

    private static (float Min, float Max) MinMax(ReadOnlySpan<float> x)
    {
        var min = float.MaxValue;
        var max = float.MinValue;
        foreach (var v in x)
        {
            min = MathF.Min(min, v);
            max = MathF.Max(max, v);
        }

        return (min, max);
    }
}
