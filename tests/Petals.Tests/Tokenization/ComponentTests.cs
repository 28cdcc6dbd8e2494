using System.Text.Json.Nodes;
using Petals.Tokenization;
using Petals.Tokenization.HuggingFace;

namespace Petals.Tests.Tokenization;

/// <summary>Components whose semantics the JavaScript references do not reproduce; expected values follow the Rust crate's documentation and tests.</summary>
public sealed class ComponentTests
{
    private static List<string> PreTokenize(PreTokenizer p, string text, bool atStart = true)
    {
        var pieces = new List<Piece> { new(text, atStart) };
        p.PreTokenize(pieces, []);
        return pieces.Select(x => x.Text).ToList();
    }

    [Theory]
    [InlineData("Removed", new[] { "the", "final", "countdown" })]
    [InlineData("Isolated", new[] { "the", "-", "final", "-", "-", "countdown" })]
    [InlineData("MergedWithPrevious", new[] { "the-", "final-", "-", "countdown" })]
    [InlineData("MergedWithNext", new[] { "the", "-final", "-", "-countdown" })]
    [InlineData("Contiguous", new[] { "the", "-", "final", "--", "countdown" })]
    public void SplitBehaviorsFollowTheRustDocumentation(string behavior, string[] expected)
    {
        var split = new SplitPreTokenizer(new CodePointRegex("-"), Enum.Parse<SplitBehavior>(behavior), invert: false);
        Assert.Equal(expected, PreTokenize(split, "the-final--countdown"));
    }

    [Fact]
    public void SplitInvertKeepsTheMatches()
    {
        var split = new SplitPreTokenizer(new CodePointRegex(@"\p{L}+"), SplitBehavior.Removed, invert: true);
        Assert.Equal(["Hey", "friend"], PreTokenize(split, "Hey,  friend!"));
    }

    [Fact]
    public void MetaspaceSplitsBeforeEveryReplacement()
    {
        Assert.Equal(["▁Hey", "▁", "▁", "▁friend!"], PreTokenize(new MetaspacePreTokenizer("▁", "always", split: true), "Hey   friend!"));
        Assert.Equal(["▁Hey▁▁▁friend!"], PreTokenize(new MetaspacePreTokenizer("▁", "always", split: false), "Hey   friend!"));
        Assert.Equal(["Hey▁friend"], PreTokenize(new MetaspacePreTokenizer("▁", "first", split: false), "Hey friend", atStart: false));
        Assert.Equal(["▁Hey▁friend"], PreTokenize(new MetaspacePreTokenizer("▁", "first", split: false), "Hey friend", atStart: true));
        Assert.Equal(["Hey▁friend"], PreTokenize(new MetaspacePreTokenizer("▁", "never", split: false), "Hey friend"));
    }

    [Fact]
    public void DigitsGroupsOrIsolatesDigits()
    {
        Assert.Equal(["Call ", "123", " please"], PreTokenize(new DigitsPreTokenizer(individual: false), "Call 123 please"));
        Assert.Equal(["Call ", "1", "2", "3", " please"], PreTokenize(new DigitsPreTokenizer(individual: true), "Call 123 please"));
    }

    [Fact]
    public void CodePointRegexSeesAstralLettersAsLetters()
    {
        var regex = new CodePointRegex(@"\p{L}+|\p{So}+|\s+");
        var matches = new List<(int Start, int Length)>();
        string text = "𝓗𝓮𝓵 😀😀 a";
        regex.Matches(text, matches);
        Assert.Equal(["𝓗𝓮𝓵", " ", "😀😀", " ", "a"], matches.Select(m => text.Substring(m.Start, m.Length)));
    }

    [Fact]
    public void DecodersStripAndMetaspace()
    {
        var tokens = new List<string> { "  ab  ", " c " };
        new StripDecoder(' ', 1, 2).DecodeChain(tokens);
        Assert.Equal([" ab", "c"], tokens);

        tokens = ["▁Hey", "▁friend", "!"];
        new MetaspaceDecoder("▁", prepended: true).DecodeChain(tokens);
        Assert.Equal(["Hey", " friend", "!"], tokens);
    }

