using Petals.Testing;
using Petals.Tokenization;
using Petals.Training;

namespace Petals.Tests.Training;

public sealed class JsonLinesDatasetTests
{
    [Theory]
    [InlineData("{\"text\": \"a\"}\n{\"text\": \"b\"\n", 2, "not valid JSON")]
    [InlineData("{\"text\": \"a\"}\n\n[1, 2]\n", 3, "expected a JSON object")]
    [InlineData("{\"txt\": \"a\"}\n", 1, "\"text\"")]
    [InlineData("{\"text\": 5}\n", 1, "\"text\"")]
    [InlineData("{\"text\": \"a\", \"label\": \"happy\"}\n", 1, "non-negative integer")]
    [InlineData("{\"text\": \"a\", \"label\": -1}\n", 1, "non-negative integer")]
    [InlineData("{\"text\": \"a\", \"label\": 1.5}\n", 1, "non-negative integer")]
    [InlineData("{\"text\": \"a\", \"label\": 1}\n{\"text\": \"b\"}\n", 2, "label all lines or none")]
    [InlineData("{\"text\": \"one\"}\n{\"text\": \"\"}\n", 2, "no token")]
    public void ABadLineIsNamedByItsNumber(string content, int line, string message)
    {
        var tokenizer = Tokenizer();
        var e = Assert.Throws<InvalidDataException>(() => JsonLinesDataset.Parse(new StringReader(content), "data.jsonl", tokenizer, 16));
        Assert.StartsWith($"data.jsonl:{line}: ", e.Message, StringComparison.Ordinal);
        Assert.Contains(message, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void AFileOfBlankLinesHasNoExample()
    {
        var e = Assert.Throws<InvalidDataException>(() => JsonLinesDataset.Parse(new StringReader("\n  \n"), "empty.jsonl", Tokenizer(), 16));
        Assert.Contains("empty.jsonl: no example", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void TextsAreTokenisedWithBosAndTruncated()
    {
        var tokenizer = Tokenizer();
        var examples = JsonLinesDataset.Parse(new StringReader("{\"text\": \"Once upon a time there was a little girl named Lily.\", \"label\": 1}\n\n{\"text\": \"Hi\", \"label\": 0}"), "d", tokenizer, 5);

        Assert.Equal(2, examples.Count);
        Assert.Equal(tokenizer.Encode("Once upon a time there was a little girl named Lily.", addSpecialTokens: true)[..5], examples[0].TokenIds);
        Assert.Equal(tokenizer.BosTokenId, examples[0].TokenIds[0]);
        Assert.Equal(1, examples[0].Label);
        Assert.Equal(3, examples[1].LineNumber);
        Assert.Equal(0, examples[1].Label);
    }

    [Fact]
    public void LoadNamesTheFileInErrors()
    {
        using var dir = TestData.CreateTempDirectory();
        var path = Path.Combine(dir.Path, "bad.jsonl");
        File.WriteAllText(path, "{\"text\": \"ok\"}\n{\"text\": \"ok\"}\nnope\n");
        var e = Assert.Throws<InvalidDataException>(() => JsonLinesDataset.Load(path, Tokenizer(), 8));
        Assert.StartsWith(path + ":3: not valid JSON", e.Message, StringComparison.Ordinal);
    }

    internal static ITokenizer Tokenizer()
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        return TokenizerLoader.Load(TestData.Stories260KGguf);
    }
}
