// Over 500 lines on purpose: one tokenizer's encode (normalization, merges by score, byte fallback) and streaming
// decode must agree on the same vocabulary tables; they are kept side by side so a change to one is seen in the other.
using System.Globalization;
using System.Text;
using System.Text.Json;
using Petals.Formats;
using Petals.Tokenization.HuggingFace;
using Decoder = Petals.Tokenization.HuggingFace.Decoder;

namespace Petals.Tokenization;

/// <summary>
/// The SentencePiece BPE tokenizer of llama.cpp's "llama" tokenizer model (the vocabulary GGUF files and
/// llama2.c models embed): spaces become U+2581, a U+2581 is prepended to each run of text that starts the
/// input or follows a special token (when add_space_prefix), then the adjacent pair whose concatenation is in the
/// vocabulary with the highest score is merged (leftmost on ties) until none is; characters that are not in the
/// vocabulary become their UTF-8 byte tokens (&lt;0xXX&gt;).
/// </summary>
/// <remarks>Immutable and thread-safe.</remarks>
public sealed class SentencePieceBpeTokenizer : ITokenizer
{
    /// <summary>llama.cpp token type: normal piece.</summary>
    public const int TokenTypeNormal = 1;

    /// <summary>llama.cpp token type: the unknown token.</summary>
    public const int TokenTypeUnknown = 2;

    /// <summary>llama.cpp token type: a control token (BOS, EOS, …).</summary>
    public const int TokenTypeControl = 3;

    /// <summary>llama.cpp token type: a user-defined token, matched literally in text.</summary>
    public const int TokenTypeUserDefined = 4;

    /// <summary>llama.cpp token type: an unused slot.</summary>
    public const int TokenTypeUnused = 5;

    /// <summary>llama.cpp token type: a byte token &lt;0xXX&gt;.</summary>
    public const int TokenTypeByte = 6;

    private const char Metaspace = '\u2581';

    private readonly string[] _tokens;
    private readonly float[] _scores;
    private readonly int[] _types;
    private readonly Dictionary<string, int> _tokenToId;
    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> _lookup;
    private readonly int[] _byteIds;
    private readonly AddedTokenMatcher _specialMatcher;
    private readonly Decoder _decoder;

    private SentencePieceBpeTokenizer(string[] tokens, float[] scores, int[] types, Dictionary<string, int> tokenToId, int[] byteIds, int? bos, int? eos, int? unk, bool addBos, bool addSpacePrefix)
    {
        _tokens = tokens;
        _scores = scores;
        _types = types;
        _tokenToId = tokenToId;
        _lookup = tokenToId.GetAlternateLookup<ReadOnlySpan<char>>();
        _byteIds = byteIds;
        BosTokenId = bos;
        EosTokenId = eos;
        UnknownTokenId = unk;
        AddBosToken = addBos && bos is not null;
        AddSpacePrefix = addSpacePrefix;
        var specials = new List<AddedToken>();
        for (int i = 0; i < tokens.Length; i++)
        {
            if (IsMatchedLiterally(types[i]) && tokens[i].Length > 0 && tokenToId[tokens[i]] == i)
            {
                specials.Add(new AddedToken(i, tokens[i], types[i] != TokenTypeUserDefined, false, false, false, false));
            }
        }

        _specialMatcher = new AddedTokenMatcher(specials);
        var chain = new List<Decoder> { new ReplaceDecoder("\u2581", null, " "), new ByteFallbackDecoder(), new FuseDecoder() };
        if (addSpacePrefix)
        {
            chain.Add(new StripDecoder(' ', 1, 0));
        }

        _decoder = new SequenceDecoder([.. chain]);
    }

    /// <inheritdoc/>
    public int VocabSize => _tokens.Length;

    /// <inheritdoc/>
    public int? BosTokenId { get; }

    /// <inheritdoc/>
    public int? EosTokenId { get; }

    /// <summary>The unknown token id, if the vocabulary has one.</summary>
    public int? UnknownTokenId { get; }

    /// <inheritdoc/>
    public bool AddBosToken { get; }

    /// <summary>Whether a U+2581 is prepended to text that starts the input or follows a special token.</summary>
    public bool AddSpacePrefix { get; }

