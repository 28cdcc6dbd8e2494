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
    public void Llama3GgufVocabularyExportsTheReferenceTokenizerJson()
    {
        RealTokenizerTests.SkipIfMissing();
        (string[] tokens, int[] types, string[] merges) = Llama3AsGguf();
        using var dir = Petals.Testing.TestData.CreateTempDirectory();
        ByteLevelBpeTokenizer.WriteHuggingFaceFiles(dir.Path, tokens, types, merges, "llama-bpe", 128000, 128009, addBos: true, "llama3.gguf");

        ITokenizer exported = TokenizerLoader.Load(dir.Path);
        Assert.True(exported.AddBosToken);
        Assert.Equal(128000, exported.BosTokenId);
        Assert.Equal(128009, exported.EosTokenId);
        Assert.Equal(128256, exported.VocabSize);
        foreach (FixtureCase c in ReferenceFixtures.For("llama3"))
        {
            Assert.Equal([128000, .. c.Ids], exported.Encode(c.Text));
            Assert.Equal(c.Decoded, exported.Decode(c.Ids));
        }

        // The components are those of the real Llama 3 tokenizer.json, field for field.
        using JsonDocument written = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(dir.Path, "tokenizer.json")));
        using JsonDocument real = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(Petals.Testing.TestData.Llama3TokenizerDir, "tokenizer.json")));
        foreach (string key in new[] { "normalizer", "pre_tokenizer", "decoder", "added_tokens" })
        {
            Assert.True(JsonElement.DeepEquals(real.RootElement.GetProperty(key), written.RootElement.GetProperty(key)), key);
        }

        JsonElement writtenModel = written.RootElement.GetProperty("model");
        foreach (JsonProperty p in real.RootElement.GetProperty("model").EnumerateObject())
        {
            if (p.Name == "vocab")
            {
                foreach (JsonProperty entry in p.Value.EnumerateObject())
                {
                    Assert.Equal(entry.Value.GetInt32(), writtenModel.GetProperty("vocab").GetProperty(entry.Name).GetInt32());
                }
            }
            else
            {
                Assert.True(JsonElement.DeepEquals(p.Value, writtenModel.GetProperty(p.Name)), "model." + p.Name);
            }
        }

        using JsonDocument config = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(dir.Path, "tokenizer_config.json")));
        Assert.Equal("<|begin_of_text|>", config.RootElement.GetProperty("bos_token").GetString());
        Assert.Equal("<|eot_id|>", config.RootElement.GetProperty("eos_token").GetString());
    }

    [Fact]
    public void AMalformedVocabularyWritesNothing()
    {
        using var dir = Petals.Testing.TestData.CreateTempDirectory();
        var target = Path.Combine(dir.Path, "out");
        var ex = Assert.Throws<ModelFormatException>(() => ByteLevelBpeTokenizer.WriteHuggingFaceFiles(target, ["a", "b"], [1, 1], ["a c"], null, null, null, false, "m.gguf"));
        Assert.Equal("tokenizer.ggml.merges", ex.Field);
        Assert.False(Directory.Exists(target));
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
