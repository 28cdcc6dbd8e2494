using System.Globalization;
using System.Numerics;
using System.Runtime.InteropServices;
using Petals.Tensors;

namespace Petals.Formats.Gguf;

/// <summary>
/// A GGUF file (versions 1, 2 and 3), memory-mapped read-only: the header (metadata and tensor infos) is parsed at
/// open, tensor data are read lazily as views of the mapping.
/// </summary>
/// <remarks>
/// Thread-safe for concurrent reads. Memory returned by <see cref="GetTensorData(GgufTensorInfo)"/> is valid until
/// the file is disposed. Only <see cref="ModelFormatException"/> escapes for malformed content.
/// </remarks>
public sealed class GgufFile : IDisposable
{
    /// <summary>The metadata key of the data alignment.</summary>
    public const string AlignmentKey = "general.alignment";

    /// <summary>The alignment used when <see cref="AlignmentKey"/> is absent.</summary>
    public const int DefaultAlignment = 32;

    private const int MaxDimensions = 4;

    private readonly MappedFile _file;
    private readonly Dictionary<string, GgufTensorInfo> _tensorsByName;
    private readonly Lazy<GgufTokenizerMetadata> _tokenizer;

    private GgufFile(MappedFile file, int version, int alignment, long dataOffset, Dictionary<string, GgufMetadataValue> metadata, List<GgufTensorInfo> tensors)
    {
        _file = file;
        Version = version;
        Alignment = alignment;
        DataOffset = dataOffset;
        Metadata = metadata;
        Tensors = tensors;
        _tensorsByName = new Dictionary<string, GgufTensorInfo>(tensors.Count, StringComparer.Ordinal);
        foreach (var t in tensors)
        {
            _tensorsByName[t.Name] = t;
        }

        _tokenizer = new Lazy<GgufTokenizerMetadata>(ReadTokenizer, LazyThreadSafetyMode.ExecutionAndPublication);
    }

    /// <summary>The file path.</summary>
    public string Path => _file.Path;

    /// <summary>The GGUF version (1, 2 or 3).</summary>
    public int Version { get; }

    /// <summary>The data alignment (<c>general.alignment</c>, default 32).</summary>
    public int Alignment { get; }

    /// <summary>The absolute offset of the tensor data section.</summary>
    public long DataOffset { get; }

    /// <summary>All metadata, by key.</summary>
    public IReadOnlyDictionary<string, GgufMetadataValue> Metadata { get; }

    /// <summary>The tensors, in file order.</summary>
    public IReadOnlyList<GgufTensorInfo> Tensors { get; }

    /// <summary><c>general.architecture</c>, or null when absent.</summary>
    public string? Architecture => GetString("general.architecture");

    /// <summary>The tokenizer metadata (<c>tokenizer.ggml.*</c>), read on first access.</summary>
    /// <exception cref="ModelFormatException">When a tokenizer key has the wrong type or the arrays disagree in length.</exception>
    public GgufTokenizerMetadata Tokenizer => _tokenizer.Value;

    /// <summary>Opens and parses <paramref name="path"/>.</summary>
    /// <param name="path">The GGUF file.</param>
    /// <returns>The open file; dispose it to unmap.</returns>
    /// <exception cref="ModelFormatException">When the file is not a valid GGUF file of version 1 to 3; the message names the field.</exception>
    /// <exception cref="IOException">When the file cannot be read.</exception>
    public static GgufFile Open(string path)
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

    /// <summary>Whether the file has a tensor named <paramref name="name"/>.</summary>
    /// <param name="name">The stored tensor name.</param>
    /// <param name="info">The tensor info when found.</param>
    /// <returns><see langword="true"/> when found.</returns>
    public bool TryGetTensor(string name, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out GgufTensorInfo? info) =>
        _tensorsByName.TryGetValue(name, out info);

