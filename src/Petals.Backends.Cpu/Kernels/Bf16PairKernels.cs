using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Petals.Backends.Cpu.Kernels;

/// <summary>
/// Decode kernel for bf16 weights: 32 weights are loaded as 16 little-endian pairs in one 512-bit load and widened
/// with two cheap in-lane operations — <c>pair &lt;&lt; 16</c> gives the even elements, <c>pair &amp; 0xFFFF0000</c> the
/// odd ones — instead of two cross-lane widenings. The inputs are deinterleaved to match (per 32-element block:
/// 16 even then 16 odd elements) once per call, in a per-thread buffer.
/// </summary>
internal static unsafe class Bf16PairKernels
{
    [ThreadStatic]
    private static float[]? t_deinterleaved;

    /// <summary>Whether this kernel runs here (it needs Vector512).</summary>
    public static bool IsSupported => Vector512.IsHardwareAccelerated;

    /// <summary>Same contract as <see cref="LinearKernels.Compute{TF}"/> with bf16 weights.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Compute(float* x, int m, int k, byte* w, float* y, int ldy, int rowStart, int rowEnd, bool accumulate)
    {
        var k32 = k & ~31;
        if (!IsSupported || k32 == 0)
        {
            LinearKernels.Compute<Bf16Format>(x, m, k, w, y, ldy, rowStart, rowEnd, accumulate);
            return;
        }

        var needed = m * k32;
        var buffer = t_deinterleaved;
        if (buffer is null || buffer.Length < needed)
        {
            buffer = t_deinterleaved = GC.AllocateUninitializedArray<float>(Math.Max(needed, 16384), pinned: true);
        }

        fixed (float* xd = buffer)
        {
            for (var t = 0; t < m; t++)
            {
                var src = x + ((long)t * k);
                var dst = xd + ((long)t * k32);
                for (var b = 0; b < k32; b += 32)
                {
                    for (var j = 0; j < 16; j++)
                    {
                        dst[b + j] = src[b + (2 * j)];
                        dst[b + 16 + j] = src[b + (2 * j) + 1];
                    }
                }
            }

            var rowBytes = (nint)k * 2;
            var r = rowStart;
            for (; r + 4 <= rowEnd; r += 4)
            {
                for (var t = 0; t < m; t++)
                {
                    Tile4x1(xd + ((long)t * k32), x + ((long)t * k), w + (r * rowBytes), rowBytes, k, k32, y + ((long)t * ldy) + r, accumulate);
                }
            }

            for (; r < rowEnd; r++)
            {
                for (var t = 0; t < m; t++)
                {
                    var d = Dot(xd + ((long)t * k32), x + ((long)t * k), w + (r * rowBytes), k, k32);
                    ref var dst = ref y[((long)t * ldy) + r];
                    dst = accumulate ? dst + d : d;
                }
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tile4x1(float* xd, float* x, byte* w0, nint rowBytes, int k, int k32, float* y, bool acc)
    {
        var mask = Vector512.Create(0xFFFF0000u);
        byte* w1 = w0 + rowBytes, w2 = w1 + rowBytes, w3 = w2 + rowBytes;
        Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default;
        Vector512<float> b0 = default, b1 = default, b2 = default, b3 = default;
        for (var i = 0; i < k32; i += 32)
        {
            var xe = Vector512.Load(xd + i);
            var xo = Vector512.Load(xd + i + 16);
            var o = i * 2;
            var v = Vector512.Load((uint*)(w0 + o));
            a0 = Vector512.FusedMultiplyAdd(xe, Vector512.ShiftLeft(v, 16).AsSingle(), a0);
            b0 = Vector512.FusedMultiplyAdd(xo, (v & mask).AsSingle(), b0);
            v = Vector512.Load((uint*)(w1 + o));
            a1 = Vector512.FusedMultiplyAdd(xe, Vector512.ShiftLeft(v, 16).AsSingle(), a1);
            b1 = Vector512.FusedMultiplyAdd(xo, (v & mask).AsSingle(), b1);
            v = Vector512.Load((uint*)(w2 + o));
            a2 = Vector512.FusedMultiplyAdd(xe, Vector512.ShiftLeft(v, 16).AsSingle(), a2);
            b2 = Vector512.FusedMultiplyAdd(xo, (v & mask).AsSingle(), b2);
            v = Vector512.Load((uint*)(w3 + o));
            a3 = Vector512.FusedMultiplyAdd(xe, Vector512.ShiftLeft(v, 16).AsSingle(), a3);
            b3 = Vector512.FusedMultiplyAdd(xo, (v & mask).AsSingle(), b3);
        }

        float s0 = Vector512.Sum(a0 + b0), s1 = Vector512.Sum(a1 + b1), s2 = Vector512.Sum(a2 + b2), s3 = Vector512.Sum(a3 + b3);
        for (var i = k32; i < k; i++)
        {
            var xi = x[i];
            var o = i * 2;
            s0 = MathF.FusedMultiplyAdd(xi, Bf16Format.Load1(w0 + o), s0);
            s1 = MathF.FusedMultiplyAdd(xi, Bf16Format.Load1(w1 + o), s1);
            s2 = MathF.FusedMultiplyAdd(xi, Bf16Format.Load1(w2 + o), s2);
            s3 = MathF.FusedMultiplyAdd(xi, Bf16Format.Load1(w3 + o), s3);
        }

        if (acc)
        {
            y[0] += s0;
            y[1] += s1;
            y[2] += s2;
            y[3] += s3;
        }
        else
        {
            y[0] = s0;
            y[1] = s1;
            y[2] = s2;
            y[3] = s3;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Dot(float* xd, float* x, byte* w, int k, int k32)
    {
        var mask = Vector512.Create(0xFFFF0000u);
        Vector512<float> a = default, b = default;
        for (var i = 0; i < k32; i += 32)
        {
            var v = Vector512.Load((uint*)(w + (i * 2)));
            a = Vector512.FusedMultiplyAdd(Vector512.Load(xd + i), Vector512.ShiftLeft(v, 16).AsSingle(), a);
            b = Vector512.FusedMultiplyAdd(Vector512.Load(xd + i + 16), (v & mask).AsSingle(), b);
        }

        var s = Vector512.Sum(a + b);
        for (var i = k32; i < k; i++)
        {
            s = MathF.FusedMultiplyAdd(x[i], Bf16Format.Load1(w + (i * 2)), s);
        }

        return s;
    }
}
