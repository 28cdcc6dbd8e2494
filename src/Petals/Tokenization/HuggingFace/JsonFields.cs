using System.Text.Json;
using Petals.Formats;

namespace Petals.Tokenization.HuggingFace;

/// <summary>Typed access to tokenizer.json fields that reports the file and the JSON path of any bad field.</summary>
internal readonly struct JsonFields
{
    public JsonFields(string filePath) => FilePath = filePath;

    public string FilePath { get; }

    public ModelFormatException Error(string field, string message, Exception? inner = null) => new(FilePath, field, message, inner);

    public JsonElement Required(JsonElement obj, string name, string path)
    {
        string field = Join(path, name);
        if (obj.ValueKind != JsonValueKind.Object)
        {
            throw Error(path.Length == 0 ? "(root)" : path, "expected a JSON object.");
        }

        if (!obj.TryGetProperty(name, out JsonElement value))
        {
            throw Error(field, "required field is missing.");
        }

        return value;
    }

    public static JsonElement? Optional(JsonElement obj, string name) =>
        obj.ValueKind == JsonValueKind.Object && obj.TryGetProperty(name, out JsonElement value) && value.ValueKind != JsonValueKind.Null
            ? value
            : null;

    public string RequiredString(JsonElement obj, string name, string path)
    {
        JsonElement value = Required(obj, name, path);
        return value.ValueKind == JsonValueKind.String ? value.GetString()! : throw Error(Join(path, name), $"expected a string, found {value.ValueKind}.");
    }

    public string? OptionalString(JsonElement obj, string name, string path)
    {
        JsonElement? value = Optional(obj, name);
        if (value is null)
        {
            return null;
        }

        return value.Value.ValueKind == JsonValueKind.String ? value.Value.GetString() : throw Error(Join(path, name), $"expected a string, found {value.Value.ValueKind}.");
    }

    public bool OptionalBool(JsonElement obj, string name, string path, bool defaultValue)
    {
        JsonElement? value = Optional(obj, name);
        return value?.ValueKind switch
        {
            null => defaultValue,
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw Error(Join(path, name), $"expected true or false, found {value.Value.ValueKind}."),
        };
    }

    public int RequiredInt(JsonElement obj, string name, string path)
    {
        JsonElement value = Required(obj, name, path);
        return value.ValueKind == JsonValueKind.Number && value.TryGetInt32(out int result)
            ? result
            : throw Error(Join(path, name), $"expected a 32-bit integer, found {value.ValueKind}.");
    }

    public int OptionalInt(JsonElement obj, string name, string path, int defaultValue)
    {
        JsonElement? value = Optional(obj, name);
        if (value is null)
        {
            return defaultValue;
        }

        return value.Value.ValueKind == JsonValueKind.Number && value.Value.TryGetInt32(out int result)
            ? result
            : throw Error(Join(path, name), $"expected a 32-bit integer, found {value.Value.ValueKind}.");
    }

    public JsonElement RequiredArray(JsonElement obj, string name, string path)
    {
        JsonElement value = Required(obj, name, path);
        return value.ValueKind == JsonValueKind.Array ? value : throw Error(Join(path, name), $"expected an array, found {value.ValueKind}.");
    }

    /// <summary>Reads a pattern object <c>{"String": "..."}</c> or <c>{"Regex": "..."}</c>.</summary>
    public (string Text, bool IsRegex) Pattern(JsonElement obj, string name, string path)
    {
        JsonElement value = Required(obj, name, path);
        string field = Join(path, name);
        if (value.ValueKind == JsonValueKind.String)
        {
            return (value.GetString()!, false);
        }

        if (Optional(value, "String") is { ValueKind: JsonValueKind.String } s)
        {
            return (s.GetString()!, false);
        }

        if (Optional(value, "Regex") is { ValueKind: JsonValueKind.String } r)
        {
            return (r.GetString()!, true);
        }

        throw Error(field, "expected {\"String\": …} or {\"Regex\": …}.");
    }

    public static string Join(string path, string name) => path.Length == 0 ? name : path + "." + name;

    public static string Index(string path, int index) => path + "[" + index.ToString(System.Globalization.CultureInfo.InvariantCulture) + "]";
}
