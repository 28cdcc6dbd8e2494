using System.Text.Json;
using Petals.Formats;

namespace Petals.Tokenization.HuggingFace;

/// <summary>
/// A tokenizer defined by a Hugging Face tokenizer.json (BPE model) and optionally tokenizer_config.json:
/// added tokens are matched first, then each remaining run of text is normalized, pre-tokenized and encoded
/// by the model; the post-processor adds BOS/EOS when special tokens are requested.
/// </summary>
internal sealed class HuggingFaceTokenizer : ITokenizer
{
    private readonly BpeModel _model;
    private readonly Normalizer? _normalizer;
    private readonly PreTokenizer? _preTokenizer;
    private readonly Decoder? _decoder;
    private readonly PostProcessor? _postProcessor;
    private readonly AddedTokenMatcher _rawMatcher;
    private readonly AddedTokenMatcher _normalizedMatcher;
    private readonly Dictionary<int, AddedToken> _addedById;
    private readonly Dictionary<string, int> _addedByContent;

    private HuggingFaceTokenizer(
        BpeModel model,
        Normalizer? normalizer,
        PreTokenizer? preTokenizer,
        Decoder? decoder,
        PostProcessor? postProcessor,
        List<AddedToken> added,
        int? bos,
        int? eos)
    {
        _model = model;
        _normalizer = normalizer;
        _preTokenizer = preTokenizer;
        _decoder = decoder;
        _postProcessor = postProcessor;
        _addedById = [];
        _addedByContent = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (AddedToken t in added)
        {
            _addedById[t.Id] = t;
            _addedByContent[t.Content] = t.Id;
        }

        _rawMatcher = new AddedTokenMatcher(added.Where(t => !t.Normalized || normalizer is null));
        _normalizedMatcher = new AddedTokenMatcher(added.Where(t => t.Normalized && normalizer is not null));
        int size = model.Count;
        foreach (AddedToken t in added)
        {
            size = Math.Max(size, t.Id + 1);
        }

        VocabSize = size;
        BosTokenId = bos;
        EosTokenId = eos;
        AddBosToken = postProcessor is { Prefix.Length: > 0 } && bos is int b && postProcessor.Prefix[0] == b;
    }

    public int VocabSize { get; }

    public int? BosTokenId { get; }

    public int? EosTokenId { get; }

    public bool AddBosToken { get; }

