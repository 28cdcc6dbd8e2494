using System.Text.Json;
using Petals.Formats;
using Petals.Tokenization;

namespace Petals.Tests.Tokenization;

public sealed class ByteLevelBpeTokenizerTests
{
    /// <summary>The Llama 3 vocabulary as a GGUF "gpt2" tokenizer stores it: tokens by id, types, merges.</summary>
    private static (string[] Tokens, int[] Types, string[] Merges) Llama3AsGguf()
    {
        using JsonDocument doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(Petals.Testing.TestData.Llama3TokenizerDir, "tokenizer.json")));
        JsonElement model = doc.RootElement.GetProperty("model");
        var tokens = new string[128256];
        var types = new int[128256];
        foreach (JsonProperty p in model.GetProperty("vocab").EnumerateObject())
        {
            tokens[p.Value.GetInt32()] = p.Name;
            types[p.Value.GetInt32()] = 1;
        }

        foreach (JsonElement added in doc.RootElement.GetProperty("added_tokens").EnumerateArray())
        {
            tokens[added.GetProperty("id").GetInt32()] = added.GetProperty("content").GetString()!;
            types[added.GetProperty("id").GetInt32()] = 3;
        }

        string[] merges = model.GetProperty("merges").EnumerateArray().Select(m => m.GetString()!).ToArray();
        return (tokens, types, merges);
    }

    [Fact]
    public void Llama3GgufVocabularyMatchesReferenceIds()
    {
        RealTokenizerTests.SkipIfMissing();
        (string[] tokens, int[] types, string[] merges) = Llama3AsGguf();
        ITokenizer tokenizer = ByteLevelBpeTokenizer.FromVocabulary(tokens, types, merges, "llama-bpe", 128000, 128009, addBos: true, "llama3.gguf");
        Assert.True(tokenizer.AddBosToken);
        Assert.Equal(128000, tokenizer.BosTokenId);
        Assert.Equal(128009, tokenizer.EosTokenId);
        Assert.Equal(128256, tokenizer.VocabSize);
        foreach (FixtureCase c in ReferenceFixtures.For("llama3"))
        {
            Assert.Equal(c.Ids, tokenizer.Encode(c.Text, addSpecialTokens: false));
            Assert.Equal([128000, .. c.Ids], tokenizer.Encode(c.Text));
            Assert.Equal(c.Decoded, tokenizer.Decode(c.Ids));
        }
    }

    [Fact]
    public void BadGgufVocabulariesNameTheKey()
    {
        string[] tokens = ["a", "b", "ab", "<|x|>"];
        int[] types = [1, 1, 1, 3];
        Assert.Equal("tokenizer.ggml.token_type", Assert.Throws<ModelFormatException>(() => ByteLevelBpeTokenizer.FromVocabulary(tokens, [1, 1], ["a b"], null, null, null, false, "m.gguf")).Field);
        Assert.Equal("tokenizer.ggml.merges", Assert.Throws<ModelFormatException>(() => ByteLevelBpeTokenizer.FromVocabulary(tokens, types, ["a c"], null, null, null, false, "m.gguf")).Field);
        Assert.Equal("tokenizer.ggml.pre", Assert.Throws<ModelFormatException>(() => ByteLevelBpeTokenizer.FromVocabulary(tokens, types, ["a b"], "qwen2", null, null, false, "m.gguf")).Field);
        Assert.Equal("tokenizer.ggml.bos_token_id", Assert.Throws<ModelFormatException>(() => ByteLevelBpeTokenizer.FromVocabulary(tokens, types, ["a b"], null, 9, null, true, "m.gguf")).Field);
        ITokenizer ok = ByteLevelBpeTokenizer.FromVocabulary(tokens, types, ["a b"], null, 3, null, true, "m.gguf");
        Assert.Equal([3, 2, 3], ok.Encode("ab<|x|>"));
    }
}
