using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Petals.Backends.Cpu.Kernels.Quant;

/// <summary>Which vector width a kernel uses. Every path computes the same products; tests run each one on any machine that has it.</summary>
internal enum KernelPath
{
    /// <summary>Scalar loops: the fallback that runs anywhere.</summary>
    Scalar,

    /// <summary>256-bit vectors with FMA (AVX2).</summary>
    Vector256,

    /// <summary>512-bit vectors (AVX-512 F/BW).</summary>
    Vector512,
}

/// <summary>The kernel paths this machine runs.</summary>
internal static class KernelPaths
{
    /// <summary>The widest path with hardware support.</summary>
    public static KernelPath Best { get; } = Vector512.IsHardwareAccelerated && Avx512BW.IsSupported ? KernelPath.Vector512
        : Vector256.IsHardwareAccelerated && Fma.IsSupported && Avx2.IsSupported ? KernelPath.Vector256
        : KernelPath.Scalar;

    /// <summary>Whether <paramref name="path"/> runs here.</summary>
    public static bool IsSupported(KernelPath path) => path switch
    {
        KernelPath.Vector512 => Vector512.IsHardwareAccelerated && Avx512BW.IsSupported,
        KernelPath.Vector256 => Vector256.IsHardwareAccelerated && Fma.IsSupported && Avx2.IsSupported,
        _ => true,
    };
}