    /// <summary>Parses tokenizer.json (and tokenizer_config.json, if given) text.</summary>
    /// <param name="json">tokenizer.json content, UTF-8.</param>
    /// <param name="jsonPath">Its path, for error messages.</param>
    /// <param name="configJson">tokenizer_config.json content, or null.</param>
    /// <param name="configPath">Its path, for error messages.</param>
    /// <param name="bosToken">BOS token content when there is no configuration (GGUF vocabularies).</param>
    /// <param name="eosToken">EOS token content when there is no configuration (GGUF vocabularies).</param>
    public static HuggingFaceTokenizer Parse(ReadOnlyMemory<byte> json, string jsonPath, string? configJson, string? configPath, string? bosToken = null, string? eosToken = null)
    {
        var f = new JsonFields(jsonPath);
        using JsonDocument doc = ParseDocument(json, jsonPath);
        JsonElement root = doc.RootElement;
        if (root.ValueKind != JsonValueKind.Object)
        {
            throw f.Error("(root)", "expected a JSON object.");
        }

        JsonElement modelElement = f.Required(root, "model", string.Empty);
        string modelType = JsonFields.Optional(modelElement, "type") is { ValueKind: JsonValueKind.String } t
            ? t.GetString()!
            : JsonFields.Optional(modelElement, "merges") is not null ? "BPE" : throw f.Error("model.type", "required field is missing.");
        if (modelType != "BPE")
        {
            throw f.Error("model.type", $"unsupported model type '{modelType}' (only BPE is implemented).");
        }

        BpeModel model = BpeModel.Parse(modelElement, "model", f);
        Normalizer? normalizer = Normalizer.Parse(JsonFields.Optional(root, "normalizer"), "normalizer", f);
        PreTokenizer? preTokenizer = PreTokenizer.Parse(JsonFields.Optional(root, "pre_tokenizer"), "pre_tokenizer", f);
        Decoder? decoder = Decoder.Parse(JsonFields.Optional(root, "decoder"), "decoder", f);
        PostProcessor? postProcessor = PostProcessor.Parse(JsonFields.Optional(root, "post_processor"), "post_processor", f);

        var added = new List<AddedToken>();
        if (JsonFields.Optional(root, "added_tokens") is { } addedElement)
        {
            if (addedElement.ValueKind != JsonValueKind.Array)
            {
                throw f.Error("added_tokens", "expected an array.");
            }

            int i = 0;
            foreach (JsonElement a in addedElement.EnumerateArray())
            {
                string path = JsonFields.Index("added_tokens", i++);
                int id = f.RequiredInt(a, "id", path);
                if (id < 0)
                {
                    throw f.Error(path + ".id", "must not be negative.");
                }

                if (id >= (long)model.Count + BpeModel.MaxIdGap)
                {
                    throw f.Error(path + ".id", $"id {id} is far beyond the {model.Count} tokens of the model vocabulary.");
                }

                string content = f.RequiredString(a, "content", path);
                if (content.Length == 0)
                {
                    throw f.Error(path + ".content", "must not be empty.");
                }

                bool special = f.OptionalBool(a, "special", path, false);
                added.Add(new AddedToken(
                    id,
                    content,
                    special,
                    f.OptionalBool(a, "lstrip", path, false),
                    f.OptionalBool(a, "rstrip", path, false),
                    f.OptionalBool(a, "normalized", path, !special),
                    f.OptionalBool(a, "single_word", path, false)));
            }
        }

        int? bos = bosToken is null ? null : added.FirstOrDefault(t => t.Content == bosToken)?.Id ?? model.TokenToId(bosToken);
        int? eos = eosToken is null ? null : added.FirstOrDefault(t => t.Content == eosToken)?.Id ?? model.TokenToId(eosToken);
        if (configJson is not null)
        {
            var cf = new JsonFields(configPath ?? "tokenizer_config.json");
            using JsonDocument config = ParseDocument(configJson, cf.FilePath);
            JsonElement c = config.RootElement;
            if (c.ValueKind != JsonValueKind.Object)
            {
                throw cf.Error("(root)", "expected a JSON object.");
            }

            bos = SpecialTokenId(c, "bos_token", cf, model, added);
            eos = SpecialTokenId(c, "eos_token", cf, model, added);
            bool hasAddBos = JsonFields.Optional(c, "add_bos_token") is not null;
            bool hasAddEos = JsonFields.Optional(c, "add_eos_token") is not null;
            if (hasAddBos || hasAddEos)
            {
                // As transformers' Llama/Gemma fast tokenizers do: these flags rebuild the single-sequence template.
                bool addBos = cf.OptionalBool(c, "add_bos_token", string.Empty, false);
                bool addEos = cf.OptionalBool(c, "add_eos_token", string.Empty, false);
                if (addBos && bos is null)
                {
                    throw cf.Error("add_bos_token", "is true but bos_token is not set.");
                }

                if (addEos && eos is null)
                {
                    throw cf.Error("add_eos_token", "is true but eos_token is not set.");
                }

                postProcessor = new PostProcessor(addBos ? [bos!.Value] : [], addEos ? [eos!.Value] : []);
            }
        }

        if (postProcessor is not null)
        {
            foreach (int id in postProcessor.Prefix.Concat(postProcessor.Suffix))
            {
                if (model.IdToToken(id) is null && !added.Exists(t => t.Id == id))
                {
                    throw f.Error("post_processor", $"special token id {id} is not in the vocabulary.");
                }
            }
        }

        return new HuggingFaceTokenizer(model, normalizer, preTokenizer, decoder, postProcessor, added, bos, eos);
    }

    private static JsonDocument ParseDocument(string json, string path) => ParseDocument(System.Text.Encoding.UTF8.GetBytes(json), path);

    private static JsonDocument ParseDocument(ReadOnlyMemory<byte> json, string path)
    {
        try
        {
            return JsonDocument.Parse(json, new JsonDocumentOptions { MaxDepth = 256 });
        }
        catch (JsonException ex)
        {
            throw new ModelFormatException(path, null, $"invalid JSON: {ex.Message}", ex);
        }
    }

