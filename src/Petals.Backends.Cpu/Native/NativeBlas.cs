using System.Runtime.InteropServices;

namespace Petals.Backends.Cpu.Native;

/// <summary>
/// A native BLAS (OpenBLAS or any library exporting <c>cblas_sgemm</c>) found at run time with
/// <see cref="NativeLibrary.TryLoad(string, out IntPtr)"/>; the 64-bit-integer OpenBLAS build (<c>cblas_sgemm64_</c>) works too.
/// </summary>
/// <remarks>Thread-safe to call; the library itself parallelizes each product.</remarks>
internal sealed unsafe class NativeBlas
{
    private const int RowMajor = 101;
    private const int NoTrans = 111;
    private const int Trans = 112;

    private static readonly string[] DefaultNames = OperatingSystem.IsWindows()
        ? ["libopenblas.dll", "openblas.dll"]
        : OperatingSystem.IsMacOS()
            ? ["libopenblas.dylib", "libopenblas.0.dylib", "/opt/homebrew/opt/openblas/lib/libopenblas.dylib"]
            : ["libopenblas.so.0", "libopenblas.so", "libopenblas64_.so.0", "libopenblas64.so.0", "libopenblas64.so"];

    private readonly delegate* unmanaged<int, int, int, int, int, int, float, float*, int, float*, int, float, float*, int, void> _sgemm32;
    private readonly delegate* unmanaged<int, int, int, long, long, long, float, float*, long, float*, long, float, float*, long, void> _sgemm64;

    private NativeBlas(string library, IntPtr sgemm32, IntPtr sgemm64)
    {
        Library = library;
        _sgemm32 = (delegate* unmanaged<int, int, int, int, int, int, float, float*, int, float*, int, float, float*, int, void>)sgemm32;
        _sgemm64 = (delegate* unmanaged<int, int, int, long, long, long, float, float*, long, float*, long, float, float*, long, void>)sgemm64;
    }

    /// <summary>The library that was loaded.</summary>
    public string Library { get; }

    /// <summary>Loads a BLAS from <paramref name="path"/>, or from the default names when it is <see langword="null"/>.</summary>
    /// <param name="path">A library path or name, or <see langword="null"/>.</param>
    /// <param name="threadCount">Threads the library should use (set through <c>openblas_set_num_threads</c> when exported).</param>
    /// <param name="failure">Why nothing loaded, when the result is <see langword="null"/>.</param>
    /// <returns>The library, or <see langword="null"/>.</returns>
    public static NativeBlas? TryLoad(string? path, int threadCount, out string failure)
    {
        var names = path is null ? DefaultNames : [path];
        var tried = new List<string>();
        foreach (var name in names)
        {
            if (!NativeLibrary.TryLoad(name, out var handle))
            {
                tried.Add(name + " (not loadable)");
                continue;
            }

            IntPtr s32 = IntPtr.Zero, s64 = IntPtr.Zero;
            if (!NativeLibrary.TryGetExport(handle, "cblas_sgemm64_", out s64) && !NativeLibrary.TryGetExport(handle, "cblas_sgemm", out s32))
            {
                tried.Add(name + " (no cblas_sgemm export)");
                NativeLibrary.Free(handle);
                continue;
            }

            if (name.Contains("64", StringComparison.Ordinal) && s32 != IntPtr.Zero)
            {
                // An ILP64 build may export the plain name with 64-bit integers; never guess, skip it.
                tried.Add(name + " (64-bit-integer build without cblas_sgemm64_)");
                NativeLibrary.Free(handle);
                continue;
            }

            if (NativeLibrary.TryGetExport(handle, s64 != IntPtr.Zero ? "openblas_set_num_threads64_" : "openblas_set_num_threads", out var setThreads))
            {
                ((delegate* unmanaged<int, void>)setThreads)(threadCount);
            }

            failure = string.Empty;
            return new NativeBlas(name, s32, s64);
        }

        failure = "no native BLAS could be loaded; tried " + string.Join(", ", tried);
        return null;
    }

    /// <summary>
    /// <c>C[m, n] = A[m, k] B[n, k]^T (+ C when <paramref name="accumulate"/>)</c>, all row-major with the given leading dimensions.
    /// </summary>
    public void MultiplyTransposed(int m, int n, int k, float* a, int lda, float* b, int ldb, float* c, int ldc, bool accumulate)
    {
        var beta = accumulate ? 1f : 0f;
        if (_sgemm64 != null)
        {
            _sgemm64(RowMajor, NoTrans, Trans, m, n, k, 1f, a, lda, b, ldb, beta, c, ldc);
        }
        else
        {
            _sgemm32(RowMajor, NoTrans, Trans, m, n, k, 1f, a, lda, b, ldb, beta, c, ldc);
        }
    }
}
