using System.Buffers;
using System.IO.MemoryMappedFiles;

namespace Petals.Formats;

/// <summary>
/// A read-only memory mapping of a whole file. Slices are handed out as <see cref="ReadOnlyMemory{T}"/> views
/// that stay valid until the mapping is disposed.
/// </summary>
internal sealed unsafe class MappedFile : IDisposable
{
    private readonly MemoryMappedFile? _map;
    private readonly MemoryMappedViewAccessor? _view;
    private byte* _pointer;
    private int _disposed;

    private MappedFile(string path, MemoryMappedFile? map, MemoryMappedViewAccessor? view, byte* pointer, long length)
    {
        Path = path;
        _map = map;
        _view = view;
        _pointer = pointer;
        Length = length;
    }

    /// <summary>The file path.</summary>
    public string Path { get; }

    /// <summary>The file length in bytes.</summary>
    public long Length { get; }

    /// <summary>Maps <paramref name="path"/> read-only. An empty file yields an empty mapping.</summary>
    public static MappedFile Open(string path)
    {
        var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.None);
        MemoryMappedFile? map = null;
        MemoryMappedViewAccessor? view = null;
        try
        {
            var length = stream.Length;
            if (length == 0)
            {
                stream.Dispose();
                return new MappedFile(path, null, null, null, 0);
            }

            map = MemoryMappedFile.CreateFromFile(stream, null, 0, MemoryMappedFileAccess.Read, HandleInheritability.None, leaveOpen: false);
            view = map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
            byte* pointer = null;
            view.SafeMemoryMappedViewHandle.AcquirePointer(ref pointer);
            return new MappedFile(path, map, view, pointer + view.PointerOffset, length);
        }
        catch
        {
            view?.Dispose();
            map?.Dispose();
            stream.Dispose();
            throw;
        }
    }

    /// <summary>A span over <paramref name="length"/> bytes at <paramref name="offset"/>; the caller has checked the range.</summary>
    public ReadOnlySpan<byte> Span(long offset, int length)
    {
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        CheckRange(offset, length);
        return length == 0 ? [] : new ReadOnlySpan<byte>(_pointer + offset, length);
    }

    /// <summary>A memory view over <paramref name="length"/> bytes at <paramref name="offset"/>; the caller has checked the range.</summary>
    public ReadOnlyMemory<byte> Memory(long offset, int length)
    {
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        CheckRange(offset, length);
        return length == 0 ? ReadOnlyMemory<byte>.Empty : new Manager(_pointer + offset, length).Memory;
    }

    /// <summary>The raw pointer at <paramref name="offset"/> (header parsing of files over 2 GiB).</summary>
    public byte* Pointer(long offset)
    {
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        return _pointer + offset;
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        if (_view is not null)
        {
            _view.SafeMemoryMappedViewHandle.ReleasePointer();
            _view.Dispose();
        }

        _map?.Dispose();
        _pointer = null;
    }

    private void CheckRange(long offset, int length)
    {
        if (offset < 0 || length < 0 || offset > Length - length)
        {
            throw new ArgumentOutOfRangeException(nameof(offset), $"Range [{offset}, {offset + length}) lies outside {Path} ({Length} bytes).");
        }
    }

    /// <summary>Exposes unmanaged mapped memory as <see cref="Memory{T}"/>; the mapping owns the memory.</summary>
    private sealed class Manager(byte* pointer, int length) : MemoryManager<byte>
    {
        public override Span<byte> GetSpan() => new(pointer, length);

        public override MemoryHandle Pin(int elementIndex = 0)
        {
            ArgumentOutOfRangeException.ThrowIfNegative(elementIndex);
            ArgumentOutOfRangeException.ThrowIfGreaterThan(elementIndex, length);
            return new MemoryHandle(pointer + elementIndex);
        }

        public override void Unpin()
        {
        }

        protected override void Dispose(bool disposing)
        {
        }
    }
}
