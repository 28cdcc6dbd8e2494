using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Petals.Backends.Cpu.Kernels.Quant;

/// <summary>
/// One token's inputs quantized for the integer dot products of the fused kernels: per block of 32 values an fp32
/// scale <c>dx = max|x| / 127</c> and 32 signed bytes <c>round(x / dx)</c> (round half to even), plus the sums the
/// offset formats need. The error this adds to a product is at most <c>sum_b dx_b / 2 * sum_{i in b} |w_i|</c>.
/// </summary>
internal readonly unsafe struct Q8Activations
{
    /// <summary>Bytes of scratch that <see cref="Quantize"/> needs for <paramref name="k"/> inputs.</summary>
    public static int ScratchBytes(int k) => k + ((k / 32) * 2 * sizeof(float)) + ((k / 16) * sizeof(float));

    /// <summary>The quantized values, <c>k</c> bytes.</summary>
    public readonly sbyte* Q;

    /// <summary>Scales, one per 32 values.</summary>
    public readonly float* Scale;

    /// <summary><c>dx * sum(q)</c> per block of 32: what an offset (a minimum, or the bias of unsigned codes) multiplies.</summary>
    public readonly float* ScaledSum;

    /// <summary><c>dx * sum(q)</c> per 16 values (for the formats whose sub-blocks are 16 long).</summary>
    public readonly float* ScaledSum16;

    private Q8Activations(sbyte* q, float* scale, float* scaledSum, float* scaledSum16)
    {
        Q = q;
        Scale = scale;
        ScaledSum = scaledSum;
        ScaledSum16 = scaledSum16;
    }

    /// <summary>Quantizes <paramref name="k"/> (a multiple of 32) inputs into <paramref name="scratch"/> of <see cref="ScratchBytes"/> bytes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Q8Activations Quantize(float* x, int k, byte* scratch)
    {
        var blocks = k / 32;
        var view = At(scratch, k);
        var scale = view.Scale;
        var scaledSum = view.ScaledSum;
        var sum16 = view.ScaledSum16;
        var q = view.Q;
        for (var b = 0; b < blocks; b++)
        {
            var xb = x + (b * 32);
            var qb = q + (b * 32);
            var amax = 0f;
            if (Avx2.IsSupported)
            {
                var sign = Vector256.Create(-0f);
                var m = Vector256.Max(Vector256.Max(Vector256.AndNot(Vector256.Load(xb), sign), Vector256.AndNot(Vector256.Load(xb + 8), sign)),
                    Vector256.Max(Vector256.AndNot(Vector256.Load(xb + 16), sign), Vector256.AndNot(Vector256.Load(xb + 24), sign)));
                var m4 = Vector128.Max(m.GetLower(), m.GetUpper());
                m4 = Vector128.Max(m4, Vector128.Shuffle(m4, Vector128.Create(2, 3, 0, 1)));
                m4 = Vector128.Max(m4, Vector128.Shuffle(m4, Vector128.Create(1, 0, 3, 2)));
                amax = m4.ToScalar();
                var d = amax / 127f;
                var inv = Vector256.Create(d > 0 ? 1f / d : 0f);
                var i0 = Avx.ConvertToVector256Int32(Vector256.Load(xb) * inv);
                var i1 = Avx.ConvertToVector256Int32(Vector256.Load(xb + 8) * inv);
                var i2 = Avx.ConvertToVector256Int32(Vector256.Load(xb + 16) * inv);
                var i3 = Avx.ConvertToVector256Int32(Vector256.Load(xb + 24) * inv);
                Vector256.Narrow(Vector256.Narrow(i0, i1), Vector256.Narrow(i2, i3)).Store(qb);
                var s0 = Vector256.Sum(i0 + i1);
                var s1 = Vector256.Sum(i2 + i3);
                scale[b] = d;
                scaledSum[b] = d * (s0 + s1);
                sum16[2 * b] = d * s0;
                sum16[(2 * b) + 1] = d * s1;
            }
            else
            {
                for (var i = 0; i < 32; i++)
                {
                    amax = MathF.Max(amax, MathF.Abs(xb[i]));
                }

                var d = amax / 127f;
                var inv = d > 0 ? 1f / d : 0f;
                int s0 = 0, s1 = 0;
                for (var i = 0; i < 32; i++)
                {
                    var v = (int)MathF.Round(xb[i] * inv, MidpointRounding.ToEven);
                    qb[i] = (sbyte)v;
                    if (i < 16)
                    {
                        s0 += v;
                    }
                    else
                    {
                        s1 += v;
                    }
                }

                scale[b] = d;
                scaledSum[b] = d * (s0 + s1);
                sum16[2 * b] = d * s0;
                sum16[(2 * b) + 1] = d * s1;
            }
        }

        return view;
    }

    /// <summary>The activations that <see cref="Quantize"/> wrote into <paramref name="scratch"/> for <paramref name="k"/> inputs.</summary>
    public static Q8Activations At(byte* scratch, int k)
    {
        var blocks = k / 32;
        var scale = (float*)scratch;
        var scaledSum = scale + blocks;
        var sum16 = scaledSum + blocks;
        return new Q8Activations((sbyte*)(sum16 + (2 * blocks)), scale, scaledSum, sum16);
    }
}
