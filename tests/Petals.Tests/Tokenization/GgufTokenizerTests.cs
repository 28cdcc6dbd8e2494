using System.Text;
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
        Dictionary<string, object> kv = ReadGgufMetadata(TestData.Stories260KGguf);
        string[] tokens = ((object[])kv["tokenizer.ggml.tokens"]).Cast<string>().ToArray();
        float[] scores = ((object[])kv["tokenizer.ggml.scores"]).Cast<float>().ToArray();
        int[] types = ((object[])kv["tokenizer.ggml.token_type"]).Select(Convert.ToInt32).ToArray();
        var tokenizer = SentencePieceBpeTokenizer.FromVocabulary(
            tokens, scores, types, Convert.ToInt32(kv["tokenizer.ggml.bos_token_id"]), Convert.ToInt32(kv["tokenizer.ggml.eos_token_id"]), 0, addBos: true, addSpacePrefix: true, TestData.Stories260KGguf);
        return (tokenizer, tokens, scores);
    }

    /// <summary>Just enough GGUF (v1: 32-bit counts, v2/v3: 64-bit) to read the metadata key/values.</summary>
    private static Dictionary<string, object> ReadGgufMetadata(string path)
    {
        using var reader = new BinaryReader(File.OpenRead(path), Encoding.UTF8);
        Assert.Equal("GGUF"u8.ToArray(), reader.ReadBytes(4));
        uint version = reader.ReadUInt32();
        ulong Count() => version == 1 ? reader.ReadUInt32() : reader.ReadUInt64();
        string Str() => Encoding.UTF8.GetString(reader.ReadBytes(checked((int)Count())));
        object Value(uint type) => type switch
        {
            0 => reader.ReadByte(),
            1 => reader.ReadSByte(),
            2 => reader.ReadUInt16(),
            3 => reader.ReadInt16(),
            4 => reader.ReadUInt32(),
            5 => reader.ReadInt32(),
            6 => reader.ReadSingle(),
            7 => reader.ReadBoolean(),
            8 => Str(),
            9 => Array(),
            10 => reader.ReadUInt64(),
            11 => reader.ReadInt64(),
            12 => reader.ReadDouble(),
            _ => throw new InvalidDataException($"GGUF value type {type}"),
        };
        object[] Array()
        {
            uint itemType = reader.ReadUInt32();
            var items = new object[checked((int)Count())];
            for (int i = 0; i < items.Length; i++)
            {
                items[i] = Value(itemType);
            }

            return items;
        }

        Count();
        ulong kvCount = Count();
        var result = new Dictionary<string, object>();
        for (ulong i = 0; i < kvCount; i++)
        {
            string key = Str();
            result[key] = Value(reader.ReadUInt32());
        }

        return result;
    }

    /// <summary>The rule stated plainly: repeatedly merge the adjacent pair whose concatenation is a piece with the highest score, leftmost first.</summary>
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