    /// <summary>The raw bytes of a tensor, a view of the mapping.</summary>
    /// <param name="tensor">A tensor of this file.</param>
    /// <returns>Exactly <see cref="GgufTensorInfo.ByteSize"/> bytes.</returns>
    /// <exception cref="ModelFormatException">When the tensor is larger than 2 GiB (not addressable as one view).</exception>
    public ReadOnlyMemory<byte> GetTensorData(GgufTensorInfo tensor)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        if (tensor.ByteSize > Array.MaxLength)
        {
            throw new ModelFormatException(Path, tensor.Name, string.Create(CultureInfo.InvariantCulture, $"tensor of {tensor.ByteSize} bytes is larger than one view can address."));
        }

        return _file.Memory(tensor.DataOffset, (int)tensor.ByteSize);
    }

    /// <summary>
    /// Reads a tensor of type F32, F16, BF16 or one of the supported block-quantized types (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1,
    /// Q2_K … Q6_K) as <see cref="float"/> values (block types dequantized with <see cref="BlockQuantization.Dequantize"/>).
    /// </summary>
    /// <param name="tensor">A tensor of this file.</param>
    /// <returns>A new array of <see cref="GgufTensorInfo.ElementCount"/> values.</returns>
    /// <exception cref="ModelFormatException">When the type is not one of those, naming the tensor and its type.</exception>
    public float[] ReadSingles(GgufTensorInfo tensor)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        var data = GetTensorData(tensor).Span;
        var n = checked((int)tensor.ElementCount);
        var result = new float[n];
        switch (tensor.Type)
        {
            case GgufTensorType.F32:
                MemoryMarshal.Cast<byte, float>(data).CopyTo(result);
                break;
            case GgufTensorType.F16:
                TensorConversions.HalfToSingle(data, result);
                break;
            case GgufTensorType.BF16:
                TensorConversions.BFloat16ToSingle(data, result);
                break;
            default:
                BlockQuantization.Dequantize(GgufTensorTypeInfo.ServedAs(tensor.Type) ?? throw UnsupportedType(tensor), data, result);
                break;
        }

        return result;
    }

    /// <summary>The value of <paramref name="key"/>, or null when absent.</summary>
    /// <param name="key">The metadata key.</param>
    /// <returns>The value or null.</returns>
    public GgufMetadataValue? GetValue(string key) => Metadata.TryGetValue(key, out var v) ? v : null;

    /// <summary>A string value, or null when absent.</summary>
    /// <param name="key">The metadata key.</param>
    /// <returns>The string or null.</returns>
    /// <exception cref="ModelFormatException">When the value is not a string.</exception>
    public string? GetString(string key) => GetValue(key) switch
    {
        null => null,
        { Value: string s } => s,
        var v => throw WrongType(key, v, "a string"),
    };

    /// <summary>An integer value of any stored integer type, or null when absent.</summary>
    /// <param name="key">The metadata key.</param>
    /// <returns>The integer or null.</returns>
    /// <exception cref="ModelFormatException">When the value is not an integer or does not fit a <see cref="long"/>.</exception>
    public long? GetInt64(string key)
    {
        var v = GetValue(key);
        if (v is null)
        {
            return null;
        }

        return v.Value switch
        {
            byte x => x,
            sbyte x => x,
            ushort x => x,
            short x => x,
            uint x => x,
            int x => x,
            long x => x,
            ulong x when x <= long.MaxValue => (long)x,
            _ => throw WrongType(key, v, "an integer"),
        };
    }

    /// <summary>An integer value that must fit in an <see cref="int"/>, or null when absent.</summary>
    /// <param name="key">The metadata key.</param>
    /// <returns>The integer or null.</returns>
    /// <exception cref="ModelFormatException">When the value is not an integer or is out of range.</exception>
    public int? GetInt32(string key)
    {
        var v = GetInt64(key);
        if (v is null)
        {
            return null;
        }

        if (v < int.MinValue || v > int.MaxValue)
        {
            throw new ModelFormatException(Path, key, string.Create(CultureInfo.InvariantCulture, $"value {v} does not fit a 32-bit integer."));
        }

        return (int)v.Value;
    }

    /// <summary>A floating-point value (float32 or float64), or null when absent.</summary>
    /// <param name="key">The metadata key.</param>
    /// <returns>The number or null.</returns>
    /// <exception cref="ModelFormatException">When the value is not a floating-point number.</exception>
    public double? GetDouble(string key) => GetValue(key) switch
    {
        null => null,
        { Value: float f } => f,
        { Value: double d } => d,
        var v => throw WrongType(key, v, "a floating-point number"),
    };

    /// <summary>A float32 value (float64 values are narrowed), or null when absent.</summary>
    /// <param name="key">The metadata key.</param>
    /// <returns>The number or null.</returns>
    /// <exception cref="ModelFormatException">When the value is not a floating-point number.</exception>
    public float? GetSingle(string key) => (float?)GetDouble(key);

    /// <summary>A boolean value, or null when absent.</summary>
    /// <param name="key">The metadata key.</param>
    /// <returns>The boolean or null.</returns>
    /// <exception cref="ModelFormatException">When the value is not a boolean.</exception>
    public bool? GetBoolean(string key) => GetValue(key) switch
    {
        null => null,
        { Value: bool b } => b,
        var v => throw WrongType(key, v, "a boolean"),
    };

    /// <summary>A string array, or null when absent. The array is shared: do not modify it.</summary>
    /// <param name="key">The metadata key.</param>
    /// <returns>The array or null.</returns>
    /// <exception cref="ModelFormatException">When the value is not an array of strings.</exception>
    public string[]? GetStringArray(string key) => GetValue(key) switch
    {
        null => null,
        { Value: string[] a } => a,
        var v => throw WrongType(key, v, "an array of strings"),
    };

    /// <summary>A float32 array (float64 arrays are narrowed), or null when absent.</summary>
    /// <param name="key">The metadata key.</param>
    /// <returns>The array or null (shared when stored as float32: do not modify it).</returns>
    /// <exception cref="ModelFormatException">When the value is not an array of floating-point numbers.</exception>
    public float[]? GetSingleArray(string key) => GetValue(key) switch
    {
        null => null,
        { Value: float[] a } => a,
        { Value: double[] a } => Array.ConvertAll(a, x => (float)x),
        var v => throw WrongType(key, v, "an array of floating-point numbers"),
    };

    /// <summary>An integer array whose values fit an <see cref="int"/> (any stored integer type), or null when absent.</summary>
    /// <param name="key">The metadata key.</param>
    /// <returns>The array or null (shared when stored as int32: do not modify it).</returns>
    /// <exception cref="ModelFormatException">When the value is not an array of integers or a value is out of range.</exception>
    public int[]? GetInt32Array(string key)
    {
        var v = GetValue(key);
        return v?.Value switch
        {
            null => null,
            int[] a => a,
            byte[] a => Array.ConvertAll(a, x => (int)x),
            sbyte[] a => Array.ConvertAll(a, x => (int)x),
            ushort[] a => Array.ConvertAll(a, x => (int)x),
            short[] a => Array.ConvertAll(a, x => (int)x),
            uint[] a => Narrow(key, a),
            long[] a => Narrow(key, a),
            ulong[] a => Narrow(key, a),
            _ => throw WrongType(key, v, "an array of integers"),
        };
    }

    /// <inheritdoc />
    public void Dispose() => _file.Dispose();

    internal ModelFormatException UnsupportedType(GgufTensorInfo tensor) =>
        new(Path, tensor.Name, $"tensor type {tensor.Type} is not supported (supported: {GgufTensorTypeInfo.SupportedList}).");

    private int[] Narrow<T>(string key, T[] values)
        where T : IBinaryInteger<T>
    {
        var result = new int[values.Length];
        for (var i = 0; i < values.Length; i++)
        {
            var wide = long.CreateSaturating(values[i]);
            if (wide is < int.MinValue or > int.MaxValue)
            {
                throw new ModelFormatException(Path, key, string.Create(CultureInfo.InvariantCulture, $"element {i} ({values[i]}) does not fit a 32-bit integer."));
            }

            result[i] = (int)wide;
        }

        return result;
    }

    private ModelFormatException WrongType(string key, GgufMetadataValue value, string expected) =>
        new(Path, key, $"expected {expected}, found {(value.ElementType is { } e ? $"an array of {e}" : value.Type.ToString())}.");

    private GgufTokenizerMetadata ReadTokenizer()
    {
        var tokens = GetStringArray("tokenizer.ggml.tokens");
        var scores = GetSingleArray("tokenizer.ggml.scores");
        var types = GetInt32Array("tokenizer.ggml.token_type");
        if (tokens is not null)
        {
            if (scores is not null && scores.Length != tokens.Length)
            {
                throw new ModelFormatException(Path, "tokenizer.ggml.scores", string.Create(CultureInfo.InvariantCulture, $"has {scores.Length} entries but tokenizer.ggml.tokens has {tokens.Length}."));
            }

            if (types is not null && types.Length != tokens.Length)
            {
                throw new ModelFormatException(Path, "tokenizer.ggml.token_type", string.Create(CultureInfo.InvariantCulture, $"has {types.Length} entries but tokenizer.ggml.tokens has {tokens.Length}."));
            }
        }

        return new GgufTokenizerMetadata
        {
            Model = GetString("tokenizer.ggml.model"),
            PreTokenizer = GetString("tokenizer.ggml.pre"),
            Tokens = tokens,
            Scores = scores,
            TokenTypes = types,
            Merges = GetStringArray("tokenizer.ggml.merges"),
            BosTokenId = TokenId("tokenizer.ggml.bos_token_id", tokens),
            EosTokenId = TokenId("tokenizer.ggml.eos_token_id", tokens),
            UnknownTokenId = TokenId("tokenizer.ggml.unknown_token_id", tokens),
            PaddingTokenId = TokenId("tokenizer.ggml.padding_token_id", tokens),
            AddBosToken = GetBoolean("tokenizer.ggml.add_bos_token"),
            AddEosToken = GetBoolean("tokenizer.ggml.add_eos_token"),
            AddSpacePrefix = GetBoolean("tokenizer.ggml.add_space_prefix"),
        };
    }

    private int? TokenId(string key, string[]? tokens)
    {
        var id = GetInt32(key);
        if (id is { } i && (i < 0 || (tokens is not null && i >= tokens.Length)))
        {
            throw new ModelFormatException(Path, key, string.Create(CultureInfo.InvariantCulture, $"token id {i} is outside the vocabulary of {tokens?.Length ?? 0} tokens."));
        }

        return id;
    }

    private static GgufFile Parse(MappedFile file)
    {
        var reader = new GgufHeaderReader(file, version: 3);
        var magic = reader.Take(4, "magic");
        if (!magic.SequenceEqual("GGUF"u8))
        {
            throw reader.Error("magic", "not a GGUF file (the first four bytes are not 'GGUF').");
        }

        var rawVersion = reader.ReadU32("version");
        if (rawVersion is < 1 or > 3)
        {
            throw reader.Error("version", string.Create(CultureInfo.InvariantCulture, $"GGUF version {rawVersion} is not supported (1, 2 and 3 are)."));
        }

        var version = (int)rawVersion;
        reader = new GgufHeaderReader(file, version) { Position = reader.Position };

        // Smallest possible tensor info: empty name, 1 dim, type, offset; smallest metadata entry: empty key, type, 1 byte.
        var tensorCount = reader.ReadCount("tensor_count", reader.CountSize + 4 + reader.CountSize + 4 + 8);
        var kvCount = reader.ReadCount("metadata_kv_count", reader.CountSize + 4 + 1);

        var metadata = new Dictionary<string, GgufMetadataValue>(Math.Min(kvCount, 1024), StringComparer.Ordinal);
        for (var i = 0; i < kvCount; i++)
        {
            var key = reader.ReadString(string.Create(CultureInfo.InvariantCulture, $"metadata entry {i} key"));
            var type = reader.ReadType(key);
            var value = reader.ReadValue(type, key, depth: 0);
            if (!metadata.TryAdd(key, value))
            {
                throw reader.Error(key, "metadata key appears twice.");
            }
        }

        var alignment = DefaultAlignment;
        if (metadata.TryGetValue(AlignmentKey, out var alignValue))
        {
            if (alignValue.Value is not uint a || a == 0 || !BitOperations.IsPow2(a) || a > 1 << 24)
            {
                throw reader.Error(AlignmentKey, $"must be a uint32 power of two, found {alignValue.Type} {alignValue}.");
            }

            alignment = (int)a;
        }

        var pending = new List<(string Name, GgufTensorType Type, long[] Shape, ulong Offset, long Bytes)>(tensorCount);
        var names = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < tensorCount; i++)
        {
            var name = reader.ReadString(string.Create(CultureInfo.InvariantCulture, $"tensor {i} name"));
            if (!names.Add(name))
            {
                throw reader.Error(name, "tensor name appears twice.");
            }

            var dims = reader.ReadU32(name);
            if (dims is 0 or > MaxDimensions)
            {
                throw reader.Error(name, string.Create(CultureInfo.InvariantCulture, $"tensor has {dims} dimensions (1 to {MaxDimensions} are allowed)."));
            }

            var shape = new long[dims];
            long elements = 1;
            for (var d = 0; d < dims; d++)
            {
                var size = version == 1 ? reader.ReadU32(name) : reader.ReadU64(name);
                if (size == 0 || size > long.MaxValue / (ulong)elements)
                {
                    throw reader.Error(name, string.Create(CultureInfo.InvariantCulture, $"dimension {d} has invalid size {size}."));
                }

                elements *= (long)size;

                // GGUF lists the innermost dimension first; row-major shapes list it last.
                shape[dims - 1 - d] = (long)size;
            }

            var rawType = reader.ReadU32(name);
            var type = (GgufTensorType)rawType;
            if (rawType > int.MaxValue || !GgufTensorTypeInfo.TryGetBlock(type, out var blockElements, out var blockBytes))
            {
                throw reader.Error(name, string.Create(CultureInfo.InvariantCulture, $"unknown ggml tensor type {rawType}."));
            }

            if (shape[^1] % blockElements != 0)
            {
                throw reader.Error(name, string.Create(CultureInfo.InvariantCulture, $"rows of {shape[^1]} elements are not a multiple of the {type} block size {blockElements}."));
            }

            var blocks = elements / blockElements;
            if (blocks > long.MaxValue / blockBytes)
            {
                throw reader.Error(name, "tensor size overflows.");
            }

            var offset = reader.ReadU64(name);
            if (offset % (ulong)alignment != 0)
            {
                throw reader.Error(name, string.Create(CultureInfo.InvariantCulture, $"data offset {offset} is not a multiple of the alignment {alignment}."));
            }

            pending.Add((name, type, shape, offset, blocks * blockBytes));
        }

        var dataOffset = (reader.Position + alignment - 1) / alignment * alignment;
        var dataLength = file.Length - dataOffset;
        var tensors = new List<GgufTensorInfo>(tensorCount);
        foreach (var (name, type, shape, offset, bytes) in pending)
        {
            if (dataLength < 0 || offset > (ulong)dataLength || bytes > dataLength - (long)offset)
            {
                throw reader.Error(name, string.Create(CultureInfo.InvariantCulture, $"tensor data [{offset}, {offset + (ulong)bytes}) relative to the data section at {dataOffset} runs past the end of the file ({file.Length} bytes)."));
            }

            tensors.Add(new GgufTensorInfo(name, type, shape, dataOffset + (long)offset, bytes));
        }

        return new GgufFile(file, version, alignment, dataOffset, metadata, tensors);
    }
}