    /// <summary>
    /// Creates the tokenizer from a llama.cpp-style vocabulary (the GGUF keys tokenizer.ggml.tokens, .scores,
    /// .token_type, .bos_token_id, .eos_token_id, .unknown_token_id, .add_bos_token, .add_space_prefix).
    /// </summary>
    /// <param name="tokens">Token strings, indexed by id.</param>
    /// <param name="scores">Merge scores (higher merges first), one per token.</param>
    /// <param name="tokenTypes">Token types (1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte), one per token; 0 (undefined) counts as normal.</param>
    /// <param name="bos">The BOS id, if any.</param>
    /// <param name="eos">The EOS id, if any.</param>
    /// <param name="unk">The unknown-token id, if any.</param>
    /// <param name="addBos">Whether encoding with special tokens prepends BOS.</param>
    /// <param name="addSpacePrefix">Whether to prepend U+2581 to text (llama.cpp's default: true).</param>
    /// <param name="sourcePath">The file the vocabulary came from, for error messages.</param>
    /// <returns>The tokenizer.</returns>
    /// <exception cref="ModelFormatException">The arrays disagree in length, an id is out of range, a type is
    /// unknown, or a byte token is malformed; the field names the GGUF key at fault.</exception>
    public static SentencePieceBpeTokenizer FromVocabulary(
        string[] tokens,
        float[] scores,
        int[] tokenTypes,
        int? bos,
        int? eos,
        int? unk,
        bool addBos,
        bool addSpacePrefix,
        string sourcePath = "(vocabulary)")
    {
        ArgumentNullException.ThrowIfNull(tokens);
        ArgumentNullException.ThrowIfNull(scores);
        ArgumentNullException.ThrowIfNull(tokenTypes);
        ArgumentNullException.ThrowIfNull(sourcePath);
        if (tokens.Length == 0)
        {
            throw new ModelFormatException(sourcePath, "tokenizer.ggml.tokens", "the vocabulary is empty.");
        }

        if (scores.Length != tokens.Length)
        {
            throw new ModelFormatException(sourcePath, "tokenizer.ggml.scores", $"has {scores.Length} entries but there are {tokens.Length} tokens.");
        }

        if (tokenTypes.Length != tokens.Length)
        {
            throw new ModelFormatException(sourcePath, "tokenizer.ggml.token_type", $"has {tokenTypes.Length} entries but there are {tokens.Length} tokens.");
        }

        CheckId(bos, tokens.Length, sourcePath, "tokenizer.ggml.bos_token_id");
        CheckId(eos, tokens.Length, sourcePath, "tokenizer.ggml.eos_token_id");
        CheckId(unk, tokens.Length, sourcePath, "tokenizer.ggml.unknown_token_id");
        var tokenToId = new Dictionary<string, int>(tokens.Length, StringComparer.Ordinal);
        var byteIds = new int[256];
        Array.Fill(byteIds, -1);
        var types = new int[tokens.Length];
        for (int i = 0; i < tokens.Length; i++)
        {
            string token = tokens[i] ?? throw new ModelFormatException(sourcePath, "tokenizer.ggml.tokens", $"token {i} is null.");
            int type = tokenTypes[i] == 0 ? TokenTypeNormal : tokenTypes[i];
            if (type is < TokenTypeNormal or > TokenTypeByte)
            {
                throw new ModelFormatException(sourcePath, "tokenizer.ggml.token_type", $"token {i} ('{token}') has unknown type {tokenTypes[i]}.");
            }

            if (type == TokenTypeByte)
            {
                if (!ByteFallbackDecoder.TryParseByte(token, out byte b))
                {
                    throw new ModelFormatException(sourcePath, "tokenizer.ggml.tokens", $"byte token {i} is '{token}', expected <0xXX>.");
                }

                byteIds[b] = i;
            }

            if (float.IsNaN(scores[i]))
            {
                throw new ModelFormatException(sourcePath, "tokenizer.ggml.scores", $"token {i} ('{token}') has a NaN score.");
            }

            types[i] = type;

            // As llama.cpp: when a string appears twice, the later id wins for text lookups.
            tokenToId[token] = i;
        }

        // Vocabularies without explicit byte-typed tokens (type data lost) still name them <0xXX>.
        for (int b = 0; b < 256; b++)
        {
            if (byteIds[b] < 0 && tokenToId.TryGetValue(string.Create(CultureInfo.InvariantCulture, $"<0x{b:X2}>"), out int id))
            {
                byteIds[b] = id;
            }
        }

        return new SentencePieceBpeTokenizer((string[])tokens.Clone(), (float[])scores.Clone(), types, tokenToId, byteIds, bos, eos, unk, addBos, addSpacePrefix);
    }

    private static void CheckId(int? id, int count, string source, string field)
    {
        if (id is int value && (value < 0 || value >= count))
        {
            throw new ModelFormatException(source, field, $"id {value} is outside the vocabulary of {count} tokens.");
        }
    }

    private static bool IsMatchedLiterally(int type) => type is TokenTypeControl or TokenTypeUnknown or TokenTypeUserDefined;

