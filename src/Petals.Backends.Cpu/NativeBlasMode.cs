namespace Petals.Backends.Cpu;

/// <summary>Whether the CPU executor uses a native BLAS library (OpenBLAS <c>cblas_sgemm</c>) for large fp32 products.</summary>
public enum NativeBlasMode
{
    /// <summary>
    /// The default. Load a native BLAS when one is present and use it for fp32 products of at least
    /// <see cref="CpuExecutorOptions.NativeBlasMinTokens"/> rows where the managed GEMM has no register-blocked
    /// micro-kernel (neither Vector512 nor Vector256 with FMA, e.g. Arm64). Elsewhere the managed packed GEMM is used: on the
    /// AVX-512 development machine (AMD EPYC, Zen 4) it measured about 15% more work per core-second than OpenBLAS 0.3
    /// on Llama-7B-shaped fp32 prefill, and it also serves bf16/f16 weights, which BLAS cannot take without a copy.
    /// </summary>
    Auto = 0,

    /// <summary>Never load a native library; always use the managed kernels.</summary>
    Never = 1,

    /// <summary>Require a native BLAS (the factory constructor fails when none loads) and use it for every fp32 product, whatever its size and the CPU.</summary>
    Always = 2,
}
