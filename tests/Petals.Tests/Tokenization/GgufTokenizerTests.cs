using System.Text;
using Petals.Formats.Gguf;
using FsCheck;
using FsCheck.Fluent;
using Petals.Tokenization;
using TestData = Petals.Testing.TestData;

namespace Petals.Tests.Tokenization;

/// <summary>
/// The SentencePiece tokenizer on the real vocabulary embedded in stories260K (llama2.c, GGUF v1), checked against
/// a naive O(n²) implementation of the same rule written independently here, and against its Hugging Face export.
/// </summary>
public sealed class GgufTokenizerTests
{
    private static readonly Lazy<(SentencePieceBpeTokenizer Tokenizer, string[] Tokens, float[] Scores)> Stories = new(LoadStories);

    private static (SentencePieceBpeTokenizer, string[], float[]) LoadStories()
    {
        using var gguf = GgufFile.Open(TestData.Stories260KGguf);
        var tokenizer = Assert.IsType<SentencePieceBpeTokenizer>(TokenizerLoader.FromGguf(gguf));
        return (tokenizer, [.. gguf.Tokenizer.Tokens!], [.. gguf.Tokenizer.Scores!]);
    }

    [Fact]
    public void LoadingAGgufPathGivesTheEmbeddedVocabularyWithItsSpecialTokens()
    {
        SkipIfMissing();
        var tokenizer = TokenizerLoader.Load(TestData.Stories260KGguf);
        Assert.Equal(512, tokenizer.VocabSize);
        Assert.Equal(1, tokenizer.BosTokenId);
        Assert.Equal(2, tokenizer.EosTokenId);
        Assert.True(tokenizer.AddBosToken);
        Assert.True(tokenizer.IsSpecial(1));
        Assert.Equal([1, 403, 407, 261, 378], tokenizer.Encode("Once upon a time"));
    }

    private static List<int> NaiveEncode(string text, string[] tokens, float[] scores)
    {
        var ids = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int i = 0; i < tokens.Length; i++)
        {
            ids[tokens[i]] = i;
        }

        if (text.Length == 0)
        {
            return [];
        }

        string s = "\u2581" + text.Replace(' ', '\u2581');
        var symbols = new List<string>();
        for (int i = 0; i < s.Length; i += char.IsSurrogatePair(s, i) ? 2 : 1)
        {
            symbols.Add(s.Substring(i, char.IsSurrogatePair(s, i) ? 2 : 1));
        }

        while (true)
        {
            int best = -1;
            float bestScore = float.NegativeInfinity;
            for (int i = 0; i + 1 < symbols.Count; i++)
            {
                if (ids.TryGetValue(symbols[i] + symbols[i + 1], out int id) && scores[id] > bestScore)
                {
                    best = i;
                    bestScore = scores[id];
                }
            }

            if (best < 0)
            {
                break;
            }

            symbols[best] += symbols[best + 1];
            symbols.RemoveAt(best + 1);
        }

        var output = new List<int>();
        foreach (string symbol in symbols)
        {
            if (ids.TryGetValue(symbol, out int id))
            {
                output.Add(id);
            }
            else
            {
                output.AddRange(Encoding.UTF8.GetBytes(symbol).Select(b => ids[$"<0x{b:X2}>"]));
            }
        }

        return output;
    }

    private static void SkipIfMissing()
    {
        if (!TestData.SharedAvailable)
        {
            Assert.Skip(TestData.MissingMessage);
        }
    }

    [Fact]
    public void StoriesVocabularyEncodesLikeTheNaiveRule()
    {
        SkipIfMissing();
        (SentencePieceBpeTokenizer tokenizer, string[] tokens, float[] scores) = Stories.Value;
        Assert.Equal(512, tokenizer.VocabSize);
        Assert.Equal(1, tokenizer.BosTokenId);
        Assert.Equal(2, tokenizer.EosTokenId);
        string story = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. 😀 café";
        int[] ids = tokenizer.Encode(story, addSpecialTokens: false);
        Assert.Equal(NaiveEncode(story, tokens, scores), ids);
        Assert.Equal(1, tokenizer.Encode(story)[0]);
        Assert.Equal(story, tokenizer.Decode(ids));
        Assert.True(ids.Length < story.Length / 2, "the real vocabulary merges common words");

        Prop.ForAll(TokenizerGenerators.Text(), text =>
        {
            string clean = text.Replace("<s>", "", StringComparison.Ordinal).Replace("</s>", "", StringComparison.Ordinal).Replace("<unk>", "", StringComparison.Ordinal);
            return NaiveEncode(clean, tokens, scores).SequenceEqual(tokenizer.Encode(clean, addSpecialTokens: false));
        }).QuickCheckThrowOnFailure();
    }

    [Fact]
    public void StoriesVocabularyExportsToAnEquivalentHuggingFaceTokenizer()
    {
        SkipIfMissing();
        SentencePieceBpeTokenizer tokenizer = Stories.Value.Tokenizer;
        using Petals.Testing.TempDirectory dir = TestData.CreateTempDirectory();
        tokenizer.WriteHuggingFaceFiles(dir.Path);
        ITokenizer hf = TokenizerLoader.Load(dir.Path);
        foreach (string text in ReferenceFixtures.Corpus)
        {
            int[] ids = tokenizer.Encode(text);
            Assert.Equal(ids, hf.Encode(text));
            Assert.Equal(tokenizer.Decode(ids), hf.Decode(ids));
            Assert.Equal(tokenizer.Decode(ids, true), hf.Decode(ids, true));
        }

        Prop.ForAll(TokenizerGenerators.Text(), text => tokenizer.Encode(text).SequenceEqual(hf.Encode(text))).QuickCheckThrowOnFailure();
    }
}

