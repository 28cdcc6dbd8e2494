using System.Buffers;
using System.Runtime.InteropServices;

namespace Petals.Backends.Cpu.Native;

/// <summary>
/// Copies weights into memory that Linux backs with 2 MiB transparent huge pages: a 2 MiB-aligned native allocation,
/// rounded up to whole huge pages and advised with <c>madvise(MADV_HUGEPAGE)</c> (which works where the system's
/// <c>transparent_hugepage/enabled</c> is <c>always</c> or <c>madvise</c>). Decode streams every weight once per token, so
/// with 4 KiB pages it takes one TLB miss per 4 KiB read; a huge page covers 512 times as much. Elsewhere (other systems,
/// or a refused advice) the copy is an ordinary 64-byte-aligned allocation: nothing fails, only the gain is lost.
/// </summary>
internal static partial class HugePages
{
    /// <summary>The huge page size on x86-64 and arm64 Linux.</summary>
    public const int PageBytes = 2 * 1024 * 1024;

    private const int MadviseHugePage = 14;

    /// <summary>
    /// Copies <paramref name="source"/> into a new native allocation (huge pages where the system allows them). The
    /// returned owner's <see cref="IMemoryOwner{T}.Memory"/> is exactly the copy, pinning it is free, and disposing the
    /// owner frees the allocation (after which the memory must not be used).
    /// </summary>
    public static unsafe IMemoryOwner<byte> Copy(ReadOnlySpan<byte> source)
    {
        var owner = Allocate(source.Length);
        source.CopyTo(owner.Memory.Span);
        return owner;
    }

    /// <summary>
    /// A new uninitialized native allocation of <paramref name="length"/> bytes (huge pages where the system allows them),
    /// for weights that are produced in place (quantized at load). Disposing the owner frees it.
    /// </summary>
    public static unsafe IMemoryOwner<byte> Allocate(int length)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        byte* pointer;
        bool advised;
        if (OperatingSystem.IsLinux() && length > 0)
        {
            var rounded = ((nuint)length + PageBytes - 1) / PageBytes * PageBytes;
            pointer = (byte*)NativeMemory.AlignedAlloc(rounded, PageBytes);
            // Advise before the first touch: the pages are then faulted in as huge pages by the copy below.
            advised = Madvise(pointer, rounded, MadviseHugePage) == 0;
        }
        else
        {
            pointer = (byte*)NativeMemory.AlignedAlloc((nuint)Math.Max(length, 1), 64);
            advised = false;
        }

        return new NativeBuffer(pointer, length, advised);
    }

    [LibraryImport("libc", EntryPoint = "madvise")]
    private static unsafe partial int Madvise(void* address, nuint length, int advice);

    /// <summary>An owned native allocation exposed as <see cref="Memory{T}"/>.</summary>
    internal sealed unsafe class NativeBuffer : MemoryManager<byte>, IMemoryOwner<byte>
    {
        private byte* _pointer;
        private readonly int _length;

        public NativeBuffer(byte* pointer, int length, bool hugePagesAdvised)
        {
            _pointer = pointer;
            _length = length;
            HugePagesAdvised = hugePagesAdvised;
        }

        /// <summary>Whether the kernel accepted the huge-page advice for this allocation.</summary>
        public bool HugePagesAdvised { get; }

        /// <summary>The start of the allocation (2 MiB-aligned when <see cref="HugePagesAdvised"/>).</summary>
        public nint Address => (nint)_pointer;

        public override Span<byte> GetSpan()
        {
            ObjectDisposedException.ThrowIf(_pointer == null, this);
            return new Span<byte>(_pointer, _length);
        }

        public override MemoryHandle Pin(int elementIndex = 0)
        {
            ObjectDisposedException.ThrowIf(_pointer == null, this);
            ArgumentOutOfRangeException.ThrowIfNegative(elementIndex);
            ArgumentOutOfRangeException.ThrowIfGreaterThan(elementIndex, _length);
            return new MemoryHandle(_pointer + elementIndex);
        }

        public override void Unpin()
        {
        }

        protected override void Dispose(bool disposing)
        {
            if (_pointer != null)
            {
                NativeMemory.AlignedFree(_pointer);
                _pointer = null;
            }
        }
    }
}
