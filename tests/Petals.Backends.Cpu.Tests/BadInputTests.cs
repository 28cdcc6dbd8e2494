using Petals.Models;
using Petals.Tensors;

namespace Petals.Backends.Cpu.Tests;

/// <summary>Bad input is refused with precise exceptions.</summary>
public sealed class BadInputTests
{
    [Fact]
    public void WrongHiddenLengthIsRejected()
    {
        using var model = new RandomLlama(TestConfigs.Get("mha"));
        using var executor = ExecutorChecks.Managed().Create(model, new BlockRange(0, 1));
        var ex = Assert.Throws<ArgumentException>(() => executor.Forward(new float[(2 * 3 * 64) - 1], 2, 3, null));
        Assert.Equal("hidden", ex.ParamName);
        Assert.Contains("384", ex.Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentOutOfRangeException>(() => executor.Forward(new float[64], 0, 1, null));
        Assert.Throws<ArgumentOutOfRangeException>(() => executor.Forward(new float[64], 1, 0, null));
    }

    [Fact]
    public void BatchMismatchWithTheCacheIsRejected()
    {
        using var model = new RandomLlama(TestConfigs.Get("mha"));
        using var executor = ExecutorChecks.Managed().Create(model, new BlockRange(0, 1));
        using var cache = executor.CreateCache(2, 4);
        var ex = Assert.Throws<ArgumentException>(() => executor.Forward(new float[3 * 64], 3, 1, cache));
        Assert.Contains("2", ex.Message, StringComparison.Ordinal);
        Assert.Equal(0, cache.Length);
    }

    [Fact]
    public void CacheOverflowIsRejectedAndLeavesTheCacheUnchanged()
    {
        using var model = new RandomLlama(TestConfigs.Get("mha"));
        using var executor = ExecutorChecks.Managed().Create(model, new BlockRange(0, 1));
        using var cache = executor.CreateCache(1, 4);
        executor.Forward(new float[3 * 64], 1, 3, cache);
        var ex = Assert.Throws<InvalidOperationException>(() => executor.Forward(new float[2 * 64], 1, 2, cache));
        Assert.Contains("4", ex.Message, StringComparison.Ordinal);
        Assert.Equal(3, cache.Length);
        executor.Forward(new float[64], 1, 1, cache);
        Assert.Equal(4, cache.Length);
    }

    [Fact]
    public void ForeignOrDisposedCachesAreRejected()
    {
        using var model = new RandomLlama(TestConfigs.Get("mha"));
        using var a = ExecutorChecks.Managed().Create(model, new BlockRange(0, 1));
        using var b = ExecutorChecks.Managed().Create(model, new BlockRange(0, 1));
        using var cache = b.CreateCache(1, 4);
        Assert.Throws<ArgumentException>(() => a.Forward(new float[64], 1, 1, cache));
        cache.Dispose();
        Assert.Throws<ObjectDisposedException>(() => b.Forward(new float[64], 1, 1, cache));
        Assert.Throws<ArgumentOutOfRangeException>(() => a.CreateCache(0, 4));
        Assert.Throws<ArgumentOutOfRangeException>(() => a.CreateCache(1, 0));
    }

    [Fact]
    public void ReorderValidatesIds()
    {
        using var model = new RandomLlama(TestConfigs.Get("mha"));
        using var executor = ExecutorChecks.Managed().Create(model, new BlockRange(0, 1));
        using var cache = executor.CreateCache(2, 4);
        Assert.Throws<ArgumentException>(() => cache.Reorder([0]));
        var ex = Assert.Throws<ArgumentException>(() => cache.Reorder([0, 2]));
        Assert.Contains("hypoIds[1]", ex.Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentException>(() => cache.Reorder([-1, 0]));
    }

    [Fact]
    public void MissingTensorIsNamed()
    {
        using var model = new RandomLlama(TestConfigs.Get("mha"));
        model.Remove("model.layers.1.mlp.up_proj.weight");
        var ex = Assert.Throws<InvalidDataException>(() => ExecutorChecks.Managed().Create(model, new BlockRange(0, 2)));
        Assert.Contains("model.layers.1.mlp.up_proj.weight", ex.Message, StringComparison.Ordinal);
        Assert.Contains(model.Source, ex.Message, StringComparison.Ordinal);

        // Outside the span, the missing tensor does not matter.
        using var executor = ExecutorChecks.Managed().Create(model, new BlockRange(0, 1));
        Assert.NotNull(executor);
    }

    [Theory]
    [InlineData("model.layers.0.self_attn.k_proj.weight", new long[] { 64, 64 }, TensorDType.F32, "[64, 64]")]
    [InlineData("model.layers.0.mlp.down_proj.weight", new long[] { 160, 64 }, TensorDType.F32, "[160, 64]")]
    [InlineData("model.layers.0.input_layernorm.weight", new long[] { 63 }, TensorDType.F32, "[63]")]
    [InlineData("model.layers.0.self_attn.q_proj.weight", new long[] { 64, 64 }, TensorDType.I32, "I32")]
    public void WrongShapeOrDTypeIsNamed(string name, long[] shape, TensorDType dtype, string detail)
    {
        var config = TestConfigs.Get("gqa");
        using var model = new RandomLlama(config);
        model.Replace(name, dtype, shape);
        var ex = Assert.Throws<InvalidDataException>(() => ExecutorChecks.Managed().Create(model, new BlockRange(0, 1)));
        Assert.Contains(name, ex.Message, StringComparison.Ordinal);
        Assert.Contains(detail, ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void SpanPastTheLastBlockIsRejected()
    {
        using var model = new RandomLlama(TestConfigs.Get("mha"));
        Assert.Throws<ArgumentOutOfRangeException>(() => ExecutorChecks.Managed().Create(model, new BlockRange(1, 3)));
    }

    [Fact]
    public void UnsupportedRopeScalingIsNamed()
    {
        var config = TestConfigs.Get("mha") with { RopeScaling = new RopeScaling("yarn", 4) };
        using var model = new RandomLlama(config);
        var ex = Assert.Throws<InvalidDataException>(() => ExecutorChecks.Managed().Create(model, new BlockRange(0, 1)));
        Assert.Contains("rope_scaling.type", ex.Message, StringComparison.Ordinal);
        Assert.Contains("yarn", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void InvalidOptionsAreRejected()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new CpuBlockExecutorFactory(new CpuExecutorOptions { ThreadCount = 0 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => new CpuBlockExecutorFactory(new CpuExecutorOptions { NativeBlasMinTokens = 0 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => new CpuBlockExecutorFactory(new CpuExecutorOptions { NativeBlas = (NativeBlasMode)7 }));
    }

    [Fact]
    public void DisposedExecutorRefusesWorkAndExposesItsOptions()
    {
        using var model = new RandomLlama(TestConfigs.Get("mha"));
        var executor = new CpuBlockExecutorFactory(new CpuExecutorOptions { ThreadCount = 3, NativeBlas = NativeBlasMode.Never }).Create(model, new BlockRange(0, 1));
        var options = Assert.IsType<CpuExecutorOptions>(executor.GetService(typeof(CpuExecutorOptions)));
        Assert.Equal(3, options.ThreadCount);
        Assert.Same(executor, executor.GetService(typeof(Petals.Execution.IBlockExecutor)));
        Assert.Null(executor.GetService(typeof(string)));
        executor.Dispose();
        Assert.Throws<ObjectDisposedException>(() => executor.Forward(new float[64], 1, 1, null));
        executor.Dispose();
    }
}
