using System.Text;
using System.Text.Json;
using FsCheck;
using FsCheck.Fluent;
using Petals.Formats;
using Petals.Testing;
using Petals.Tokenization;
using TestData = Petals.Testing.TestData;

namespace Petals.Tests.Tokenization;

public sealed class SentencePieceBpeTokenizerTests
{
    private const int T = SentencePieceBpeTokenizer.TokenTypeNormal;

    private static readonly string TrainingText = string.Join(
        "\n",
        "Once upon a time, there was a little girl named Lily. She loved to play outside in the park.",
        "One day, she saw a big red ball under the tree. She ran to the ball and kicked it very high!",
        "Her friend Tom said: \"Lily, can I play too?\" Lily smiled and said yes. They played all day.",
        "The sun was warm, the birds were singing, and the two friends were happy together in 2024.",
        "def main():\n    print(\"hello, world\")\n    return 0\n",
        "Café au lait, naïve façade — résumé. Numbers: 12345, 3.14159, 1,000,000.");

    private static readonly Lazy<(SentencePieceBpeTokenizer Spm, ITokenizer Hf)> Trained = new(() =>
    {
        SentencePieceBpeTokenizer spm = TrainVocabulary(TrainingText, merges: 400);
        using TempDirectory dir = TestData.CreateTempDirectory();
        spm.WriteHuggingFaceFiles(dir.Path);
        return (spm, TokenizerLoader.Load(dir.Path));
    });

    /// <summary>
    /// Simulates llama2.c / SentencePiece BPE training: pieces start as the characters of ▁-prefixed words, and the
    /// most frequent adjacent pair is merged repeatedly; each new piece scores lower than the previous one.
    /// Ids: &lt;unk&gt;, &lt;s&gt;, &lt;/s&gt;, the 256 byte tokens, the characters, then the merged pieces.
    /// </summary>
    internal static SentencePieceBpeTokenizer TrainVocabulary(string text, int merges, bool addSpacePrefix = true)
    {
        var words = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (string line in text.Split('\n'))
        {
            foreach (string w in line.Split(' ', StringSplitOptions.RemoveEmptyEntries))
            {
                string key = "\u2581" + w;
                words[key] = words.GetValueOrDefault(key) + 1;
            }
        }

        var tokens = new List<string> { "<unk>", "<s>", "</s>" };
        var types = new List<int> { 2, 3, 3 };
        var scores = new List<float> { 0, 0, 0 };
        for (int b = 0; b < 256; b++)
        {
            tokens.Add($"<0x{b:X2}>");
            types.Add(6);
            scores.Add(0);
        }

        var segmented = words.ToDictionary(kv => kv.Key, kv => Split(kv.Key));
        var chars = new SortedSet<string>(segmented.Values.SelectMany(s => s), StringComparer.Ordinal);
        var merged = new List<string>();
        for (int m = 0; m < merges; m++)
        {
            var counts = new Dictionary<(string, string), int>();
            foreach ((string word, List<string> symbols) in segmented)
            {
                for (int i = 0; i + 1 < symbols.Count; i++)
                {
                    counts[(symbols[i], symbols[i + 1])] = counts.GetValueOrDefault((symbols[i], symbols[i + 1])) + words[word];
                }
            }

            if (counts.Count == 0)
            {
                break;
            }

            ((string a, string b), int _) = counts.OrderByDescending(kv => kv.Value).ThenBy(kv => kv.Key.Item1 + "\u0001" + kv.Key.Item2, StringComparer.Ordinal).First();
            string piece = a + b;
            if (!merged.Contains(piece))
            {
                merged.Add(piece);
            }

            foreach (List<string> symbols in segmented.Values)
            {
                for (int i = 0; i + 1 < symbols.Count; i++)
                {
                    if (symbols[i] == a && symbols[i + 1] == b)
                    {
                        symbols[i] = piece;
                        symbols.RemoveAt(i + 1);
                    }
                }
            }
        }

        for (int i = 0; i < merged.Count; i++)
        {
            tokens.Add(merged[i]);
            types.Add(T);
            scores.Add(-i);
        }

        foreach (string c in chars)
        {
            tokens.Add(c);
            types.Add(T);
            scores.Add(-10_000);
        }

        return SentencePieceBpeTokenizer.FromVocabulary([.. tokens], [.. scores], [.. types], 1, 2, 0, addBos: true, addSpacePrefix);
    }

    private static List<string> Split(string word)
    {
        var list = new List<string>();
        for (int i = 0; i < word.Length; i += char.IsSurrogatePair(word, i) ? 2 : 1)
        {
            list.Add(word.Substring(i, char.IsSurrogatePair(word, i) ? 2 : 1));
        }

        return list;
    }

