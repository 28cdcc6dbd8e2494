using System.Buffers;
using System.Globalization;
using System.Text.Json;
using Petals.Tensors;

namespace Petals.Formats.Safetensors;

/// <summary>
/// Streams tensors into a safetensors file: the header is written first from the declared descriptors, then each
/// tensor's data in declaration order, so a model larger than memory can be written one tensor at a time.
/// The header is padded with spaces so that the data starts at a multiple of 8 bytes.
/// </summary>
/// <remarks>
/// Not thread-safe. Call <see cref="Complete"/> after the last tensor; disposing an incomplete writer deletes the
/// partial file.
/// </remarks>
public sealed class SafetensorsWriter : IDisposable
{
    private readonly FileStream _stream;
    private readonly IReadOnlyList<TensorDescriptor> _tensors;
    private int _next;
    private bool _completed;
    private bool _disposed;

    private SafetensorsWriter(string path, FileStream stream, IReadOnlyList<TensorDescriptor> tensors)
    {
        Path = path;
        _stream = stream;
        _tensors = tensors;
    }

    /// <summary>The file being written.</summary>
    public string Path { get; }

    /// <summary>Creates (or overwrites) <paramref name="path"/> and writes the header.</summary>
    /// <param name="path">The output file.</param>
    /// <param name="tensors">Every tensor the file will hold, in the order their data will be written.</param>
    /// <param name="metadata">Optional <c>__metadata__</c> strings.</param>
    /// <returns>The writer.</returns>
    /// <exception cref="ArgumentException">When names repeat, a name is <c>__metadata__</c>, or a dtype cannot be stored (Q8_0).</exception>
    public static SafetensorsWriter Create(string path, IReadOnlyList<TensorDescriptor> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentNullException.ThrowIfNull(tensors);
        var header = BuildHeader(tensors, metadata);
        var stream = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20);
        try
        {
            Span<byte> length = stackalloc byte[8];
            System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)header.Length);
            stream.Write(length);
            stream.Write(header);
            return new SafetensorsWriter(path, stream, tensors);
        }
        catch
        {
            stream.Dispose();
            File.Delete(path);
            throw;
        }
    }

    /// <summary>Writes a whole file from in-memory tensors.</summary>
    /// <param name="path">The output file.</param>
    /// <param name="tensors">The tensors, written in this order.</param>
    /// <param name="metadata">Optional <c>__metadata__</c> strings.</param>
    public static void Write(string path, IReadOnlyList<WeightTensor> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        var descriptors = new TensorDescriptor[tensors.Count];
        for (var i = 0; i < descriptors.Length; i++)
        {
            descriptors[i] = tensors[i].Descriptor;
        }

        using var writer = Create(path, descriptors, metadata);
        foreach (var t in tensors)
        {
            writer.WriteTensor(t.Descriptor.Name, t.Data.Span);
        }

        writer.Complete();
    }

    /// <summary>Writes the data of the next tensor.</summary>
    /// <param name="name">The tensor's name: must be the next one declared.</param>
    /// <param name="data">Exactly its <see cref="TensorDescriptor.ByteSize"/> bytes, little-endian.</param>
    /// <exception cref="InvalidOperationException">When the name is not the next declared one, or all tensors were written.</exception>
    /// <exception cref="ArgumentException">When the data size is wrong.</exception>
    public void WriteTensor(string name, ReadOnlySpan<byte> data)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_next >= _tensors.Count || _tensors[_next].Name != name)
        {
            throw new InvalidOperationException($"{Path}: tensor '{name}' written out of order; expected '{(_next < _tensors.Count ? _tensors[_next].Name : "(none: all written)")}'.");
        }

        var expected = _tensors[_next].ByteSize;
        if (data.Length != expected)
        {
            throw new ArgumentException(string.Create(CultureInfo.InvariantCulture, $"{Path}: tensor '{name}' needs {expected} bytes, got {data.Length}."), nameof(data));
        }

        _stream.Write(data);
        _next++;
    }

    /// <summary>Checks that every tensor was written and flushes the file to disk.</summary>
    /// <exception cref="InvalidOperationException">When tensors are missing.</exception>
    public void Complete()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_next != _tensors.Count)
        {
            throw new InvalidOperationException(string.Create(CultureInfo.InvariantCulture, $"{Path}: only {_next} of {_tensors.Count} tensors were written; next is '{_tensors[_next].Name}'."));
        }

        _stream.Flush(flushToDisk: true);
        _completed = true;
    }

    /// <inheritdoc />
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        _stream.Dispose();
        if (!_completed)
        {
            File.Delete(Path);
        }
    }

    private static byte[] BuildHeader(IReadOnlyList<TensorDescriptor> tensors, IReadOnlyDictionary<string, string>? metadata)
    {
        var buffer = new ArrayBufferWriter<byte>();
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            if (metadata is { Count: > 0 })
            {
                json.WriteStartObject("__metadata__");
                foreach (var (k, v) in metadata)
                {
                    json.WriteString(k, v);
                }

                json.WriteEndObject();
            }

            var names = new HashSet<string>(StringComparer.Ordinal);
            long offset = 0;
            foreach (var t in tensors)
            {
                if (t.Name == "__metadata__" || !names.Add(t.Name))
                {
                    throw new ArgumentException($"Tensor name '{t.Name}' is reserved or repeated.", nameof(tensors));
                }

                var size = t.ByteSize;
                json.WriteStartObject(t.Name);
                json.WriteString("dtype", SafetensorsDTypes.ToText(t.DType));
                json.WriteStartArray("shape");
                foreach (var d in t.Shape)
                {
                    json.WriteNumberValue(d);
                }

                json.WriteEndArray();
                json.WriteStartArray("data_offsets");
                json.WriteNumberValue(offset);
                json.WriteNumberValue(offset + size);
                json.WriteEndArray();
                json.WriteEndObject();
                offset += size;
            }

            json.WriteEndObject();
        }

        var padded = (buffer.WrittenCount + 7) / 8 * 8;
        var header = new byte[padded];
        buffer.WrittenSpan.CopyTo(header);
        header.AsSpan(buffer.WrittenCount).Fill((byte)' ');
        return header;
    }
}
