using Petals.Backends.Cpu.Native;
using Petals.Execution;
using Petals.Models;

namespace Petals.Backends.Cpu;

/// <summary>
/// Creates managed CPU executors for spans of Llama-family models: SIMD kernels (Vector512 / Vector256 / scalar)
/// over F32, BF16 and F16 weights kept in their own type, all cores, and an optional native BLAS for large fp32 products.
/// </summary>
/// <remarks>Thread-safe: <see cref="Create"/> may be called concurrently.</remarks>
public sealed class CpuBlockExecutorFactory : IBlockExecutorFactory
{
    private readonly CpuExecutorOptions _options;
    private readonly NativeBlas? _blas;

    /// <summary>Creates the factory.</summary>
    /// <param name="options">The options, or <see langword="null"/> for the defaults; they are copied.</param>
    /// <exception cref="ArgumentOutOfRangeException">When an option is out of range.</exception>
    /// <exception cref="InvalidOperationException">When <see cref="CpuExecutorOptions.NativeBlas"/> is <see cref="NativeBlasMode.Always"/> and no native BLAS loads; the message lists what was tried.</exception>
    public CpuBlockExecutorFactory(CpuExecutorOptions? options = null)
    {
        _options = (options ?? new CpuExecutorOptions()).Clone();
        _options.Validate();
        if (_options.NativeBlas != NativeBlasMode.Never)
        {
            _blas = NativeBlas.TryLoad(_options.NativeBlasLibraryPath, _options.ThreadCount, out var failure);
            if (_blas is null && _options.NativeBlas == NativeBlasMode.Always)
            {
                throw new InvalidOperationException("CpuExecutorOptions.NativeBlas is Always, but " + failure + ".");
            }
        }
    }

    /// <summary>The backend name, <c>"cpu"</c>.</summary>
    public string Name => "cpu";

    /// <summary>
    /// The native BLAS library that was loaded (its path or name), or <see langword="null"/> when none was (mode
    /// <see cref="NativeBlasMode.Never"/>, or none found in <see cref="NativeBlasMode.Auto"/>); <see cref="NativeBlasMode"/>
    /// says which products it takes.
    /// </summary>
    public string? NativeBlasLibrary => _blas?.Library;

    /// <inheritdoc />
    public IBlockExecutor Create(IModelWeights weights, BlockRange blocks)
    {
        ArgumentNullException.ThrowIfNull(weights);
        var config = weights.Config;
        config.Validate(weights.Source);
        if (blocks.End > config.NumLayers)
        {
            throw new ArgumentOutOfRangeException(nameof(blocks), blocks, $"Blocks {blocks} go past the last block of {weights.Source} ({config.NumLayers} blocks).");
        }

        var loaded = new BlockWeights[blocks.Count];
        try
        {
            for (var i = 0; i < loaded.Length; i++)
            {
                loaded[i] = BlockWeights.Load(weights, blocks.Start + i, _options.Quantization, _options.ThreadCount, _options.HugePageWeights);
            }

            return new CpuBlockExecutor(config, blocks, loaded, _options.Clone(), _blas, weights.Source);
        }
        catch
        {
            foreach (var b in loaded)
            {
                b?.Dispose();
            }

            throw;
        }
    }
}
