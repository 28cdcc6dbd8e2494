using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Petals.Backends.Cpu.Kernels.Quant;

/// <summary>Integer codes to fp32: <c>dst[i] = code[i] * scale + offset</c>, 16 codes at a time (the second half of every block decoder).</summary>
internal static unsafe class Widen
{
    /// <summary>Converts 16 unsigned codes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void U8x16(Vector128<byte> codes, float scale, float offset, float* dst, KernelPath path)
    {
        if (path == KernelPath.Vector512)
        {
            var f = Avx512F.ConvertToVector512Single(Avx512F.ConvertToVector512Int32(codes));
            Vector512.FusedMultiplyAdd(f, Vector512.Create(scale), Vector512.Create(offset)).Store(dst);
        }
        else if (path == KernelPath.Vector256)
        {
            var s = Vector256.Create(scale);
            var o = Vector256.Create(offset);
            Fma.MultiplyAdd(Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(codes)), s, o).Store(dst);
            Fma.MultiplyAdd(Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(Sse2.ShiftRightLogical128BitLane(codes, 8))), s, o).Store(dst + 8);
        }
        else
        {
            for (var i = 0; i < 16; i++)
            {
                dst[i] = MathF.FusedMultiplyAdd(codes.GetElement(i), scale, offset);
            }
        }
    }

    /// <summary>Converts 16 signed codes (<paramref name="codes"/> reinterpreted as <see cref="sbyte"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void S8x16(Vector128<sbyte> codes, float scale, float* dst, KernelPath path)
    {
        if (path == KernelPath.Vector512)
        {
            (Avx512F.ConvertToVector512Single(Avx512F.ConvertToVector512Int32(codes)) * Vector512.Create(scale)).Store(dst);
        }
        else if (path == KernelPath.Vector256)
        {
            var s = Vector256.Create(scale);
            (Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(codes)) * s).Store(dst);
            (Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(Sse2.ShiftRightLogical128BitLane(codes, 8))) * s).Store(dst + 8);
        }
        else
        {
            for (var i = 0; i < 16; i++)
            {
                dst[i] = codes.GetElement(i) * scale;
            }
        }
    }

    /// <summary>Reads an IEEE binary16 value.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Half(byte* p) => (float)Unsafe.ReadUnaligned<Half>(p);
}
