using System.Text.Json;
using System.Text.Json.Nodes;
using Petals.Testing;
using Petals.Tokenization;

namespace Petals.Tests.Tokenization;

/// <summary>
/// Variants of the real files that switch on components the two real files do not use (Metaspace pre-tokenizer
/// with each prepend scheme, NFKC/NFC, Digits, GPT-2 ByteLevel regex with prefix space, Split with String/Regex
/// patterns and Removed/Isolated, a BOS+EOS template, an added token with lstrip/rstrip), checked against ids the
/// reference produced for the same patched files (the patch is read from the fixture itself).
/// </summary>
public sealed class VariantTokenizerTests
{
    public static TheoryData<string> Variants()
    {
        using JsonDocument doc = JsonDocument.Parse(File.ReadAllText(ReferenceFixtures.FixturePath));
        var data = new TheoryData<string>();
        foreach (JsonProperty v in doc.RootElement.GetProperty("variants").EnumerateObject())
        {
            data.Add(v.Name);
        }

        return data;
    }

    private static ITokenizer LoadVariant(string name, TempDirectory dir)
    {
        JsonNode fixture = JsonNode.Parse(File.ReadAllText(ReferenceFixtures.FixturePath))!;
        JsonObject variant = fixture["variants"]![name]!.AsObject();
        string baseDir = Path.Combine(TestData.SharedRoot, "tokenizers", variant["base"]!.GetValue<string>());
        JsonObject json = JsonNode.Parse(File.ReadAllText(Path.Combine(baseDir, "tokenizer.json")))!.AsObject();
        JsonObject config = JsonNode.Parse(File.ReadAllText(Path.Combine(baseDir, "tokenizer_config.json")))!.AsObject();
        foreach ((string key, JsonNode? value) in variant["patch"]!.AsObject())
        {
            json[key] = value?.DeepClone();
        }

        if (variant["addedTokenFlags"] is JsonObject flags)
        {
            foreach ((string content, JsonNode? values) in flags)
            {
                foreach (JsonNode? token in json["added_tokens"]!.AsArray())
                {
                    if (token!["content"]!.GetValue<string>() == content)
                    {
                        foreach ((string flag, JsonNode? flagValue) in values!.AsObject())
                        {
                            token[flag] = flagValue?.DeepClone();
                        }
                    }
                }
            }
        }

        File.WriteAllText(Path.Combine(dir.Path, "tokenizer.json"), json.ToJsonString());
        File.WriteAllText(Path.Combine(dir.Path, "tokenizer_config.json"), config.ToJsonString());
        return TokenizerLoader.Load(dir.Path);
    }

    [Theory]
    [MemberData(nameof(Variants))]
    public void VariantMatchesReference(string name)
    {
        RealTokenizerTests.SkipIfMissing();
        using TempDirectory dir = TestData.CreateTempDirectory();
        ITokenizer tokenizer = LoadVariant(name, dir);
        var failures = new List<string>();
        foreach (FixtureCase c in ReferenceFixtures.For(name))
        {
            int[] ids = tokenizer.Encode(c.Text, addSpecialTokens: false);
            int[] idsSpecial = tokenizer.Encode(c.Text);
            if (!ids.SequenceEqual(c.Ids) || !idsSpecial.SequenceEqual(c.IdsWithSpecial))
            {
                failures.Add($"encode {JsonSerializer.Serialize(c.Text)}: expected [{string.Join(", ", c.IdsWithSpecial)}] got [{string.Join(", ", idsSpecial)}]");
                continue;
            }

            string decoded = tokenizer.Decode(c.IdsWithSpecial);
            string skipped = tokenizer.Decode(c.IdsWithSpecial, skipSpecialTokens: true);
            if (decoded != c.Decoded || skipped != c.DecodedSkipSpecial)
            {
                failures.Add($"decode {JsonSerializer.Serialize(c.Text)}: expected {JsonSerializer.Serialize(c.Decoded)} / {JsonSerializer.Serialize(c.DecodedSkipSpecial)} got {JsonSerializer.Serialize(decoded)} / {JsonSerializer.Serialize(skipped)}");
            }

            Assert.Equal(decoded, StreamingDecodeTests.Stream(tokenizer, c.IdsWithSpecial, false));
        }

        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }
}
