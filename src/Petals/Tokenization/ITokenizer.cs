namespace Petals.Tokenization;

/// <summary>Turns text into token ids and back, exactly as the model's reference tokenizer does.</summary>
/// <remarks>Implementations are immutable after loading and thread-safe.</remarks>
public interface ITokenizer
{
    /// <summary>Number of token ids (including added tokens).</summary>
    int VocabSize { get; }

    /// <summary>The beginning-of-sequence token id, if the vocabulary has one.</summary>
    int? BosTokenId { get; }

    /// <summary>The end-of-sequence token id, if the vocabulary has one.</summary>
    int? EosTokenId { get; }

    /// <summary>Whether encoding with special tokens prepends <see cref="BosTokenId"/> (the tokenizer's own setting).</summary>
    bool AddBosToken { get; }

    /// <summary>Encodes <paramref name="text"/>.</summary>
    /// <param name="text">The text (may be empty).</param>
    /// <param name="addSpecialTokens">Whether to add the special tokens the tokenizer adds by itself (BOS when <see cref="AddBosToken"/>).
    /// Literal special-token strings in the text are recognised either way.</param>
    /// <returns>The token ids.</returns>
    int[] Encode(string text, bool addSpecialTokens = true);

    /// <summary>Decodes <paramref name="ids"/> to text.</summary>
    /// <param name="ids">Token ids.</param>
    /// <param name="skipSpecialTokens">Whether to leave out special tokens (BOS, EOS, …).</param>
    /// <returns>The text; invalid UTF-8 byte sequences become U+FFFD.</returns>
    /// <exception cref="ArgumentOutOfRangeException">When an id is outside the vocabulary.</exception>
    string Decode(ReadOnlySpan<int> ids, bool skipSpecialTokens = false);

    /// <summary>Creates a decoder that turns a stream of ids into text pieces without ever splitting a UTF-8 character.</summary>
    /// <param name="skipSpecialTokens">Whether to leave out special tokens.</param>
    /// <returns>A new decoder; not thread-safe.</returns>
    IStreamingDecoder CreateStreamingDecoder(bool skipSpecialTokens = false);

    /// <summary>The vocabulary string of <paramref name="id"/>, or <see langword="null"/> when out of range.</summary>
    /// <param name="id">A token id.</param>
    /// <returns>The token string as stored in the vocabulary.</returns>
    string? IdToToken(int id);

    /// <summary>The id of vocabulary string <paramref name="token"/>, or <see langword="null"/>.</summary>
    /// <param name="token">A token string as stored in the vocabulary.</param>
    /// <returns>The id.</returns>
    int? TokenToId(string token);

    /// <summary>Whether <paramref name="id"/> is a special (control) token.</summary>
    /// <param name="id">A token id.</param>
    /// <returns><see langword="true"/> for special tokens.</returns>
    bool IsSpecial(int id);
}
