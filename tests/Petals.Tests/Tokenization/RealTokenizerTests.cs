using System.Diagnostics;
using Petals.Testing;
using Petals.Tokenization;

namespace Petals.Tests.Tokenization;

/// <summary>The real Llama 3 and Mistral tokenizer files against ids from an independent reference implementation.</summary>
public sealed class RealTokenizerTests
{
    private static readonly Lazy<ITokenizer> Llama3 = new(() => TokenizerLoader.Load(TestData.Llama3TokenizerDir));
    private static readonly Lazy<ITokenizer> Mistral = new(() => TokenizerLoader.Load(TestData.MistralTokenizerDir));

    internal static ITokenizer Get(string name) => name == "llama3" ? Llama3.Value : Mistral.Value;

    public static TheoryData<string> Names => new("llama3", "mistral");

    internal static void SkipIfMissing()
    {
        if (!Directory.Exists(TestData.Llama3TokenizerDir) || !Directory.Exists(TestData.MistralTokenizerDir))
        {
            Assert.Skip(TestData.MissingMessage);
        }
    }

    [Theory]
    [MemberData(nameof(Names))]
    public void EncodeMatchesReferenceWithoutSpecialTokens(string name)
    {
        SkipIfMissing();
        ITokenizer tokenizer = Get(name);
        var failures = new List<string>();
        foreach (FixtureCase c in ReferenceFixtures.For(name))
        {
            int[] ids = tokenizer.Encode(c.Text, addSpecialTokens: false);
            if (!ids.SequenceEqual(c.Ids))
            {
                failures.Add($"{Show(c.Text)}: expected [{string.Join(", ", c.Ids)}] got [{string.Join(", ", ids)}]");
            }
        }

        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    [Theory]
    [MemberData(nameof(Names))]
    public void EncodeMatchesReferenceWithSpecialTokens(string name)
    {
        SkipIfMissing();
        ITokenizer tokenizer = Get(name);
        var failures = new List<string>();
        foreach (FixtureCase c in ReferenceFixtures.For(name))
        {
            int[] ids = tokenizer.Encode(c.Text, addSpecialTokens: true);
            if (!ids.SequenceEqual(c.IdsWithSpecial))
            {
                failures.Add($"{Show(c.Text)}: expected [{string.Join(", ", c.IdsWithSpecial)}] got [{string.Join(", ", ids)}]");
            }
        }

        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    [Theory]
    [MemberData(nameof(Names))]
    public void DecodeMatchesReference(string name)
    {
        SkipIfMissing();
        ITokenizer tokenizer = Get(name);
        var failures = new List<string>();
        foreach (FixtureCase c in ReferenceFixtures.For(name))
        {
            string decoded = tokenizer.Decode(c.IdsWithSpecial);
            string skipped = tokenizer.Decode(c.IdsWithSpecial, skipSpecialTokens: true);
            if (decoded != c.Decoded || skipped != c.DecodedSkipSpecial)
            {
                failures.Add($"{Show(c.Text)}: expected {Show(c.Decoded)} / {Show(c.DecodedSkipSpecial)} got {Show(decoded)} / {Show(skipped)}");
            }
        }

        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    [Theory]
    [MemberData(nameof(Names))]
    public void DecodeOfIncompleteAndInvalidBytesMatchesReference(string name)
    {
        SkipIfMissing();
        ITokenizer tokenizer = Get(name);
        foreach (DecodeCase c in ReferenceFixtures.DecodeOnly(name))
        {
            Assert.Equal(c.Decoded, tokenizer.Decode(c.Ids));
            Assert.Equal(c.DecodedSkipSpecial, tokenizer.Decode(c.Ids, skipSpecialTokens: true));
            Assert.Equal(c.Decoded, StreamingDecodeTests.Stream(tokenizer, c.Ids, false));
            Assert.Equal(c.DecodedSkipSpecial, StreamingDecodeTests.Stream(tokenizer, c.Ids, true));
        }
    }

    [Theory]
    [MemberData(nameof(Names))]
    public void StreamingDecodeOfCorpusEqualsDecode(string name)
    {
        SkipIfMissing();
        ITokenizer tokenizer = Get(name);
        foreach (FixtureCase c in ReferenceFixtures.For(name))
        {
            foreach (bool skip in new[] { false, true })
            {
                IStreamingDecoder stream = tokenizer.CreateStreamingDecoder(skip);
                var text = new System.Text.StringBuilder();
                foreach (int id in c.IdsWithSpecial)
                {
                    string piece = stream.Append(id);
                    Assert.False(piece.Length > 0 && char.IsHighSurrogate(piece[^1]), "a piece ends inside a surrogate pair");
                    text.Append(piece);
                }

                text.Append(stream.Flush());
                Assert.Equal(tokenizer.Decode(c.IdsWithSpecial, skip), text.ToString());
            }
        }
    }

    [Fact]
    public void Llama3RoundTripIsLossless()
    {
        SkipIfMissing();
        foreach (string text in ReferenceFixtures.Corpus)
        {
            Assert.Equal(text, Llama3.Value.Decode(Llama3.Value.Encode(text, addSpecialTokens: false)));
        }
    }

    [Fact]
    public void MistralRoundTripIsLosslessWithoutSpecialLiterals()
    {
        SkipIfMissing();
        foreach (string text in ReferenceFixtures.Corpus)
        {
            // Lossy by design: special-token literals, and a literal U+2581 (it decodes to a space).
            // Leading spaces do survive: the Strip decoder removes exactly the one space the Prepend normalizer added.
            if (text.Contains("<s>", StringComparison.Ordinal) || text.Contains("</s>", StringComparison.Ordinal) || text.Contains("<unk>", StringComparison.Ordinal) || text.Contains('▁', StringComparison.Ordinal))
            {
                continue;
            }

            Assert.Equal(text, Mistral.Value.Decode(Mistral.Value.Encode(text, addSpecialTokens: true), skipSpecialTokens: true));
        }
    }

    [Fact]
    public void KnownValuesFromSourceMd()
    {
        SkipIfMissing();
        Assert.Equal([9906, 1917], Llama3.Value.Encode("Hello world"));
        Assert.Equal([128000], Llama3.Value.Encode("<|begin_of_text|>"));
        Assert.False(Llama3.Value.AddBosToken);
        Assert.Equal(128000, Llama3.Value.BosTokenId);
        Assert.Equal(128001, Llama3.Value.EosTokenId);
        Assert.Equal(128256, Llama3.Value.VocabSize);
        Assert.True(Llama3.Value.IsSpecial(128000));
        Assert.False(Llama3.Value.IsSpecial(9906));

        Assert.Equal([22557, 1526], Mistral.Value.Encode("Hello world", addSpecialTokens: false));
        Assert.Equal([1, 22557, 1526], Mistral.Value.Encode("Hello world"));
        Assert.True(Mistral.Value.AddBosToken);
        Assert.Equal(1, Mistral.Value.BosTokenId);
        Assert.Equal(2, Mistral.Value.EosTokenId);
        Assert.Equal(32000, Mistral.Value.VocabSize);
        Assert.Equal("▁Hello", Mistral.Value.IdToToken(22557));
        Assert.Equal(22557, Mistral.Value.TokenToId("▁Hello"));
        Assert.Null(Mistral.Value.IdToToken(32000));
        Assert.Null(Mistral.Value.TokenToId("no such token"));
    }

    [Fact]
    public void DecodeRejectsIdsOutsideTheVocabulary()
    {
        SkipIfMissing();
        Assert.Throws<ArgumentOutOfRangeException>(() => Mistral.Value.Decode([1, 32000]));
        Assert.Throws<ArgumentOutOfRangeException>(() => Llama3.Value.Decode([-1]));
        Assert.Throws<ArgumentOutOfRangeException>(() => Llama3.Value.CreateStreamingDecoder().Append(200000));
    }

    [Fact]
    public void Llama3LoadsQuicklyAndEncodesLongTextLinearly()
    {
        SkipIfMissing();
        var sw = Stopwatch.StartNew();
        ITokenizer tokenizer = TokenizerLoader.Load(TestData.Llama3TokenizerDir);
        TimeSpan load = sw.Elapsed;
        string text = string.Concat(Enumerable.Repeat(string.Join(" ", ReferenceFixtures.Corpus), 20));
        sw.Restart();
        int[] ids = tokenizer.Encode(text);
        TimeSpan encode = sw.Elapsed;
        Assert.Equal(text, tokenizer.Decode(ids));
        TestContext.Current.TestOutputHelper?.WriteLine($"load {load.TotalMilliseconds:F0} ms, encode {text.Length} chars in {encode.TotalMilliseconds:F0} ms");
        // Generous bounds (shared, loaded CI machine); the point is "not quadratic, not seconds".
        Assert.True(load < TimeSpan.FromSeconds(5), $"load took {load}");
        Assert.True(encode < TimeSpan.FromSeconds(5), $"encode took {encode}");
    }

    [Fact]
    public void MistralEncodesLongTextWithoutQuadraticBlowUp()
    {
        SkipIfMissing();
        // Mistral has no pre-tokenizer: a whole paragraph is one BPE word.
        string text = string.Concat(Enumerable.Repeat("The quick brown fox jumps over the lazy dog. ", 2000));
        var sw = Stopwatch.StartNew();
        int[] ids = Mistral.Value.Encode(text, addSpecialTokens: false);
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(5), $"encode took {sw.Elapsed}");
        Assert.Equal(text, Mistral.Value.Decode(ids));
    }

    private static string Show(string s) => System.Text.Json.JsonSerializer.Serialize(s);
}
