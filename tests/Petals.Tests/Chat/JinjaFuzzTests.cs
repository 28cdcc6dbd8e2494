using FsCheck;
using FsCheck.Fluent;
using Petals.Chat;

namespace Petals.Tests.Chat;

/// <summary>Random token soup: parsing and rendering either succeed or fail with <see cref="ChatTemplateException"/>, never anything else.</summary>
public sealed class JinjaFuzzTests
{
    private static readonly string[] Pieces =
    [
        "{{", "}}", "{%", "%}", "{#", "#}", "{{-", "-}}", "{%-", "-%}", " ", "\n", "text", "if", "elif", "else", "endif", "for", "in",
        "endfor", "set", "endset", "macro", "endmacro", "call", "endcall", "filter", "endfilter", "break", "continue", "not", "and",
        "or", "is", "defined", "none", "x", "messages", "m", "loop", "ns", "namespace", "range", "raise_exception", "(", ")", "[",
        "]", "{", "}", ",", ".", ":", "|", "=", "==", "!=", "<", ">", "+", "-", "*", "/", "//", "%", "**", "~", "'s'", "\"t\"",
        "0", "1", "-1", "2.5", "trim", "length", "tojson", "items", "join", "selectattr", "map", "attribute", "role", "content",
        "'", "\"", "\\", "true", "false", "caller", "kwargs", "varargs", "strip", "split", "get", "::-1", "[1:]",
    ];

    private static readonly ChatTemplateMessage[] Messages = [new("system", "s"), new("user", "u"), new("assistant", "a")];

    private static void ParseAndRender(string source)
    {
        ChatTemplate template;
        try
        {
            template = ChatTemplate.Parse(source);
        }
        catch (ChatTemplateException e)
        {
            Assert.NotNull(e.Line);
            return;
        }

        try
        {
            template.Render(Messages, new ChatTemplateOptions { Variables = new Dictionary<string, object?> { ["x"] = new object?[] { 1, "two", null } } });
        }
        catch (ChatTemplateException)
        {
        }
    }

    [Fact]
    public void TokenSoupNeverEscapesAsAnotherException()
    {
        var soup = Gen.Elements(Pieces).ListOf().Select(parts => string.Concat(parts));
        Prop.ForAll(soup.ToArbitrary(), source =>
        {
            ParseAndRender(source);
            return true;
        }).Check(Config.QuickThrowOnFailure.WithMaxTest(3000));
    }

    [Fact]
    public void WellFormedTagsWithRandomExpressionsNeverEscapeAsAnotherException()
    {
        var expression = Gen.Elements(Pieces.Where(p => !p.Contains('{', StringComparison.Ordinal) && !p.Contains('}', StringComparison.Ordinal)).ToArray())
            .ListOf().Select(parts => string.Join(" ", parts));
        var template = Gen.OneOf(
            expression.Select(e => "{{ " + e + " }}"),
            expression.Select(e => "{% if " + e + " %}a{% else %}b{% endif %}"),
            expression.Select(e => "{% for v in " + e + " %}{{ v }}{% endfor %}"),
            expression.Select(e => "{% set y = " + e + " %}{{ y }}"));
        Prop.ForAll(template.ToArbitrary(), source =>
        {
            ParseAndRender(source);
            return true;
        }).Check(Config.QuickThrowOnFailure.WithMaxTest(5000));
    }

    [Theory]
    [InlineData("{{ x[0:1:0] }}")]
    [InlineData("{{ 1 // 0 }}")]
    [InlineData("{{ 1 % 0 }}")]
    [InlineData("{{ range(0, 5, 0) }}")]
    [InlineData("{{ 'a'.split('') }}")]
    [InlineData("{% for a, b in [1, 2] %}{% endfor %}")]
    [InlineData("{% set a, b = [1] %}")]
    [InlineData("{{ x | tojson(indent='x') }}")]
    [InlineData("{{ namespace(1, 2) }}")]
    [InlineData("{{ 'x'.startswith() }}")]
    [InlineData("{{ {1: 2} }}")]
    [InlineData("{{ (1, 2) | selectattr('a') }}")]
    [InlineData("{{ 2 ** 10000 }}")]
    [InlineData("{{ -9223372036854775808 | abs }}")]
    [InlineData("{{ -9223372036854775808 % -1 }}")]
    public void EdgeCasesAreTemplateErrors(string source) =>
        Assert.Throws<ChatTemplateException>(() => ChatTemplate.Parse(source).Render(Messages, new ChatTemplateOptions { Variables = new Dictionary<string, object?> { ["x"] = new[] { 1, 2 } } }));

    [Theory]
    [InlineData("{{ x[1::9223372036854775807] }}", "[2]")]
    [InlineData("{{ x[::-9223372036854775808] }}", "[3]")]
    [InlineData("{{ x[-9223372036854775808:9223372036854775807] }}", "[1, 2, 3]")]
    public void ExtremeSliceBoundsStayInRange(string source, string expected) =>
        Assert.Equal(expected, ChatTemplate.Parse(source).Render(Messages, new ChatTemplateOptions { Variables = new Dictionary<string, object?> { ["x"] = new[] { 1, 2, 3 } } }));
}
