namespace Petals.Backends.Cpu;

/// <summary>Whether the CPU executor uses a native BLAS library (OpenBLAS <c>cblas_sgemm</c>) for large fp32 products.</summary>
public enum NativeBlasMode
{
    /// <summary>Use a native BLAS when one loads at run time, for fp32 products of at least <see cref="CpuExecutorOptions.NativeBlasMinTokens"/> rows; otherwise the managed kernels. The default.</summary>
    Auto = 0,

    /// <summary>Never load a native library; always use the managed kernels.</summary>
    Never = 1,

    /// <summary>Require a native BLAS (creation fails when none loads) and use it for every fp32 product, whatever its size.</summary>
    Always = 2,
}
