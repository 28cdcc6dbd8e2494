using System.Buffers;
using Petals.Backends.Cpu.Native;

namespace Petals.Backends.Cpu.Tests.Native;

public sealed class HugePagesTests
{
    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(4099)]
    [InlineData(HugePages.PageBytes + 17)]
    public void CopyHoldsExactlyTheSourceBytes(int length)
    {
        var source = new byte[length];
        new Random(length).NextBytes(source);
        using var owner = HugePages.Copy(source);
        Assert.Equal(length, owner.Memory.Length);
        Assert.True(owner.Memory.Span.SequenceEqual(source));
    }

    [Fact]
    public unsafe void OnLinuxTheCopyIsHugePageAlignedAndAdvised()
    {
        Assert.SkipUnless(OperatingSystem.IsLinux(), "Huge pages are advised on Linux only.");
        using var owner = HugePages.Copy(new byte[3 * 1024 * 1024]);
        var buffer = Assert.IsType<HugePages.NativeBuffer>(owner);
        Assert.True(buffer.HugePagesAdvised, "madvise(MADV_HUGEPAGE) was refused.");
        Assert.Equal(0, buffer.Address % HugePages.PageBytes);
        using var pin = owner.Memory.Pin();
        Assert.Equal(buffer.Address, (nint)pin.Pointer);
    }

    [Fact]
    public void PinningPastTheEndAndUseAfterDisposeAreRejected()
    {
        var owner = HugePages.Copy(new byte[8]);
        var manager = Assert.IsAssignableFrom<MemoryManager<byte>>(owner);
        Assert.Throws<ArgumentOutOfRangeException>(() => manager.Pin(9));
        owner.Dispose();
        Assert.Throws<ObjectDisposedException>(() => manager.GetSpan());
        owner.Dispose(); // idempotent
    }
}
