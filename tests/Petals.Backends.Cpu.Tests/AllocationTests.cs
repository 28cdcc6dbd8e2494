using Petals.Models;
using Petals.Tensors;

namespace Petals.Backends.Cpu.Tests;

/// <summary>The hot path allocates nothing once scratch buffers have grown.</summary>
public sealed class AllocationTests
{
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public void DecodeStepsAllocateNothingAfterWarmUp(int threads)
    {
        using var model = new RandomLlama(TestConfigs.Get("gqa"), TensorDType.BF16);
        using var executor = ExecutorChecks.Managed(threads).Create(model, new BlockRange(0, 2));
        using var cache = executor.CreateCache(2, 128);
        var hidden = Accuracy.RandomHidden(2 * model.Config.HiddenSize, 5);
        var prompt = Accuracy.RandomHidden(2 * 30 * model.Config.HiddenSize, 6);
        executor.Forward(prompt, 2, 30, cache);
        // Warm up past the JIT's tiering thresholds: a one-time allocation there is not a per-token one.
        for (var i = 0; i < 60; i++)
        {
            executor.Forward(hidden, 2, 1, cache);
        }

        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 20; i++)
        {
            executor.Forward(hidden, 2, 1, cache);
        }

        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Equal(0, allocated);
        Assert.Equal(110, cache.Length);
    }

    [Theory]
    [InlineData("int8", 1)]
    [InlineData("q4_k", 2)]
    [InlineData("nf4", 2)]
    [InlineData("q8_0", 2)]
    public void QuantizedDecodeStepsAllocateNothingAfterWarmUp(string quant, int batch)
    {
        // hidden 256, intermediate 512: every quantization applies to every tensor (fused kernels for int8, q8_0, q4_k;
        // the chunked path for nf4), with the workers (2 threads, products above the parallel threshold).
        using var model = new RandomLlama(TestConfigs.Get("deep") with { IntermediateSize = 512 });
        var factory = new CpuBlockExecutorFactory(new CpuExecutorOptions { ThreadCount = 2, Quantization = WeightQuantization.Parse(quant), ParallelMinMultiplyAdds = 0 });
        using var executor = factory.Create(model, new BlockRange(0, 2));
        using var cache = executor.CreateCache(batch, 128);
        var hidden = Accuracy.RandomHidden(batch * model.Config.HiddenSize, 5);
        var prompt = Accuracy.RandomHidden(batch * 30 * model.Config.HiddenSize, 6);
        executor.Forward(prompt, batch, 30, cache);
        for (var i = 0; i < 60; i++)
        {
            executor.Forward(hidden, batch, 1, cache);
        }

        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 20; i++)
        {
            executor.Forward(hidden, batch, 1, cache);
        }

        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }

    [Fact]
    public void SubRangeDecodeStepsAllocateNothingAfterWarmUp()
    {
        using var model = new RandomLlama(TestConfigs.Get("gqa", layers: 4), TensorDType.BF16);
        using var executor = ExecutorChecks.Managed(2).Create(model, new BlockRange(0, 4));
        var sub = new BlockRange(1, 3);
        using var cache = executor.CreateCache(2, 128, sub);
        var hidden = Accuracy.RandomHidden(2 * model.Config.HiddenSize, 5);
        var prompt = Accuracy.RandomHidden(2 * 30 * model.Config.HiddenSize, 6);
        executor.Forward(prompt, 2, 30, cache, sub);
        for (var i = 0; i < 60; i++)
        {
            executor.Forward(hidden, 2, 1, cache, sub);
        }

        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 20; i++)
        {
            executor.Forward(hidden, 2, 1, cache, sub);
        }

        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Equal(0, allocated);
        Assert.Equal(110, cache.Length);
    }
}
