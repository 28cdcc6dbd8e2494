using System.Buffers.Binary;
using System.Globalization;
using System.Text.Json;
using Petals.Tensors;

namespace Petals.Formats.Safetensors;

/// <summary>
/// A safetensors file, memory-mapped read-only: an 8-byte little-endian header length, a JSON header describing
/// each tensor (<c>dtype</c>, <c>shape</c>, <c>data_offsets</c>) plus optional <c>__metadata__</c>, then the data.
/// Dtypes F32, F16, BF16, I8, I32 and I64 are read.
/// </summary>
/// <remarks>
/// The header is validated strictly at open (lengths, JSON, dtypes, offsets against shapes, overlaps). Thread-safe for
/// reads; tensor memory is valid until the file is disposed.
/// </remarks>
public sealed class SafetensorsFile : IDisposable
{
    /// <summary>The largest header accepted (100 MB, as the reference implementation).</summary>
    public const long MaxHeaderLength = 100_000_000;

    private readonly MappedFile _file;
    private readonly Dictionary<string, (TensorDescriptor Descriptor, long Begin)> _tensors;

    private SafetensorsFile(MappedFile file, long dataOffset, Dictionary<string, (TensorDescriptor, long)> tensors, Dictionary<string, string> metadata)
    {
        _file = file;
        DataOffset = dataOffset;
        _tensors = tensors;
        Metadata = metadata;
        var descriptors = new Dictionary<string, TensorDescriptor>(tensors.Count, StringComparer.Ordinal);
        foreach (var (name, (d, _)) in tensors)
        {
            descriptors[name] = d;
        }

        Tensors = descriptors;
    }

    /// <summary>The file path.</summary>
    public string Path => _file.Path;

    /// <summary>The absolute offset where the data buffer starts (8 + header length).</summary>
    public long DataOffset { get; }

    /// <summary>The tensors, by name.</summary>
    public IReadOnlyDictionary<string, TensorDescriptor> Tensors { get; }

