using System.Text;
using FsCheck;
using FsCheck.Fluent;
using Petals.Tokenization;

namespace Petals.Tests.Tokenization;

public sealed class StreamingDecodeTests
{
    internal static string Stream(ITokenizer tokenizer, int[] ids, bool skip)
    {
        IStreamingDecoder decoder = tokenizer.CreateStreamingDecoder(skip);
        var sb = new StringBuilder();
        foreach (int id in ids)
        {
            string piece = decoder.Append(id);
            if (piece.Length > 0 && char.IsHighSurrogate(piece[^1]))
            {
                throw new InvalidOperationException("a piece ends in the middle of a surrogate pair");
            }

            sb.Append(piece);
        }

        return sb.Append(decoder.Flush()).ToString();
    }

    [Theory]
    [InlineData("llama3")]
    [InlineData("mistral")]
    public void RandomTextStreamsLikeDecode(string name)
    {
        RealTokenizerTests.SkipIfMissing();
        ITokenizer tokenizer = RealTokenizerTests.Get(name);
        Prop.ForAll(TokenizerGenerators.Text(), text =>
        {
            int[] ids = tokenizer.Encode(text);
            return Stream(tokenizer, ids, false) == tokenizer.Decode(ids) && Stream(tokenizer, ids, true) == tokenizer.Decode(ids, true);
        }).QuickCheckThrowOnFailure();
    }

    [Theory]
    [InlineData("llama3")]
    [InlineData("mistral")]
    public void RandomIdsStreamLikeDecode(string name)
    {
        // Arbitrary id sequences, including byte tokens that never form valid UTF-8.
        RealTokenizerTests.SkipIfMissing();
        ITokenizer tokenizer = RealTokenizerTests.Get(name);
        Gen<int> id = Gen.Frequency((3, Gen.Choose(0, 300)), (1, Gen.Choose(0, tokenizer.VocabSize - 1)));
        Prop.ForAll(Arb.From(Gen.ArrayOf(id)), ids =>
            Stream(tokenizer, ids, false) == tokenizer.Decode(ids) && Stream(tokenizer, ids, true) == tokenizer.Decode(ids, true))
            .QuickCheckThrowOnFailure();
    }

    [Theory]
    [InlineData("llama3")]
    [InlineData("mistral")]
    public void LongStreamsStayExactAndLinear(string name)
    {
        // Thousands of ids: the decoder's window is compacted many times and must still reproduce Decode exactly.
        RealTokenizerTests.SkipIfMissing();
        ITokenizer tokenizer = RealTokenizerTests.Get(name);
        string text = string.Concat(Enumerable.Repeat(string.Join("\n", ReferenceFixtures.Corpus.Take(80)), 3));
        int[] ids = tokenizer.Encode(text);
        Assert.True(ids.Length > 2000, $"only {ids.Length} ids");
        var sw = System.Diagnostics.Stopwatch.StartNew();
        Assert.Equal(tokenizer.Decode(ids), Stream(tokenizer, ids, false));
        Assert.Equal(tokenizer.Decode(ids, true), Stream(tokenizer, ids, true));
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(10), $"streaming {ids.Length} ids took {sw.Elapsed}");
    }

    [Fact]
    public void MultiByteCharacterIsHeldBackUntilComplete()
    {
        RealTokenizerTests.SkipIfMissing();
        ITokenizer mistral = RealTokenizerTests.Get("mistral");
        // 😀 = F0 9F 98 80: four byte-fallback tokens after "▁".
        int[] ids = mistral.Encode("😀", addSpecialTokens: false);
        IStreamingDecoder decoder = mistral.CreateStreamingDecoder();
        var pieces = ids.Select(decoder.Append).ToList();
        Assert.Equal("😀", string.Concat(pieces));
        Assert.Equal("😀", pieces[^1]);
        Assert.Equal(string.Empty, decoder.Flush());

        // An incomplete character is flushed as U+FFFD.
        IStreamingDecoder partial = mistral.CreateStreamingDecoder();
        Assert.Equal(string.Empty, partial.Append(mistral.TokenToId("<0xF0>")!.Value));
        Assert.Equal("\uFFFD", partial.Flush());
    }

    [Fact]
    public void Llama3ByteLevelPiecesNeverSplitCharacters()
    {
        RealTokenizerTests.SkipIfMissing();
        ITokenizer llama3 = RealTokenizerTests.Get("llama3");
        int[] ids = llama3.Encode("Family 👨‍👩‍👧‍👦 🇫🇷 中文", addSpecialTokens: false);
        IStreamingDecoder decoder = llama3.CreateStreamingDecoder();
        foreach (int id in ids)
        {
            Assert.DoesNotContain('\uFFFD', decoder.Append(id));
        }
    }
}