    [Fact]
    public void AddedTokenFlags()
    {
        AddedToken[] tokens =
        [
            new(100, "[X]", true, LStrip: true, RStrip: false, Normalized: false, SingleWord: false),
            new(101, "ab", false, LStrip: false, RStrip: true, Normalized: false, SingleWord: true),
        ];
        var matcher = new AddedTokenMatcher(tokens);
        var segments = new List<TextSegment>();
        string text = "hi  [X] ab  cab abd ab";
        matcher.Split(text, segments);
        Assert.Equal(
            ["hi", "[X]=100", " ", "ab=101", "cab abd ", "ab=101"],
            segments.Select(s => s.IsToken ? $"{text.Substring(s.Start, s.Length).Trim()}={s.TokenId}" : text.Substring(s.Start, s.Length)));
    }

    [Fact]
    public void NormalizedAddedTokensMatchAfterNormalization()
    {
        JsonObject json = TokenizerLoaderTests.TinyTokenizer();
        json["model"]!["vocab"]!["<x>"] = 300;
        json["added_tokens"]!.AsArray().Add(new JsonObject { ["id"] = 300, ["content"] = "▁<x>", ["special"] = false, ["normalized"] = true });
        ITokenizer t = TokenizerLoader.FromJson(json.ToJsonString());
        // " <x>" normalizes to "▁▁<x>": the normalized added token "▁<x>" is found in the normalized text.
        Assert.Equal([259, 300], t.Encode(" <x>"));
        Assert.False(t.IsSpecial(300));
    }

    [Fact]
    public void ContinuingSubwordPrefixAndIgnoreMerges()
    {
        var json = new JsonObject
        {
            ["model"] = new JsonObject
            {
                ["type"] = "BPE",
                ["continuing_subword_prefix"] = "##",
                ["vocab"] = new JsonObject { ["a"] = 0, ["##b"] = 1, ["ab"] = 2, ["##c"] = 3, ["abc"] = 4, ["b"] = 5 },
                ["merges"] = new JsonArray("a ##b", "ab ##c"),
            },
            ["pre_tokenizer"] = new JsonObject { ["type"] = "WhitespaceSplit" },
        };
        ITokenizer t = TokenizerLoader.FromJson(json.ToJsonString());
        Assert.Equal([4, 2, 5], t.Encode("abc ab b"));

        // ignore_merges: a word in the vocabulary is emitted whole even if the merges could not build it.
        json["model"]!["vocab"]!["ba"] = 6;
        json["model"]!["continuing_subword_prefix"] = null;
        json["model"]!["merges"] = new JsonArray();
        Assert.Equal([5, 0], TokenizerLoader.FromJson(json.ToJsonString()).Encode("ba"));
        json["model"]!["ignore_merges"] = true;
        Assert.Equal([6], TokenizerLoader.FromJson(json.ToJsonString()).Encode("ba"));
    }

    [Fact]
    public void FuseUnkMergesConsecutiveUnknowns()
    {
        JsonObject json = TokenizerLoaderTests.TinyTokenizer();
        json["model"]!["byte_fallback"] = false;
        ITokenizer fused = TokenizerLoader.FromJson(json.ToJsonString());
        Assert.Equal([259, 0, 260], fused.Encode("éèa"));
        json["model"]!["fuse_unk"] = false;
        ITokenizer unfused = TokenizerLoader.FromJson(json.ToJsonString());
        Assert.Equal([259, 0, 0, 260], unfused.Encode("éèa"));
    }

    [Fact]
    public void EncodingIsThreadSafe()
    {
        ITokenizer t = SentencePieceBpeTokenizerTests.TrainVocabulary("the cat sat on the mat with the hat", 30);
        JsonObject json = TokenizerLoaderTests.TinyTokenizer();
        ITokenizer hf = TokenizerLoader.FromJson(json.ToJsonString());
        string[] texts = Enumerable.Range(0, 200).Select(i => string.Concat(Enumerable.Repeat("abc ab ca é the cat ", i % 7 + 1)) + i).ToArray();
        int[][] expectedHf = texts.Select(x => hf.Encode(x)).ToArray();
        int[][] expectedSpm = texts.Select(x => t.Encode(x)).ToArray();
        Parallel.For(0, 2000, i =>
        {
            int k = i % texts.Length;
            Assert.Equal(expectedHf[k], hf.Encode(texts[k]));
            Assert.Equal(expectedSpm[k], t.Encode(texts[k]));
        });
    }
}