    /// <summary>The <c>__metadata__</c> string map (empty when absent).</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>Opens and validates <paramref name="path"/>.</summary>
    /// <param name="path">The safetensors file.</param>
    /// <returns>The open file; dispose it to unmap.</returns>
    /// <exception cref="ModelFormatException">When the header is malformed or inconsistent; the message names the file and the field or tensor.</exception>
    /// <exception cref="IOException">When the file cannot be read.</exception>
    public static SafetensorsFile Open(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        var file = MappedFile.Open(path);
        try
        {
            return Parse(file);
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    /// <summary>The raw little-endian bytes of tensor <paramref name="name"/>, a view of the mapping.</summary>
    /// <param name="name">The tensor name.</param>
    /// <returns>Exactly <see cref="TensorDescriptor.ByteSize"/> bytes.</returns>
    /// <exception cref="KeyNotFoundException">When there is no such tensor.</exception>
    /// <exception cref="ModelFormatException">When the tensor is larger than 2 GiB (not addressable as one view).</exception>
    public ReadOnlyMemory<byte> GetTensorData(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        if (!_tensors.TryGetValue(name, out var entry))
        {
            throw new KeyNotFoundException($"{Path}: no tensor '{name}'.");
        }

        var size = entry.Descriptor.ByteSize;
        if (size > Array.MaxLength)
        {
            throw new ModelFormatException(Path, name, string.Create(CultureInfo.InvariantCulture, $"tensor of {size} bytes is larger than one view can address."));
        }

        return _file.Memory(DataOffset + entry.Begin, (int)size);
    }

    /// <summary>Returns the tensor <paramref name="name"/> with its descriptor.</summary>
    /// <param name="name">The tensor name.</param>
    /// <returns>The tensor, its data a view of the mapping.</returns>
    /// <exception cref="KeyNotFoundException">When there is no such tensor.</exception>
    public WeightTensor GetTensor(string name) => new(Tensors.TryGetValue(name, out var d) ? d : throw new KeyNotFoundException($"{Path}: no tensor '{name}'."), GetTensorData(name));

    /// <inheritdoc />
    public void Dispose() => _file.Dispose();

    private static SafetensorsFile Parse(MappedFile file)
    {
        var path = file.Path;
        if (file.Length < 8)
        {
            throw new ModelFormatException(path, "header length", string.Create(CultureInfo.InvariantCulture, $"the file has {file.Length} bytes, fewer than the 8-byte header length (truncated file?)."));
        }

        var headerLength = BinaryPrimitives.ReadUInt64LittleEndian(file.Span(0, 8));
        if (headerLength > MaxHeaderLength)
        {
            throw new ModelFormatException(path, "header length", string.Create(CultureInfo.InvariantCulture, $"header length {headerLength} exceeds the cap of {MaxHeaderLength} bytes."));
        }

        if (headerLength > (ulong)(file.Length - 8))
        {
            throw new ModelFormatException(path, "header length", string.Create(CultureInfo.InvariantCulture, $"header length {headerLength} runs past the end of the file ({file.Length} bytes; truncated file?)."));
        }

        if (headerLength < 2)
        {
            throw new ModelFormatException(path, "header length", string.Create(CultureInfo.InvariantCulture, $"header length {headerLength} is too short for a JSON object."));
        }

        var dataOffset = 8 + (long)headerLength;
        var dataLength = file.Length - dataOffset;
        var header = file.Memory(8, (int)headerLength);
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(header, new JsonDocumentOptions { MaxDepth = 16 });
        }
        catch (JsonException ex)
        {
            throw new ModelFormatException(path, "header", $"the header is not valid JSON: {ex.Message}", ex);
        }

        using (doc)
        {
            try
            {
                return ParseHeader(file, doc.RootElement, dataOffset, dataLength);
            }
            catch (InvalidOperationException ex)
            {
                // JsonElement reports invalid UTF-8 in names and strings this way.
                throw new ModelFormatException(path, "header", $"the header holds invalid text: {ex.Message}", ex);
            }
        }
    }

    private static SafetensorsFile ParseHeader(MappedFile file, JsonElement root, long dataOffset, long dataLength)
    {
        var path = file.Path;
        if (root.ValueKind != JsonValueKind.Object)
        {
            throw new ModelFormatException(path, "header", $"the header is a JSON {root.ValueKind}, not an object.");
        }

        var tensors = new Dictionary<string, (TensorDescriptor, long)>(StringComparer.Ordinal);
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        var ranges = new List<(long Begin, long End, string Name)>();
        foreach (var property in root.EnumerateObject())
        {
            var name = property.Name;
            if (name == "__metadata__")
            {
                ReadMetadata(path, property.Value, metadata);
                continue;
            }

            if (tensors.ContainsKey(name))
            {
                throw new ModelFormatException(path, name, "tensor appears twice in the header.");
            }

            var (descriptor, begin, end) = ReadTensor(path, name, property.Value, dataLength);
            tensors.Add(name, (descriptor, begin));
            ranges.Add((begin, end, name));
        }

        ranges.Sort((a, b) => a.Begin != b.Begin ? a.Begin.CompareTo(b.Begin) : a.End.CompareTo(b.End));
        for (var i = 1; i < ranges.Count; i++)
        {
            if (ranges[i].Begin < ranges[i - 1].End)
            {
                throw new ModelFormatException(path, ranges[i].Name, $"data overlaps tensor '{ranges[i - 1].Name}'.");
            }
        }

        return new SafetensorsFile(file, dataOffset, tensors, metadata);
    }

    private static void ReadMetadata(string path, JsonElement element, Dictionary<string, string> metadata)
    {
        if (element.ValueKind != JsonValueKind.Object)
        {
            throw new ModelFormatException(path, "__metadata__", $"must be an object of strings, found a JSON {element.ValueKind}.");
        }

        foreach (var p in element.EnumerateObject())
        {
            if (p.Value.ValueKind != JsonValueKind.String)
            {
                throw new ModelFormatException(path, "__metadata__." + p.Name, $"metadata values must be strings, found a JSON {p.Value.ValueKind}.");
            }

            metadata[p.Name] = p.Value.GetString()!;
        }
    }

    private static (TensorDescriptor Descriptor, long Begin, long End) ReadTensor(string path, string name, JsonElement element, long dataLength)
    {
        if (element.ValueKind != JsonValueKind.Object)
        {
            throw new ModelFormatException(path, name, $"tensor entry must be an object, found a JSON {element.ValueKind}.");
        }

        if (!element.TryGetProperty("dtype", out var dtypeElement) || dtypeElement.ValueKind != JsonValueKind.String)
        {
            throw new ModelFormatException(path, name, "tensor entry lacks a string 'dtype'.");
        }

        var dtypeText = dtypeElement.GetString()!;
        if (!SafetensorsDTypes.TryParse(dtypeText, out var dtype))
        {
            throw new ModelFormatException(path, name, $"dtype '{dtypeText}' is unknown or unsupported (F32, F16, BF16, I8, I32, I64 are read).");
        }

        if (!element.TryGetProperty("shape", out var shapeElement) || shapeElement.ValueKind != JsonValueKind.Array)
        {
            throw new ModelFormatException(path, name, "tensor entry lacks an array 'shape'.");
        }

        var rank = shapeElement.GetArrayLength();
        if (rank > 8)
        {
            throw new ModelFormatException(path, name, string.Create(CultureInfo.InvariantCulture, $"shape has {rank} dimensions; at most 8 are accepted."));
        }

        var shape = new long[rank];
        long elements = 1;
        var i = 0;
        foreach (var dim in shapeElement.EnumerateArray())
        {
            if (dim.ValueKind != JsonValueKind.Number || !dim.TryGetInt64(out var size) || size < 0)
            {
                throw new ModelFormatException(path, name, $"shape entry {i} ({dim.GetRawText()}) is not a non-negative integer.");
            }

            if (size != 0 && elements > long.MaxValue / 8 / size)
            {
                throw new ModelFormatException(path, name, "the shape's element count overflows.");
            }

            elements *= size;
            shape[i++] = size;
        }

        if (!element.TryGetProperty("data_offsets", out var offsetsElement) || offsetsElement.ValueKind != JsonValueKind.Array || offsetsElement.GetArrayLength() != 2)
        {
            throw new ModelFormatException(path, name, "tensor entry lacks 'data_offsets' [begin, end].");
        }

        var begin = Offset(offsetsElement[0]);
        var end = Offset(offsetsElement[1]);
        if (end < begin)
        {
            throw new ModelFormatException(path, name, string.Create(CultureInfo.InvariantCulture, $"data_offsets [{begin}, {end}] end before they begin."));
        }

        if (end > dataLength)
        {
            throw new ModelFormatException(path, name, string.Create(CultureInfo.InvariantCulture, $"data_offsets [{begin}, {end}] run past the end of the data ({dataLength} bytes; truncated file?)."));
        }

        var expected = dtype.ByteSize(elements);
        if (end - begin != expected)
        {
            throw new ModelFormatException(path, name, string.Create(CultureInfo.InvariantCulture, $"data_offsets [{begin}, {end}] hold {end - begin} bytes but {dtypeText}[{string.Join(", ", shape)}] needs {expected}."));
        }

        foreach (var p in element.EnumerateObject())
        {
            if (p.Name is not ("dtype" or "shape" or "data_offsets"))
            {
                throw new ModelFormatException(path, name, $"unexpected field '{p.Name}' in the tensor entry.");
            }
        }

        return (new TensorDescriptor(name, dtype, shape), begin, end);

        long Offset(JsonElement e)
        {
            if (e.ValueKind != JsonValueKind.Number || !e.TryGetInt64(out var v) || v < 0)
            {
                throw new ModelFormatException(path, name, $"data offset {e.GetRawText()} is not a non-negative integer.");
            }

            return v;
        }
    }
}
