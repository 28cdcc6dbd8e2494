namespace Petals.Formats.Gguf;

/// <summary>
/// The tokenizer stored in a GGUF file's <c>tokenizer.ggml.*</c> metadata. Every member is null when the key is absent
/// (e.g. <see cref="AddBosToken"/> in GGUF v1 files).
/// </summary>
/// <remarks>The arrays are shared with the <see cref="GgufFile"/> and must not be modified.</remarks>
public sealed record GgufTokenizerMetadata
{
    /// <summary><c>tokenizer.ggml.model</c>: <c>"llama"</c> (SentencePiece), <c>"gpt2"</c> (byte-level BPE), ...</summary>
    public string? Model { get; init; }

    /// <summary><c>tokenizer.ggml.pre</c>: the pre-tokenizer name of byte-level BPE vocabularies (e.g. <c>"llama-bpe"</c>).</summary>
    public string? PreTokenizer { get; init; }

    /// <summary><c>tokenizer.ggml.tokens</c>: the vocabulary, indexed by token id.</summary>
    public IReadOnlyList<string>? Tokens { get; init; }

    /// <summary><c>tokenizer.ggml.scores</c>: one score per token (SentencePiece log probabilities).</summary>
    public IReadOnlyList<float>? Scores { get; init; }

    /// <summary><c>tokenizer.ggml.token_type</c>: one type per token (1 normal, 2 unknown, 3 control, 4 user defined, 5 unused, 6 byte).</summary>
    public IReadOnlyList<int>? TokenTypes { get; init; }

    /// <summary><c>tokenizer.ggml.merges</c>: BPE merges, <c>"left right"</c> each.</summary>
    public IReadOnlyList<string>? Merges { get; init; }

    /// <summary><c>tokenizer.ggml.bos_token_id</c>.</summary>
    public int? BosTokenId { get; init; }

    /// <summary><c>tokenizer.ggml.eos_token_id</c>.</summary>
    public int? EosTokenId { get; init; }

    /// <summary><c>tokenizer.ggml.unknown_token_id</c>.</summary>
    public int? UnknownTokenId { get; init; }

    /// <summary><c>tokenizer.ggml.padding_token_id</c>.</summary>
    public int? PaddingTokenId { get; init; }

    /// <summary><c>tokenizer.ggml.add_bos_token</c> (absent in GGUF v1 files).</summary>
    public bool? AddBosToken { get; init; }

    /// <summary><c>tokenizer.ggml.add_eos_token</c>.</summary>
    public bool? AddEosToken { get; init; }

    /// <summary><c>tokenizer.ggml.add_space_prefix</c>.</summary>
    public bool? AddSpacePrefix { get; init; }
}
