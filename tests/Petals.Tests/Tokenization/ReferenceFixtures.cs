using System.Text.Json;
using Petals.Testing;

namespace Petals.Tests.Tokenization;

/// <summary>The corpus and expected ids produced by make-fixtures.mjs with the JavaScript reference implementation.</summary>
internal static class ReferenceFixtures
{
    private static readonly Lazy<Dictionary<string, FixtureCase[]>> Cases = new(Load);
    private static readonly Lazy<Dictionary<string, DecodeCase[]>> DecodeCases = new(LoadDecodeCases);

    public static string FixturePath => Path.Combine(TestData.RepositoryRoot, "tests", "Petals.Tests", "Tokenization", "fixtures", "tokenizer-fixtures.json");

    public static FixtureCase[] For(string tokenizer) => Cases.Value[tokenizer];

    public static DecodeCase[] DecodeOnly(string tokenizer) => DecodeCases.Value[tokenizer];

    public static IEnumerable<string> Corpus => For("llama3").Select(c => c.Text);

    private static Dictionary<string, DecodeCase[]> LoadDecodeCases()
    {
        using JsonDocument doc = JsonDocument.Parse(File.ReadAllText(FixturePath));
        var result = new Dictionary<string, DecodeCase[]>();
        foreach (JsonProperty tokenizer in doc.RootElement.GetProperty("decodeOnly").EnumerateObject())
        {
            result[tokenizer.Name] = tokenizer.Value.EnumerateArray().Select(c => new DecodeCase(
                c.GetProperty("ids").EnumerateArray().Select(i => i.GetInt32()).ToArray(),
                c.GetProperty("decoded").GetString()!,
                c.GetProperty("decodedSkipSpecial").GetString()!)).ToArray();
        }

        return result;
    }

    private static Dictionary<string, FixtureCase[]> Load()
    {
        using JsonDocument doc = JsonDocument.Parse(File.ReadAllText(FixturePath));
        var result = new Dictionary<string, FixtureCase[]>();
        foreach (JsonProperty tokenizer in doc.RootElement.GetProperty("tokenizers").EnumerateObject())
        {
            result[tokenizer.Name] = tokenizer.Value.EnumerateArray().Select(c => new FixtureCase(
                c.GetProperty("text").GetString()!,
                c.GetProperty("ids").EnumerateArray().Select(i => i.GetInt32()).ToArray(),
                c.GetProperty("idsWithSpecial").EnumerateArray().Select(i => i.GetInt32()).ToArray(),
                c.GetProperty("decoded").GetString()!,
                c.GetProperty("decodedSkipSpecial").GetString()!)).ToArray();
        }

        return result;
    }
}

internal sealed record DecodeCase(int[] Ids, string Decoded, string DecodedSkipSpecial);

internal sealed record FixtureCase(string Text, int[] Ids, int[] IdsWithSpecial, string Decoded, string DecodedSkipSpecial);
