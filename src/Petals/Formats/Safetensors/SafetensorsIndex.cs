using System.Text.Json;

namespace Petals.Formats.Safetensors;

/// <summary>
/// The index of a sharded safetensors checkpoint (<c>model.safetensors.index.json</c>): which shard file holds each tensor.
/// </summary>
/// <param name="WeightMap">Tensor name to shard file name (a plain file name in the same directory).</param>
/// <param name="Metadata">The index's <c>metadata</c> entries as raw JSON text (e.g. <c>total_size</c>).</param>
public sealed record SafetensorsIndex(IReadOnlyDictionary<string, string> WeightMap, IReadOnlyDictionary<string, string> Metadata)
{
    /// <summary>The conventional index file name.</summary>
    public const string FileName = "model.safetensors.index.json";

    /// <summary>The largest index file accepted (64 MiB).</summary>
    public const long MaxFileLength = 64 << 20;

    /// <summary>The shard file names, distinct, in first-use order.</summary>
    public IReadOnlyList<string> Shards
    {
        get
        {
            var seen = new HashSet<string>(StringComparer.Ordinal);
            var result = new List<string>();
            foreach (var shard in WeightMap.Values)
            {
                if (seen.Add(shard))
                {
                    result.Add(shard);
                }
            }

            return result;
        }
    }

    /// <summary>Reads and validates an index file.</summary>
    /// <param name="path">The index file.</param>
    /// <returns>The index.</returns>
    /// <exception cref="ModelFormatException">When the JSON is invalid, <c>weight_map</c> is missing or not a map of strings, or a shard name is not a plain file name.</exception>
    /// <exception cref="IOException">When the file cannot be read.</exception>
    public static SafetensorsIndex Read(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (new FileInfo(path).Length > MaxFileLength)
        {
            throw new ModelFormatException(path, null, $"the index is larger than {MaxFileLength} bytes.");
        }

        var bytes = File.ReadAllBytes(path);
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(bytes, new JsonDocumentOptions { MaxDepth = 16 });
        }
        catch (JsonException ex)
        {
            throw new ModelFormatException(path, null, $"not valid JSON: {ex.Message}", ex);
        }

        using (doc)
        {
            try
            {
                return Parse(path, doc.RootElement);
            }
            catch (InvalidOperationException ex)
            {
                throw new ModelFormatException(path, null, $"the index holds invalid text: {ex.Message}", ex);
            }
        }
    }

    private static SafetensorsIndex Parse(string path, JsonElement root)
    {
        if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("weight_map", out var map) || map.ValueKind != JsonValueKind.Object)
        {
            throw new ModelFormatException(path, "weight_map", "the index has no 'weight_map' object.");
        }

        var weights = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var p in map.EnumerateObject())
        {
            if (p.Value.ValueKind != JsonValueKind.String)
            {
                throw new ModelFormatException(path, "weight_map." + p.Name, $"shard must be a string, found a JSON {p.Value.ValueKind}.");
            }

            var shard = p.Value.GetString()!;
            if (shard.Length == 0 || shard != System.IO.Path.GetFileName(shard) || shard is "." or ".." || shard.Contains('\\', StringComparison.Ordinal))
            {
                throw new ModelFormatException(path, "weight_map." + p.Name, $"shard '{shard}' is not a plain file name in the checkpoint directory.");
            }

            if (!weights.TryAdd(p.Name, shard))
            {
                throw new ModelFormatException(path, "weight_map." + p.Name, "tensor appears twice.");
            }
        }

        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        if (root.TryGetProperty("metadata", out var meta) && meta.ValueKind == JsonValueKind.Object)
        {
            foreach (var p in meta.EnumerateObject())
            {
                metadata[p.Name] = p.Value.ValueKind == JsonValueKind.String ? p.Value.GetString()! : p.Value.GetRawText();
            }
        }

        return new SafetensorsIndex(weights, metadata);
    }

    /// <summary>Writes this index as JSON to <paramref name="path"/>, with <c>metadata.total_size</c> = <paramref name="totalSize"/>.</summary>
    /// <param name="path">The output file.</param>
    /// <param name="totalSize">The total bytes of tensor data in all shards.</param>
    public void Write(string path, long totalSize)
    {
        using var stream = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None);
        using var json = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true });
        json.WriteStartObject();
        json.WriteStartObject("metadata");
        json.WriteNumber("total_size", totalSize);
        json.WriteEndObject();
        json.WriteStartObject("weight_map");
        foreach (var (k, v) in WeightMap)
        {
            json.WriteString(k, v);
        }

        json.WriteEndObject();
        json.WriteEndObject();
    }
}