    /// <summary>
    /// The Mistral vocabulary as a SentencePiece model. Its tokenizer.json was converted from tokenizer.model by
    /// ordering merges by the merged piece's score, so the inverse holds: a piece's score is minus the rank of
    /// the first merge that produces it (pieces no merge produces, like single characters, score lowest).
    /// </summary>
    private static SentencePieceBpeTokenizer MistralAsSentencePiece()
    {
        using JsonDocument doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(TestData.MistralTokenizerDir, "tokenizer.json")));
        JsonElement model = doc.RootElement.GetProperty("model");
        JsonElement vocab = model.GetProperty("vocab");
        var tokens = new string[vocab.EnumerateObject().Count()];
        var ids = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (JsonProperty p in vocab.EnumerateObject())
        {
            tokens[p.Value.GetInt32()] = p.Name;
            ids[p.Name] = p.Value.GetInt32();
        }

        var types = new int[tokens.Length];
        var scores = new float[tokens.Length];
        Array.Fill(scores, -1e9f);
        int rank = 0;
        foreach (JsonElement merge in model.GetProperty("merges").EnumerateArray())
        {
            string merged = merge.GetString()!.Replace(" ", string.Empty, StringComparison.Ordinal);
            int id = ids[merged];
            scores[id] = Math.Max(scores[id], -rank);
            rank++;
        }

        for (int i = 0; i < tokens.Length; i++)
        {
            types[i] = i == 0 ? 2 : i <= 2 ? 3 : tokens[i].StartsWith("<0x", StringComparison.Ordinal) && tokens[i].Length == 6 ? 6 : 1;
        }

        return SentencePieceBpeTokenizer.FromVocabulary(tokens, scores, types, 1, 2, 0, addBos: true, addSpacePrefix: true);
    }

    [Fact]
    public void MistralVocabularyAsSentencePieceMatchesReferenceIds()
    {
        RealTokenizerTests.SkipIfMissing();
        SentencePieceBpeTokenizer spm = MistralAsSentencePiece();
        var failures = new List<string>();
        foreach (FixtureCase c in ReferenceFixtures.For("mistral"))
        {
            int[] ids = spm.Encode(c.Text, addSpecialTokens: false);
            int[] idsSpecial = spm.Encode(c.Text);
            if (!ids.SequenceEqual(c.Ids) || !idsSpecial.SequenceEqual(c.IdsWithSpecial))
            {
                failures.Add($"{JsonSerializer.Serialize(c.Text)}: expected [{string.Join(", ", c.IdsWithSpecial)}] got [{string.Join(", ", idsSpecial)}]");
            }

            Assert.Equal(c.Decoded, spm.Decode(c.IdsWithSpecial));
            Assert.Equal(c.DecodedSkipSpecial, spm.Decode(c.IdsWithSpecial, skipSpecialTokens: true));
        }

        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    [Fact]
    public void MergesByHighestScoreThenLeftmost()
    {
        // ▁ a b c; "ab" scores higher than "bc", so "abc" splits as ab|c, and "▁ab" beats "ab" when present.
        string[] tokens = ["<unk>", "<s>", "</s>", "\u2581", "a", "b", "c", "ab", "bc", "\u2581ab"];
        float[] scores = [0, 0, 0, -100, -100, -100, -100, -1, -2, -3];
        int[] types = [2, 3, 3, 1, 1, 1, 1, 1, 1, 1];
        SentencePieceBpeTokenizer spm = SentencePieceBpeTokenizer.FromVocabulary(tokens, scores, types, 1, 2, 0, addBos: true, addSpacePrefix: true);
        // "▁abc": ab (score -1) merges first, then ▁+ab -> ▁ab; c stays.
        Assert.Equal([1, 9, 6], spm.Encode("abc"));
        // Equal scores: leftmost first. "bcbc" -> bc bc; with no prefix space.
        SentencePieceBpeTokenizer noPrefix = SentencePieceBpeTokenizer.FromVocabulary(tokens, scores, types, 1, 2, 0, addBos: false, addSpacePrefix: false);
        Assert.Equal([8, 8], noPrefix.Encode("bcbc"));
        Assert.Equal([5, 7], noPrefix.Encode("bab"));
        // Unknown characters without byte tokens become <unk>; literal <s> is recognised and followed by a fresh ▁.
        Assert.Equal([3, 0, 1, 9], spm.Encode("é<s>ab", addSpecialTokens: false));
        Assert.Equal("é<s> ab".Replace("é", "<unk>", StringComparison.Ordinal), spm.Decode([3, 0, 1, 9]).TrimStart());
    }

    [Fact]
    public void ExportedHuggingFaceTokenizerEncodesIdentically()
    {
        (SentencePieceBpeTokenizer spm, ITokenizer hf) = Trained.Value;
        Assert.True(spm.VocabSize > 400);
        var corpus = ReferenceFixtures.Corpus.Concat(TrainingText.Split('\n')).Append(TrainingText).ToList();
        foreach (string text in corpus)
        {
            foreach (bool special in new[] { false, true })
            {
                int[] expected = spm.Encode(text, special);
                Assert.Equal(expected, hf.Encode(text, special));
                Assert.Equal(spm.Decode(expected), hf.Decode(expected));
                Assert.Equal(spm.Decode(expected, true), hf.Decode(expected, true));
            }
        }

        Assert.Equal(spm.BosTokenId, hf.BosTokenId);
        Assert.Equal(spm.EosTokenId, hf.EosTokenId);
        Assert.Equal(spm.AddBosToken, hf.AddBosToken);
        Assert.Equal(spm.VocabSize, hf.VocabSize);
        // The trained vocabulary really merges: common words are single pieces.
        Assert.Single(spm.Encode("the", addSpecialTokens: false));
    }

    [Fact]
    public void ExportedTokenizerAgreesOnRandomText()
    {
        (SentencePieceBpeTokenizer spm, ITokenizer hf) = Trained.Value;
        Prop.ForAll(TokenizerGenerators.Text(), text =>
        {
            int[] expected = spm.Encode(text);
            return expected.SequenceEqual(hf.Encode(text)) && spm.Decode(expected) == hf.Decode(expected);
        }).QuickCheckThrowOnFailure();
    }

    [Fact]
    public void ExportWithoutSpacePrefixAgrees()
    {
        SentencePieceBpeTokenizer spm = TrainVocabulary(TrainingText, merges: 150, addSpacePrefix: false);
        using TempDirectory dir = TestData.CreateTempDirectory();
        spm.WriteHuggingFaceFiles(dir.Path);
        ITokenizer hf = TokenizerLoader.Load(Path.Combine(dir.Path, "tokenizer.json"));
        foreach (string text in ReferenceFixtures.Corpus)
        {
            Assert.Equal(spm.Encode(text), hf.Encode(text));
        }
    }

    [Fact]
    public void RoundTripIsLosslessForOrdinaryText()
    {
        SentencePieceBpeTokenizer spm = Trained.Value.Spm;
        Prop.ForAll(TokenizerGenerators.Text(), text =>
        {
            // Lossy by design: literal special tokens and U+2581 (decodes to a space).
            bool lossy = text.Contains('\u2581', StringComparison.Ordinal) || text.Contains("<s>", StringComparison.Ordinal) || text.Contains("</s>", StringComparison.Ordinal) || text.Contains("<unk>", StringComparison.Ordinal);
            return lossy || spm.Decode(spm.Encode(text), skipSpecialTokens: true) == ToWellFormed(text);
        }).QuickCheckThrowOnFailure();
    }

    internal static string ToWellFormed(string s) => Encoding.UTF8.GetString(Encoding.UTF8.GetBytes(s));

    [Fact]
    public void StreamingDecodeEqualsDecode()
    {
        SentencePieceBpeTokenizer spm = Trained.Value.Spm;
        Prop.ForAll(TokenizerGenerators.Text(), text =>
        {
            int[] ids = spm.Encode(text);
            return StreamingDecodeTests.Stream(spm, ids, false) == spm.Decode(ids) && StreamingDecodeTests.Stream(spm, ids, true) == spm.Decode(ids, true);
        }).QuickCheckThrowOnFailure();
    }

    [Fact]
    public void BadVocabulariesAreRejectedWithTheGgufKey()
    {
        string[] tokens = ["<unk>", "<s>", "a"];
        float[] scores = [0, 0, 0];
        int[] types = [2, 3, 1];
        Assert.Equal("tokenizer.ggml.scores", Assert.Throws<ModelFormatException>(() => SentencePieceBpeTokenizer.FromVocabulary(tokens, [0, 0], types, 1, null, 0, true, true, "m.gguf")).Field);
        Assert.Equal("tokenizer.ggml.token_type", Assert.Throws<ModelFormatException>(() => SentencePieceBpeTokenizer.FromVocabulary(tokens, scores, [2, 3], 1, null, 0, true, true, "m.gguf")).Field);
        Assert.Equal("tokenizer.ggml.token_type", Assert.Throws<ModelFormatException>(() => SentencePieceBpeTokenizer.FromVocabulary(tokens, scores, [2, 3, 9], 1, null, 0, true, true, "m.gguf")).Field);
        Assert.Equal("tokenizer.ggml.bos_token_id", Assert.Throws<ModelFormatException>(() => SentencePieceBpeTokenizer.FromVocabulary(tokens, scores, types, 3, null, 0, true, true, "m.gguf")).Field);
        Assert.Equal("tokenizer.ggml.unknown_token_id", Assert.Throws<ModelFormatException>(() => SentencePieceBpeTokenizer.FromVocabulary(tokens, scores, types, 1, null, -1, true, true, "m.gguf")).Field);
        ModelFormatException bytes = Assert.Throws<ModelFormatException>(() => SentencePieceBpeTokenizer.FromVocabulary(tokens, scores, [2, 3, 6], 1, null, 0, true, true, "m.gguf"));
        Assert.Equal("m.gguf", bytes.FilePath);
        Assert.Contains("<0xXX>", bytes.Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentOutOfRangeException>(() => SentencePieceBpeTokenizer.FromVocabulary(tokens, scores, types, 1, null, 0, true, true).Decode([3]));
    }
}