    /// <inheritdoc/>
    public int[] Encode(string text, bool addSpecialTokens = true)
    {
        ArgumentNullException.ThrowIfNull(text);
        var output = new List<int>(text.Length / 3 + 2);
        if (addSpecialTokens && AddBosToken)
        {
            output.Add(BosTokenId!.Value);
        }

        var segments = new List<TextSegment>();
        _specialMatcher.Split(text, segments);
        bool previousSpecial = true;
        var buffer = new StringBuilder();
        foreach (TextSegment segment in segments)
        {
            if (segment.IsToken)
            {
                output.Add(segment.TokenId);
                previousSpecial = true;
                continue;
            }

            buffer.Clear();
            if (AddSpacePrefix && previousSpecial)
            {
                buffer.Append(Metaspace);
            }

            buffer.Append(text, segment.Start, segment.Length).Replace(' ', Metaspace);
            EncodeFragment(buffer.ToString(), output);
            previousSpecial = false;
        }

        return [.. output];
    }

    private void EncodeFragment(string text, List<int> output)
    {
        if (text.Length == 0)
        {
            return;
        }

        // Symbols are code points: start offset and length in UTF-16 units, linked as a list.
        int capacity = text.Length;
        var start = new int[capacity];
        var length = new int[capacity];
        var prev = new int[capacity];
        var next = new int[capacity];
        int count = 0;
        for (int i = 0; i < text.Length;)
        {
            int n = char.IsHighSurrogate(text[i]) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]) ? 2 : 1;
            start[count] = i;
            length[count] = n;
            prev[count] = count - 1;
            next[count] = -1;
            if (count > 0)
            {
                next[count - 1] = count;
            }