    private static int? SpecialTokenId(JsonElement config, string name, JsonFields f, BpeModel model, List<AddedToken> added)
    {
        JsonElement? value = JsonFields.Optional(config, name);
        string? content = value switch
        {
            null => null,
            { ValueKind: JsonValueKind.String } s => s.GetString(),
            { ValueKind: JsonValueKind.Object } o => f.RequiredString(o, "content", name),
            _ => throw f.Error(name, "expected a string or an object with 'content'."),
        };
        if (content is null)
        {
            return null;
        }

        foreach (AddedToken t in added)
        {
            if (t.Content == content)
            {
                return t.Id;
            }
        }

        return model.TokenToId(content) ?? throw f.Error(name, $"token '{content}' is not in the vocabulary.");
    }

    public int[] Encode(string text, bool addSpecialTokens = true)
    {
        ArgumentNullException.ThrowIfNull(text);
        var ids = new List<int>(text.Length / 3 + 4);
        if (addSpecialTokens && _postProcessor is not null)
        {
            ids.AddRange(_postProcessor.Prefix);
        }

        var segments = new List<TextSegment>();
        var pieces = new List<Piece>();
        var scratch = new List<Piece>();
        _rawMatcher.Split(text, segments);
        foreach (TextSegment segment in segments)
        {
            if (segment.IsToken)
            {
                ids.Add(segment.TokenId);
                continue;
            }

            string part = text.Substring(segment.Start, segment.Length);
            bool atStart = segment.Start == 0;
            string normalized = _normalizer?.Normalize(part) ?? part;
            if (_normalizedMatcher.IsEmpty)
            {
                EncodeNormalized(normalized, atStart, ids, pieces, scratch);
                continue;
            }

            var inner = new List<TextSegment>();
            _normalizedMatcher.Split(normalized, inner);
            foreach (TextSegment s in inner)
            {
                if (s.IsToken)
                {
                    ids.Add(s.TokenId);
                }
                else
                {
                    EncodeNormalized(normalized.Substring(s.Start, s.Length), atStart && s.Start == 0, ids, pieces, scratch);
                }
            }
        }

        if (addSpecialTokens && _postProcessor is not null)
        {
            ids.AddRange(_postProcessor.Suffix);
        }

        return [.. ids];
    }

    private void EncodeNormalized(string text, bool atStart, List<int> ids, List<Piece> pieces, List<Piece> scratch)
    {
        if (text.Length == 0)
        {
            return;
        }

        if (_preTokenizer is null)
        {
            _model.Encode(text, ids);
            return;
        }

        pieces.Clear();
        pieces.Add(new Piece(text, atStart));
        _preTokenizer.PreTokenize(pieces, scratch);
        foreach (Piece p in pieces)
        {
            _model.Encode(p.Text, ids);
        }
    }

    public string Decode(ReadOnlySpan<int> ids, bool skipSpecialTokens = false)
    {
        var tokens = new List<string>(ids.Length);
        foreach (int id in ids)
        {
            string token = IdToToken(id) ?? throw new ArgumentOutOfRangeException(nameof(ids), id, "The id is outside the vocabulary.");
            if (skipSpecialTokens && IsSpecial(id))
            {
                continue;
            }

            tokens.Add(token);
        }

        if (_decoder is null)
        {
            return string.Join(' ', tokens);
        }

        _decoder.DecodeChain(tokens);
        return string.Concat(tokens);
    }

    public IStreamingDecoder CreateStreamingDecoder(bool skipSpecialTokens = false) =>
        new StreamingDecoder((ids, start, count, skip) => Decode(ids.AsSpan(start, count), skip), id => IdToToken(id) is not null, skipSpecialTokens);

    public string? IdToToken(int id) => _addedById.TryGetValue(id, out AddedToken? t) ? t.Content : _model.IdToToken(id);

    public int? TokenToId(string token)
    {
        ArgumentNullException.ThrowIfNull(token);
        return _addedByContent.TryGetValue(token, out int id) ? id : _model.TokenToId(token);
    }

    public bool IsSpecial(int id) => _addedById.TryGetValue(id, out AddedToken? t) && t.Special;
}
