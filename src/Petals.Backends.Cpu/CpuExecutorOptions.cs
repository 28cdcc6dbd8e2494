using Petals.Tensors;

namespace Petals.Backends.Cpu;

/// <summary>Options of the managed CPU executor (<see cref="CpuBlockExecutorFactory"/>).</summary>
/// <remarks>The factory copies the options when it is constructed; later changes to this object do not affect it or its executors.</remarks>
public sealed class CpuExecutorOptions
{
    /// <summary>Number of threads that run one forward pass (the calling thread plus <c>ThreadCount - 1</c> workers). Default: <see cref="Environment.ProcessorCount"/>.</summary>
    public int ThreadCount { get; set; } = Environment.ProcessorCount;

    /// <summary>Whether a native BLAS is used for large fp32 matrix products. Default: <see cref="NativeBlasMode.Auto"/>.</summary>
    public NativeBlasMode NativeBlas { get; set; } = NativeBlasMode.Auto;

    /// <summary>
    /// Path or name of the native BLAS library to load; <see langword="null"/> (the default) tries
    /// <c>libopenblas.so.0</c>, <c>libopenblas.so</c>, <c>libopenblas64_.so.0</c>, <c>libopenblas64.so.0</c> and the platform's equivalents in turn.
    /// </summary>
    public string? NativeBlasLibraryPath { get; set; }

    /// <summary>
    /// In <see cref="NativeBlasMode.Auto"/> mode, the fewest rows (batch × tokens) for which an fp32 product may go to the native BLAS
    /// (see <see cref="NativeBlasMode.Auto"/> for when it does); smaller products (decode) always use the managed kernels, which
    /// stream weights faster for a few rows. Default: 16.
    /// </summary>
    public int NativeBlasMinTokens { get; set; } = 16;

    /// <summary>
    /// How fp32/fp16/bf16 block weights are quantized when they are loaded (<c>petals serve --quant</c>); weights that the file
    /// stores quantized (GGUF Q8_0, Q4_K, …) are kept in their own format whatever this says. Default: <see cref="WeightQuantization.None"/>.
    /// </summary>
    public WeightQuantization Quantization { get; set; } = WeightQuantization.None;

    /// <summary>
    /// Whether block weights are copied at load into memory backed by 2 MiB transparent huge pages (Linux; on other systems
    /// the mapped or given memory is used as is). Decode reads every weight once per token: with 4 KiB pages each 4 KiB
    /// costs a TLB miss, and the copy measured 10-22 % faster decode (Q8_0, Q6_K, Q4_K, f32) on the development machine.
    /// The cost is the copy at load (about 0.3 s per GB) and weights that are no longer shared with the page cache
    /// (resident as anonymous memory; the file's pages stay reclaimable cache). Weights quantized at load are written
    /// straight into such memory. Default: <see langword="true"/>.
    /// </summary>
    public bool HugePageWeights { get; set; } = true;

    /// <summary>
    /// Products with fewer multiply-adds than this (about 40 µs of one core's work) run on the calling thread alone:
    /// handing them to workers costs tens of microseconds on a busy machine and saves less. Internal: tests set 0 to
    /// force every product through the worker pool.
    /// </summary>
    internal long ParallelMinMultiplyAdds { get; set; } = 1 << 20;

    /// <summary>Checks the values.</summary>
    /// <exception cref="ArgumentOutOfRangeException">When <see cref="ThreadCount"/> or <see cref="NativeBlasMinTokens"/> is less than 1, or <see cref="NativeBlas"/> is not a defined mode.</exception>
    public void Validate()
    {
        if (ThreadCount < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(ThreadCount), ThreadCount, "CpuExecutorOptions.ThreadCount must be at least 1.");
        }

        if (NativeBlasMinTokens < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(NativeBlasMinTokens), NativeBlasMinTokens, "CpuExecutorOptions.NativeBlasMinTokens must be at least 1.");
        }

        if (!WeightQuantization.TryParse(Quantization.Value, out _))
        {
            throw new ArgumentOutOfRangeException(nameof(Quantization), Quantization, $"CpuExecutorOptions.Quantization '{Quantization}' is not one of {string.Join(", ", WeightQuantization.Known)}.");
        }

        if (!Enum.IsDefined(NativeBlas))
        {
            throw new ArgumentOutOfRangeException(nameof(NativeBlas), NativeBlas, "CpuExecutorOptions.NativeBlas is not a defined NativeBlasMode.");
        }
    }

    internal CpuExecutorOptions Clone() => (CpuExecutorOptions)MemberwiseClone();
}