            count++;
            i += n;
        }

        // Highest score first; on equal scores the leftmost pair (llama.cpp's llm_bigram_spm ordering).
        var queue = new PriorityQueue<(int Left, int Right, int Size), (float NegScore, int Left)>();
        void TryAddBigram(int left, int right)
        {
            if (left < 0 || right < 0)
            {
                return;
            }

            int size = length[left] + length[right];
            if (_lookup.TryGetValue(text.AsSpan(start[left], size), out int id))
            {
                queue.Enqueue((left, right, size), (-_scores[id], left));
            }
        }

        for (int i = 1; i < count; i++)
        {
            TryAddBigram(i - 1, i);
        }

        while (queue.TryDequeue(out (int Left, int Right, int Size) bigram, out _))
        {
            int left = bigram.Left;
            int right = bigram.Right;
            if (length[left] == 0 || length[right] == 0 || length[left] + length[right] != bigram.Size || next[left] != right)
            {
                continue;
            }

            length[left] += length[right];
            length[right] = 0;
            next[left] = next[right];
            if (next[right] >= 0)
            {
                prev[next[right]] = left;
            }

            TryAddBigram(prev[left], left);
            TryAddBigram(left, next[left]);
        }

        // Symbols that are not pieces become their UTF-8 byte tokens; when a byte token is missing, the whole
        // symbol becomes one <unk>, and consecutive <unk>s are fused (as the equivalent Hugging Face BPE with
        // byte_fallback and fuse_unk does; llama.cpp would fail on such a vocabulary).
        Span<byte> utf8 = stackalloc byte[8];
        bool lastWasUnk = false;
        for (int i = 0; i >= 0; i = next[i])
        {
            ReadOnlySpan<char> symbol = text.AsSpan(start[i], length[i]);
            if (_lookup.TryGetValue(symbol, out int id))
            {
                output.Add(id);
                lastWasUnk = false;
                continue;
            }

            int bytes = Encoding.UTF8.GetBytes(symbol, utf8);
            bool all = true;
            for (int b = 0; b < bytes; b++)
            {
                all &= _byteIds[utf8[b]] >= 0;
            }

            if (all)
            {
                for (int b = 0; b < bytes; b++)
                {
                    output.Add(_byteIds[utf8[b]]);
                }

                lastWasUnk = false;
            }
            else if (UnknownTokenId is int unk)
            {
                if (!lastWasUnk)
                {
                    output.Add(unk);
                }

                lastWasUnk = true;
            }
            else
            {
                throw new InvalidOperationException($"The vocabulary has neither the byte tokens nor an unknown token for '{symbol}', so the text cannot be encoded.");
            }
        }
    }

    /// <inheritdoc/>
    public string Decode(ReadOnlySpan<int> ids, bool skipSpecialTokens = false)
    {
        var pieces = new List<string>(ids.Length);
        foreach (int id in ids)
        {
            if ((uint)id >= (uint)_tokens.Length)
            {
                throw new ArgumentOutOfRangeException(nameof(ids), id, "The id is outside the vocabulary.");
            }

            if (skipSpecialTokens && IsSpecial(id))
            {
                continue;
            }

            pieces.Add(_tokens[id]);
        }

        _decoder.DecodeChain(pieces);
        return string.Concat(pieces);
    }

    /// <inheritdoc/>
    public IStreamingDecoder CreateStreamingDecoder(bool skipSpecialTokens = false) =>
        new StreamingDecoder((ids, start, count, skip) => Decode(ids.AsSpan(start, count), skip), id => (uint)id < (uint)_tokens.Length, skipSpecialTokens);

    /// <inheritdoc/>
    public string? IdToToken(int id) => (uint)id < (uint)_tokens.Length ? _tokens[id] : null;

    /// <inheritdoc/>
    public int? TokenToId(string token)
    {
        ArgumentNullException.ThrowIfNull(token);
        return _tokenToId.TryGetValue(token, out int id) ? id : null;
    }

    /// <inheritdoc/>
    public bool IsSpecial(int id) => (uint)id < (uint)_types.Length && _types[id] is TokenTypeControl or TokenTypeUnknown;

    /// <summary>The score of <paramref name="id"/>.</summary>
    /// <param name="id">A token id.</param>
    /// <returns>The score.</returns>
    /// <exception cref="ArgumentOutOfRangeException">When <paramref name="id"/> is outside the vocabulary.</exception>
    public float GetScore(int id) => (uint)id < (uint)_scores.Length ? _scores[id] : throw new ArgumentOutOfRangeException(nameof(id));

    /// <summary>The llama.cpp token type of <paramref name="id"/>.</summary>
    /// <param name="id">A token id.</param>
    /// <returns>The type (1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte).</returns>
    /// <exception cref="ArgumentOutOfRangeException">When <paramref name="id"/> is outside the vocabulary.</exception>
    public int GetTokenType(int id) => (uint)id < (uint)_types.Length ? _types[id] : throw new ArgumentOutOfRangeException(nameof(id));

    /// <summary>
    /// Writes an equivalent Hugging Face tokenizer.json and tokenizer_config.json into <paramref name="directory"/>
    /// (created if needed): a BPE model with byte_fallback whose merges are every pair of pieces whose
    /// concatenation is a piece, ordered by the merged piece's score (as Hugging Face's Llama converter does),
    /// a Prepend/Replace normalizer, and a Replace/ByteFallback/Fuse/Strip decoder.
    /// </summary>
    /// <param name="directory">The output directory.</param>
    public void WriteHuggingFaceFiles(string directory)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        Directory.CreateDirectory(directory);
        File.WriteAllBytes(Path.Combine(directory, TokenizerLoader.TokenizerJsonFileName), ToHuggingFaceTokenizerJson());
        File.WriteAllBytes(Path.Combine(directory, TokenizerLoader.TokenizerConfigFileName), ToHuggingFaceConfigJson());
    }

    /// <summary>The tokenizer.json content written by <see cref="WriteHuggingFaceFiles"/>, as UTF-8.</summary>
    /// <returns>UTF-8 JSON.</returns>
    public byte[] ToHuggingFaceTokenizerJson()
    {
        using var stream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stream, TokenizerJsonWriting.Options))
        {
            TokenizerJsonWriting.WriteHeader(w);
            w.WriteStartArray("added_tokens");
            for (int i = 0; i < _tokens.Length; i++)
            {
                if (IsMatchedLiterally(_types[i]) && _tokenToId[_tokens[i]] == i)
                {
                    TokenizerJsonWriting.WriteAddedToken(w, i, _tokens[i], special: _types[i] != TokenTypeUserDefined);
                }
            }

            w.WriteEndArray();

            w.WriteStartObject("normalizer");
            w.WriteString("type", "Sequence");
            w.WriteStartArray("normalizers");
            if (AddSpacePrefix)
            {
                w.WriteStartObject();
                w.WriteString("type", "Prepend");
                w.WriteString("prepend", "\u2581");
                w.WriteEndObject();
            }

            w.WriteStartObject();
            w.WriteString("type", "Replace");
            w.WriteStartObject("pattern");
            w.WriteString("String", " ");
            w.WriteEndObject();
            w.WriteString("content", "\u2581");
            w.WriteEndObject();
            w.WriteEndArray();
            w.WriteEndObject();

            w.WriteNull("pre_tokenizer");
            TokenizerJsonWriting.WriteBosPostProcessor(w, AddBosToken ? _tokens[BosTokenId!.Value] : null, BosTokenId);

            w.WriteStartObject("decoder");
            w.WriteString("type", "Sequence");
            w.WriteStartArray("decoders");
            w.WriteStartObject();
            w.WriteString("type", "Replace");
            w.WriteStartObject("pattern");
            w.WriteString("String", "\u2581");
            w.WriteEndObject();
            w.WriteString("content", " ");
            w.WriteEndObject();
            w.WriteStartObject();
            w.WriteString("type", "ByteFallback");
            w.WriteEndObject();
            w.WriteStartObject();
            w.WriteString("type", "Fuse");
            w.WriteEndObject();
            if (AddSpacePrefix)
            {
                w.WriteStartObject();
                w.WriteString("type", "Strip");
                w.WriteString("content", " ");
                w.WriteNumber("start", 1);
                w.WriteNumber("stop", 0);
                w.WriteEndObject();
            }

            w.WriteEndArray();
            w.WriteEndObject();

            w.WriteStartObject("model");
            w.WriteString("type", "BPE");
            w.WriteNull("dropout");
            if (UnknownTokenId is int unk)
            {
                w.WriteString("unk_token", _tokens[unk]);
            }
            else
            {
                w.WriteNull("unk_token");
            }

            w.WriteNull("continuing_subword_prefix");
            w.WriteNull("end_of_word_suffix");
            w.WriteBoolean("fuse_unk", true);
            w.WriteBoolean("byte_fallback", true);
            w.WriteBoolean("ignore_merges", false);
            w.WriteStartObject("vocab");
            for (int i = 0; i < _tokens.Length; i++)
            {
                if (_tokenToId[_tokens[i]] == i)
                {
                    w.WriteNumber(_tokens[i], i);
                }
            }

            w.WriteEndObject();
            w.WriteStartArray("merges");
            foreach ((int left, int right) in DeriveMerges())
            {
                w.WriteStartArray();
                w.WriteStringValue(_tokens[left]);
                w.WriteStringValue(_tokens[right]);
                w.WriteEndArray();
            }

            w.WriteEndArray();
            w.WriteEndObject();
            w.WriteEndObject();
        }

        return stream.ToArray();
    }

    /// <summary>The tokenizer_config.json content written by <see cref="WriteHuggingFaceFiles"/>, as UTF-8.</summary>
    /// <returns>UTF-8 JSON.</returns>
    public byte[] ToHuggingFaceConfigJson()
    {
        using var stream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            w.WriteStartObject();
            w.WriteBoolean("add_bos_token", AddBosToken);
            w.WriteBoolean("add_eos_token", false);
            WriteTokenOrNull(w, "bos_token", BosTokenId);
            WriteTokenOrNull(w, "eos_token", EosTokenId);
            WriteTokenOrNull(w, "unk_token", UnknownTokenId);
            w.WriteBoolean("clean_up_tokenization_spaces", false);
            w.WriteBoolean("legacy", true);
            w.WriteString("tokenizer_class", "LlamaTokenizer");
            w.WriteEndObject();
        }

        return stream.ToArray();
    }

    private void WriteTokenOrNull(Utf8JsonWriter w, string name, int? id)
    {
        if (id is int value)
        {
            w.WriteString(name, _tokens[value]);
        }
        else
        {
            w.WriteNull(name);
        }
    }

    /// <summary>Every (left, right) whose concatenation is a piece, ordered by that piece's score (then ids).</summary>
    private List<(int Left, int Right)> DeriveMerges()
    {
        var merges = new List<(int Merged, int Left, int Right)>();
        for (int id = 0; id < _tokens.Length; id++)
        {
            string piece = _tokens[id];
            if (_types[id] == TokenTypeByte || _tokenToId[piece] != id)
            {
                continue;
            }

            for (int split = 1; split < piece.Length; split++)
            {
                if (char.IsLowSurrogate(piece[split]) && char.IsHighSurrogate(piece[split - 1]))
                {
                    continue;
                }

                if (_lookup.TryGetValue(piece.AsSpan(0, split), out int left) && _lookup.TryGetValue(piece.AsSpan(split), out int right))
                {
                    merges.Add((id, left, right));
                }
            }
        }

        merges.Sort((a, b) =>
        {
            int c = _scores[b.Merged].CompareTo(_scores[a.Merged]);
            if (c != 0)
            {
                return c;
            }

            c = a.Merged.CompareTo(b.Merged);
            return c != 0 ? c : a.Left != b.Left ? a.Left.CompareTo(b.Left) : a.Right.CompareTo(b.Right);
        });
        var result = new List<(int Left, int Right)>(merges.Count);
        foreach ((_, int left, int right) in merges)
        {
            result.Add((left, right));
        }

        return result;
    }
}
