using Petals.Models;
using Petals.Tensors;

namespace Petals.Backends.Cpu.Tests;

/// <summary>The native BLAS path (every fp32 product through <c>cblas_sgemm</c>) against the float64 reference.</summary>
public sealed class NativeBlasTests
{
    internal static CpuBlockExecutorFactory BlasOrSkip()
    {
        try
        {
            return new CpuBlockExecutorFactory(new CpuExecutorOptions { NativeBlas = NativeBlasMode.Always, ThreadCount = 2 });
        }
        catch (InvalidOperationException ex)
        {
            Assert.Skip("No native BLAS on this machine: " + ex.Message);
            throw;
        }
    }

    [Fact]
    public void FactoryReportsTheLoadedLibrary()
    {
        var factory = BlasOrSkip();
        Assert.False(string.IsNullOrEmpty(factory.NativeBlasLibrary));
        Assert.Null(ExecutorChecks.Managed().NativeBlasLibrary);
    }

    [Theory]
    [InlineData("mha")]
    [InlineData("gqa")]
    [InlineData("odd")]
    [InlineData("llama3")]
    public void BlasPrefillAndDecodeMatchReference(string configName)
    {
        var factory = BlasOrSkip();
        using var model = new RandomLlama(TestConfigs.Get(configName, layers: 3));
        using var executor = factory.Create(model, new BlockRange(1, 3));
        ExecutorChecks.RunStatelessAndCompare(model, executor, batch: 2, tokens: 7, seed: 41);
        ExecutorChecks.RunCachedAndCompare(model, executor, batch: 2, prefill: 5, chunk: 3, decode: 3, seed: 42);
    }

    [Fact]
    public void Bf16WeightsFallBackToManagedKernelsUnderAlways()
    {
        var factory = BlasOrSkip();
        using var model = new RandomLlama(TestConfigs.Get("gqa"), TensorDType.BF16);
        using var executor = factory.Create(model, new BlockRange(0, 2));
        ExecutorChecks.RunStatelessAndCompare(model, executor, batch: 1, tokens: 6, seed: 43);
    }

    [Fact]
    public void AlwaysWithAMissingLibraryFailsAtCreationNamingWhatWasTried()
    {
        var ex = Assert.Throws<InvalidOperationException>(() => new CpuBlockExecutorFactory(new CpuExecutorOptions
        {
            NativeBlas = NativeBlasMode.Always,
            NativeBlasLibraryPath = "/nonexistent/libopenblas-missing.so",
        }));
        Assert.Contains("/nonexistent/libopenblas-missing.so", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void AutoWithAMissingLibraryUsesTheManagedKernels()
    {
        var factory = new CpuBlockExecutorFactory(new CpuExecutorOptions { NativeBlasLibraryPath = "/nonexistent/libopenblas-missing.so" });
        Assert.Null(factory.NativeBlasLibrary);
        using var model = new RandomLlama(TestConfigs.Get("mha"));
        using var executor = factory.Create(model, new BlockRange(0, 2));
        ExecutorChecks.RunStatelessAndCompare(model, executor, batch: 1, tokens: 20, seed: 44);
    }
}
