using System.Text.Json.Nodes;
using Petals.Formats;
using Petals.Tokenization;
using Petals.Testing;

namespace Petals.Tests.Tokenization;

public sealed class TokenizerLoaderTests
{
    /// <summary>A tiny but complete byte-fallback BPE tokenizer.json.</summary>
    internal static JsonObject TinyTokenizer()
    {
        var vocab = new JsonObject { ["<unk>"] = 0, ["<s>"] = 1, ["</s>"] = 2 };
        for (int b = 0; b < 256; b++)
        {
            vocab[$"<0x{b:X2}>"] = 3 + b;
        }

        int next = 259;
        foreach (string t in new[] { "\u2581", "a", "b", "c", "ab", "\u2581ab", "bc", "ca" })
        {
            vocab[t] = next++;
        }

        return new JsonObject
        {
            ["version"] = "1.0",
            ["added_tokens"] = new JsonArray(
                new JsonObject { ["id"] = 0, ["content"] = "<unk>", ["special"] = true, ["normalized"] = false },
                new JsonObject { ["id"] = 1, ["content"] = "<s>", ["special"] = true, ["normalized"] = false },
                new JsonObject { ["id"] = 2, ["content"] = "</s>", ["special"] = true, ["normalized"] = false }),
            ["normalizer"] = new JsonObject
            {
                ["type"] = "Sequence",
                ["normalizers"] = new JsonArray(
                    new JsonObject { ["type"] = "Prepend", ["prepend"] = "\u2581" },
                    new JsonObject { ["type"] = "Replace", ["pattern"] = new JsonObject { ["String"] = " " }, ["content"] = "\u2581" }),
            },
            ["pre_tokenizer"] = null,
            ["post_processor"] = null,
            ["decoder"] = new JsonObject
            {
                ["type"] = "Sequence",
                ["decoders"] = new JsonArray(
                    new JsonObject { ["type"] = "Replace", ["pattern"] = new JsonObject { ["String"] = "\u2581" }, ["content"] = " " },
                    new JsonObject { ["type"] = "ByteFallback" },
                    new JsonObject { ["type"] = "Fuse" },
                    new JsonObject { ["type"] = "Strip", ["content"] = " ", ["start"] = 1, ["stop"] = 0 }),
            },
            ["model"] = new JsonObject
            {
                ["type"] = "BPE",
                ["unk_token"] = "<unk>",
                ["fuse_unk"] = true,
                ["byte_fallback"] = true,
                ["vocab"] = vocab,
                ["merges"] = new JsonArray("a b", new JsonArray("\u2581", "ab"), "b c", "c a"),
            },
        };
    }

    private static ModelFormatException LoadBad(JsonObject json, string? config = null)
    {
        using TempDirectory dir = TestData.CreateTempDirectory();
        File.WriteAllText(Path.Combine(dir.Path, "tokenizer.json"), json.ToJsonString());
        if (config is not null)
        {
            File.WriteAllText(Path.Combine(dir.Path, "tokenizer_config.json"), config);
        }

        ModelFormatException ex = Assert.Throws<ModelFormatException>(() => TokenizerLoader.Load(dir.Path));
        Assert.Contains(dir.Path, ex.FilePath, StringComparison.Ordinal);
        return ex;
    }

    [Fact]
    public void TinyTokenizerWorks()
    {
        ITokenizer t = TokenizerLoader.FromJson(TinyTokenizer().ToJsonString());
        // "▁abca": a+b (rank 0) -> ab, ▁+ab (rank 1) -> ▁ab, c+a (rank 3) -> ca.
        Assert.Equal([264, 266], t.Encode("abca"));
        Assert.Equal([259, 3 + 0xC3, 3 + 0xA9], t.Encode("é"));
        Assert.Equal("é", t.Decode(t.Encode("é")));
        Assert.Equal([264, 1, 264], t.Encode("ab<s>ab"));
        Assert.False(t.AddBosToken);
        Assert.Null(t.BosTokenId);
    }

    [Fact]
    public void ConfigAddBosAndAddEosRebuildTheTemplate()
    {
        ITokenizer t = TokenizerLoader.FromJson(TinyTokenizer().ToJsonString(), """{"add_bos_token": true, "add_eos_token": true, "bos_token": "<s>", "eos_token": {"content": "</s>"}}""");
        Assert.Equal([1, 264, 2], t.Encode("ab"));
        Assert.Equal([264], t.Encode("ab", addSpecialTokens: false));
        Assert.True(t.AddBosToken);
        Assert.Equal(1, t.BosTokenId);
        Assert.Equal(2, t.EosTokenId);
    }

    [Fact]
    public void MissingPathsAreReported()
    {
        using TempDirectory dir = TestData.CreateTempDirectory();
        Assert.Equal(dir.Path, Assert.Throws<ModelFormatException>(() => TokenizerLoader.Load(dir.Path)).FilePath);
        string missing = Path.Combine(dir.Path, "nope.json");
        Assert.Equal(missing, Assert.Throws<ModelFormatException>(() => TokenizerLoader.Load(missing)).FilePath);
    }