public sealed class GgufTokenizerDispatchTests
{
    [Fact]
    public void AnUnsupportedGgufTokenizerModelIsNamedByItsKey()
    {
        using var dir = TestData.CreateTempDirectory();
        var path = new Petals.Tests.Formats.GgufTestWriter(3)
            .AddString("tokenizer.ggml.model", "bert")
            .Add("tokenizer.ggml.tokens", GgufValueType.Array, new Petals.Tests.Formats.GgufArray(GgufValueType.String, new[] { "a", "b" }))
            .Write(Path.Combine(dir.Path, "bert.gguf"));
        using var gguf = GgufFile.Open(path);
        var ex = Assert.Throws<Petals.Formats.ModelFormatException>(() => TokenizerLoader.FromGguf(gguf));
        Assert.Equal("tokenizer.ggml.model", ex.Field);
        Assert.Contains(path, ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void AGpt2GgufVocabularyBecomesAByteLevelBpeTokenizer()
    {
        using var dir = TestData.CreateTempDirectory();
        string[] tokens = ["a", "b", "ab", "Ġ", "Ġab"];
        var path = new Petals.Tests.Formats.GgufTestWriter(3)
            .AddString("tokenizer.ggml.model", "gpt2")
            .Add("tokenizer.ggml.tokens", GgufValueType.Array, new Petals.Tests.Formats.GgufArray(GgufValueType.String, tokens))
            .Add("tokenizer.ggml.merges", GgufValueType.Array, new Petals.Tests.Formats.GgufArray(GgufValueType.String, new[] { "a b", "Ġ ab" }))
            .Write(Path.Combine(dir.Path, "bpe.gguf"));
        using var gguf = GgufFile.Open(path);
        var tokenizer = TokenizerLoader.FromGguf(gguf);
        Assert.Equal([2, 4], tokenizer.Encode("ab ab", addSpecialTokens: false));
        Assert.Equal("ab ab", tokenizer.Decode([2, 4]));
    }

    [Fact]
    public void GgufVocabulariesOfBothTypesExportLoadableTokenizerFiles()
    {
        using var dir = TestData.CreateTempDirectory();
        string[] tokens = ["a", "b", "ab", "Ġ", "Ġab", "<s>"];
        var path = new Petals.Tests.Formats.GgufTestWriter(3)
            .AddString("tokenizer.ggml.model", "gpt2")
            .Add("tokenizer.ggml.tokens", GgufValueType.Array, new Petals.Tests.Formats.GgufArray(GgufValueType.String, tokens))
            .Add("tokenizer.ggml.token_type", GgufValueType.Array, new Petals.Tests.Formats.GgufArray(GgufValueType.Int32, new[] { 1, 1, 1, 1, 1, 3 }))
            .Add("tokenizer.ggml.merges", GgufValueType.Array, new Petals.Tests.Formats.GgufArray(GgufValueType.String, new[] { "a b", "Ġ ab" }))
            .AddU32("tokenizer.ggml.bos_token_id", 5)
            .Add("tokenizer.ggml.add_bos_token", GgufValueType.Bool, true)
            .Write(Path.Combine(dir.Path, "bpe.gguf"));
        using (var gguf = GgufFile.Open(path))
        {
            var outDir = Path.Combine(dir.Path, "bpe-hf");
            TokenizerLoader.WriteHuggingFaceFiles(gguf, outDir);
            var exported = TokenizerLoader.Load(outDir);
            Assert.Equal([5, 2, 4], exported.Encode("ab ab"));
            Assert.Equal([2, 5, 4], exported.Encode("ab<s>Ġab".Replace("Ġ", " ", StringComparison.Ordinal), addSpecialTokens: false));
            Assert.Equal("ab ab", exported.Decode([5, 2, 4], skipSpecialTokens: true));
            Assert.Equal(TokenizerLoader.FromGguf(gguf).Encode("b ab a", addSpecialTokens: true), exported.Encode("b ab a"));
        }

        var stories = TestData.Stories260KGguf;
        if (File.Exists(stories))
        {
            using var gguf = GgufFile.Open(stories);
            var outDir = Path.Combine(dir.Path, "spm-hf");
            TokenizerLoader.WriteHuggingFaceFiles(gguf, outDir);
            var exported = TokenizerLoader.Load(outDir);
            var direct = TokenizerLoader.FromGguf(gguf);
            const string text = "Once upon a time, a little dog named Max ran to the park.";
            Assert.Equal(direct.Encode(text), exported.Encode(text));
        }

        using var empty = GgufFile.Open(new Petals.Tests.Formats.GgufTestWriter(3).AddString("general.architecture", "llama").Write(Path.Combine(dir.Path, "none.gguf")));
        Assert.Equal("tokenizer.ggml.tokens", Assert.Throws<Petals.Formats.ModelFormatException>(() => TokenizerLoader.WriteHuggingFaceFiles(empty, Path.Combine(dir.Path, "none"))).Field);
    }

    [Fact]
    public void AGgufWithoutVocabularyIsRejected()
    {
        using var dir = TestData.CreateTempDirectory();
        var path = new Petals.Tests.Formats.GgufTestWriter(2).AddString("general.architecture", "llama").Write(Path.Combine(dir.Path, "novocab.gguf"));
        var ex = Assert.Throws<Petals.Formats.ModelFormatException>(() => TokenizerLoader.Load(path));
        Assert.Equal("tokenizer.ggml.tokens", ex.Field);
    }
}
