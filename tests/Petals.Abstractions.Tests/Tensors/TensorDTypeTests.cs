using Petals.Tensors;

namespace Petals.Abstractions.Tests.Tensors;

public sealed class TensorDTypeTests
{
    [Theory]
    [InlineData(TensorDType.F32, 10, 40)]
    [InlineData(TensorDType.F16, 10, 20)]
    [InlineData(TensorDType.BF16, 10, 20)]
    [InlineData(TensorDType.I8, 10, 10)]
    [InlineData(TensorDType.I32, 10, 40)]
    [InlineData(TensorDType.I64, 10, 80)]
    [InlineData(TensorDType.Q8_0, 64, 68)]
    public void ByteSizes(TensorDType dtype, long elements, long bytes) => Assert.Equal(bytes, dtype.ByteSize(elements));

    [Fact]
    public void Q8_0NeedsWholeBlocks()
    {
        var ex = Assert.Throws<ArgumentException>(() => TensorDType.Q8_0.ByteSize(33));
        Assert.Contains("32", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void DescriptorCountsElementsAndBytesAndOverflowIsChecked()
    {
        var d = new TensorDescriptor("w", TensorDType.BF16, [3, 4, 5]);
        Assert.Equal(60, d.ElementCount);
        Assert.Equal(120, d.ByteSize);
        Assert.Equal("w BF16[3, 4, 5]", d.ToString());
        var huge = new TensorDescriptor("h", TensorDType.F32, [long.MaxValue / 2, 4]);
        Assert.Throws<OverflowException>(() => huge.ByteSize);
    }
}