    [Fact]
    public void InvalidJsonIsReported()
    {
        using TempDirectory dir = TestData.CreateTempDirectory();
        string path = Path.Combine(dir.Path, "tokenizer.json");
        File.WriteAllText(path, "{ \"model\": ");
        ModelFormatException ex = Assert.Throws<ModelFormatException>(() => TokenizerLoader.Load(path));
        Assert.Equal(path, ex.FilePath);
        Assert.Contains("invalid JSON", ex.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("WordPiece")]
    [InlineData("Unigram")]
    [InlineData("WordLevel")]
    public void UnsupportedModelTypesAreReported(string type)
    {
        JsonObject json = TinyTokenizer();
        json["model"]!["type"] = type;
        ModelFormatException ex = LoadBad(json);
        Assert.Equal("model.type", ex.Field);
        Assert.Contains(type, ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void MissingFieldsAreReported()
    {
        JsonObject json = TinyTokenizer();
        json.Remove("model");
        Assert.Equal("model", LoadBad(json).Field);

        json = TinyTokenizer();
        ((JsonObject)json["model"]!).Remove("vocab");
        Assert.Equal("model.vocab", LoadBad(json).Field);

        json = TinyTokenizer();
        ((JsonObject)json["added_tokens"]![1]!).Remove("content");
        Assert.Equal("added_tokens[1].content", LoadBad(json).Field);

        json = TinyTokenizer();
        ((JsonObject)json["normalizer"]!["normalizers"]![0]!).Remove("prepend");
        Assert.Equal("normalizer.normalizers[0].prepend", LoadBad(json).Field);
    }

    [Fact]
    public void UnknownComponentsAreReported()
    {
        JsonObject json = TinyTokenizer();
        json["normalizer"] = new JsonObject { ["type"] = "Precompiled" };
        Assert.Equal("normalizer.type", LoadBad(json).Field);

        json = TinyTokenizer();
        json["pre_tokenizer"] = new JsonObject { ["type"] = "Sequence", ["pretokenizers"] = new JsonArray(new JsonObject { ["type"] = "BertPreTokenizer" }) };
        Assert.Equal("pre_tokenizer.pretokenizers[0].type", LoadBad(json).Field);

        json = TinyTokenizer();
        json["decoder"]!["decoders"]![1] = new JsonObject { ["type"] = "WordPiece" };
        Assert.Equal("decoder.decoders[1].type", LoadBad(json).Field);

        json = TinyTokenizer();
        json["post_processor"] = new JsonObject { ["type"] = "Fancy" };
        Assert.Equal("post_processor.type", LoadBad(json).Field);

        json = TinyTokenizer();
        json["pre_tokenizer"] = new JsonObject { ["type"] = "Split", ["pattern"] = new JsonObject { ["Regex"] = "(" }, ["behavior"] = "Isolated" };
        Assert.Equal("pre_tokenizer.pattern", LoadBad(json).Field);

        json = TinyTokenizer();
        json["pre_tokenizer"] = new JsonObject { ["type"] = "Split", ["pattern"] = new JsonObject { ["Regex"] = "a" }, ["behavior"] = "Sideways" };
        Assert.Equal("pre_tokenizer.behavior", LoadBad(json).Field);
    }

    [Fact]
    public void BadMergesAndVocabAreReported()
    {
        JsonObject json = TinyTokenizer();
        json["model"]!["merges"]![2] = "b zz";
        ModelFormatException ex = LoadBad(json);
        Assert.Equal("model.merges[2]", ex.Field);
        Assert.Contains("zz", ex.Message, StringComparison.Ordinal);

        json = TinyTokenizer();
        json["model"]!["merges"]![0] = "abc";
        Assert.Equal("model.merges[0]", LoadBad(json).Field);

        json = TinyTokenizer();
        json["model"]!["vocab"]!["a"] = "one";
        Assert.Equal("model.vocab", LoadBad(json).Field);

        json = TinyTokenizer();
        json["model"]!["unk_token"] = "<nope>";
        Assert.Equal("model.unk_token", LoadBad(json).Field);
    }

    [Fact]
    public void BadConfigIsReported()
    {
        ModelFormatException ex = LoadBad(TinyTokenizer(), """{"bos_token": "<nope>"}""");
        Assert.Equal("bos_token", ex.Field);
        Assert.EndsWith("tokenizer_config.json", ex.FilePath, StringComparison.Ordinal);
        Assert.Equal("add_bos_token", LoadBad(TinyTokenizer(), """{"add_bos_token": true}""").Field);
        Assert.Contains("invalid JSON", LoadBad(TinyTokenizer(), "{").Message, StringComparison.Ordinal);
    }
}
