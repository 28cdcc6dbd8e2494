using System.Text.Json;

namespace Petals.Tokenization;

/// <summary>Pieces of tokenizer.json that the exporters of both vocabulary kinds write the same way.</summary>
internal static class TokenizerJsonWriting
{
    /// <summary>How both exporters format tokenizer.json: indented, non-ASCII written as is.</summary>
    public static JsonWriterOptions Options { get; } = new() { Indented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>Opens the root object with the fields the Rust crate's deserializer expects first (version, no truncation, no padding).</summary>
    public static void WriteHeader(Utf8JsonWriter w)
    {
        w.WriteStartObject();
        w.WriteString("version", "1.0");
        w.WriteNull("truncation");
        w.WriteNull("padding");
    }

    /// <summary>One entry of <c>"added_tokens"</c>: matched literally, never stripped or normalized.</summary>
    public static void WriteAddedToken(Utf8JsonWriter w, int id, string content, bool special)
    {
        w.WriteStartObject();
        w.WriteNumber("id", id);
        w.WriteString("content", content);
        w.WriteBoolean("single_word", false);
        w.WriteBoolean("lstrip", false);
        w.WriteBoolean("rstrip", false);
        w.WriteBoolean("normalized", false);
        w.WriteBoolean("special", special);
        w.WriteEndObject();
    }

    /// <summary>
    /// Writes <c>"post_processor"</c>: a TemplateProcessing that prepends <paramref name="bosText"/> (single and pair
    /// templates, as Hugging Face's converters write them), or <c>null</c> when no BOS is added.
    /// </summary>
    public static void WriteBosPostProcessor(Utf8JsonWriter w, string? bosText, int? bosId)
    {
        if (bosText is null || bosId is not { } id)
        {
            w.WriteNull("post_processor");
            return;
        }

        w.WriteStartObject("post_processor");
        w.WriteString("type", "TemplateProcessing");
        w.WriteStartArray("single");
        WritePiece(w, "SpecialToken", bosText, 0);
        WritePiece(w, "Sequence", "A", 0);
        w.WriteEndArray();
        w.WriteStartArray("pair");
        WritePiece(w, "SpecialToken", bosText, 0);
        WritePiece(w, "Sequence", "A", 0);
        WritePiece(w, "SpecialToken", bosText, 1);
        WritePiece(w, "Sequence", "B", 1);
        w.WriteEndArray();
        w.WriteStartObject("special_tokens");
        w.WriteStartObject(bosText);
        w.WriteString("id", bosText);
        w.WriteStartArray("ids");
        w.WriteNumberValue(id);
        w.WriteEndArray();
        w.WriteStartArray("tokens");
        w.WriteStringValue(bosText);
        w.WriteEndArray();
        w.WriteEndObject();
        w.WriteEndObject();
        w.WriteEndObject();
    }

    private static void WritePiece(Utf8JsonWriter w, string kind, string id, int typeId)
    {
        w.WriteStartObject();
        w.WriteStartObject(kind);
        w.WriteString("id", id);
        w.WriteNumber("type_id", typeId);
        w.WriteEndObject();
        w.WriteEndObject();
    }
}
