using System.Text;
using FsCheck;
using FsCheck.Fluent;
using Petals.Chat;
using Petals.Testing.Time;

namespace Petals.Tests.Chat;

/// <summary>The interpreter on its own: error positions, bounds, bad inputs, variables, and properties of rendering.</summary>
public sealed class JinjaInterpreterTests
{
    private static string Render(string source, ChatTemplateOptions? options = null, params ChatTemplateMessage[] messages) =>
        ChatTemplate.Parse(source).Render(messages, options ?? new ChatTemplateOptions());

    [Theory]
    [InlineData("{{ 1 + }}", 1, 8)]
    [InlineData("text\n  {% if x %}\nnever closed", 2, 3)]
    [InlineData("a\nb\n{{ 'unterminated }}", 3, 4)]
    [InlineData("{{ 'bad \\q escape' }}", 1, 9)]
    [InlineData("{% for %}{% endfor %}", 1, 8)]
    [InlineData("line\n{% unknown %}", 2, 4)]
    [InlineData("{{ x | }}", 1, 8)]
    [InlineData("{{ a @ b }}", 1, 6)]
    [InlineData("ok {# never closed", 1, 4)]
    [InlineData("{{ [1, 2 }}", 1, 10)]
    [InlineData("{% endfor %}", 1, 4)]
    [InlineData("{% macro m(a, a) %}{% endmacro %}", 1, 15)]
    [InlineData("{{ f(a=1, 2) }}", 1, 11)]
    [InlineData("{{ 99999999999999999999 }}", 1, 4)]
    public void ParseErrorsNameTheLineAndColumn(string source, int line, int column)
    {
        var e = Assert.Throws<ChatTemplateException>(() => ChatTemplate.Parse(source));
        Assert.False(e.RaisedByTemplate);
        Assert.Equal(line, e.Line);
        Assert.Equal(column, e.Column);
        Assert.Contains($"line {line}, column {column}", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void ColumnsCountFromTheOriginalSourceDespiteLstripBlocks()
    {
        // lstrip_blocks removes the indentation before "{%"; the error still points at the original column.
        var e = Assert.Throws<ChatTemplateException>(() => ChatTemplate.Parse("a\n    {% if %}{% endif %}"));
        Assert.Equal(2, e.Line);
        Assert.Equal(11, e.Column);
    }

    [Theory]
    [InlineData("ok\n{{ missing + 1 }}", 2, 4, "undefined")]
    [InlineData("{% for x in 3 %}{% endfor %}", 1, 13, "iterable")]
    [InlineData("{{ 'x' | nosuch }}", 1, 10, "nosuch")]
    [InlineData("{{ 1 is nosuchtest }}", 1, 4, "nosuchtest")]
    [InlineData("\n\n   {{ nothing() }}", 3, 7, "not a function")]
    [InlineData("{% set x = 1 %}{% set x.y = 2 %}", 1, 16, "namespace")]
    public void RenderErrorsNameTheLineAndColumn(string source, int line, int column, string text)
    {
        var template = ChatTemplate.Parse(source);
        var e = Assert.Throws<ChatTemplateException>(() => template.Render([]));
        Assert.False(e.RaisedByTemplate);
        Assert.Equal(line, e.Line);
        Assert.Equal(column, e.Column);
        Assert.Contains(text, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void RaiseExceptionIsTheTemplateRefusingTheConversation()
    {
        var template = ChatTemplate.Parse("{% if messages[0].role != 'user' %}\n  {{ raise_exception('First must be user, got ' + messages[0].role) }}\n{% endif %}ok");
        Assert.Equal("ok", template.Render([new("user", "x")]));
        var e = Assert.Throws<ChatTemplateException>(() => template.Render([new("assistant", "x")]));
        Assert.True(e.RaisedByTemplate);
        Assert.Equal("First must be user, got assistant", e.Message);
        Assert.Equal(2, e.Line);
        Assert.Equal(6, e.Column);
    }

    [Theory]
    [InlineData("{% for i in range(1000000) %}{% for j in range(1000000) %}{% endfor %}{% endfor %}", "steps")]
    [InlineData("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "nest deeper")]
    [InlineData("{% set ns = namespace(s='x') %}{% for i in range(100) %}{% set ns.s = ns.s + ns.s %}{% endfor %}", "characters")]
    [InlineData("{{ range(100000000) | length }}", "range()")]
    [InlineData("{% for i in range(1000) %}{{ 'y' * 1 }}{% endfor %}", "Unknown operator")]
    public void AbsurdRendersFailWithAClearErrorInsteadOfHanging(string source, string text)
    {
        var template = ChatTemplate.Parse(source);
        var watch = System.Diagnostics.Stopwatch.StartNew();
        var e = Assert.Throws<ChatTemplateException>(() => template.Render([]));
        Assert.Contains(text, e.Message, StringComparison.Ordinal);
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(30), $"took {watch.Elapsed}");
    }

    [Fact]
    public void DeeplyNestedSourceIsRefusedNotACrash()
    {
        var deep = "{{ " + new string('(', 5000) + "1" + new string(')', 5000) + " }}";
        var e = Assert.Throws<ChatTemplateException>(() => ChatTemplate.Parse(deep));
        Assert.Contains("nests deeper", e.Message, StringComparison.Ordinal);

        var blocks = string.Concat(Enumerable.Repeat("{% if true %}", 3000)) + string.Concat(Enumerable.Repeat("{% endif %}", 3000));
        Assert.Throws<ChatTemplateException>(() => ChatTemplate.Parse(blocks));
    }

    [Fact]
    public void BreakOutsideALoopIsAnError() =>
        Assert.Contains("outside a loop", Assert.Throws<ChatTemplateException>(() => Render("{% break %}")).Message, StringComparison.Ordinal);

    [Fact]
    public void BadInputsGetPreciseExceptions()
    {
        var template = ChatTemplate.Parse("{{ messages | length }}");
        Assert.Throws<ArgumentNullException>(() => template.Render(null!));
        Assert.Throws<ArgumentNullException>(() => ChatTemplate.Parse(null!));
        var nullMessage = Assert.Throws<ArgumentException>(() => template.Render([new("user", "a"), null!]));
        Assert.Contains("Message 1", nullMessage.Message, StringComparison.Ordinal);
        var reserved = Assert.Throws<ArgumentException>(() => template.Render([], new ChatTemplateOptions { Variables = new Dictionary<string, object?> { ["messages"] = "x" } }));
        Assert.Contains("'messages'", reserved.Message, StringComparison.Ordinal);
        var badType = Assert.Throws<ArgumentException>(() => template.Render([], new ChatTemplateOptions { Variables = new Dictionary<string, object?> { ["when"] = new { A = 1 }.GetType() } }));
        Assert.Contains("Variables[\"when\"]", badType.Message, StringComparison.Ordinal);
        var nestedBad = Assert.Throws<ArgumentException>(() => template.Render([], new ChatTemplateOptions { Variables = new Dictionary<string, object?> { ["l"] = new object?[] { 1, new Uri("http://x") } } }));
        Assert.Contains("Variables[\"l\"][1]", nestedBad.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void VariablesOfEveryKindReachTheTemplate()
    {
        var options = new ChatTemplateOptions
        {
            AddGenerationPrompt = false,
            BosToken = "<s>",
            EosToken = "</s>",
            Variables = new Dictionary<string, object?>
            {
                ["text"] = "t",
                ["flag"] = true,
                ["count"] = 3,
                ["big"] = 5_000_000_000L,
                ["ratio"] = 0.25,
                ["whole"] = 2.0,
                ["nothing"] = null,
                ["list"] = new List<object?> { "a", 1, null },
                ["map"] = new Dictionary<string, object?> { ["k"] = new[] { "v" } },
                ["json"] = System.Text.Json.JsonDocument.Parse("{\"a\": [1, 2.5, true, null, {\"b\": \"c\"}]}").RootElement,
            },
        };
        var text = Render("{{ bos_token }}{{ text }}|{{ flag }}|{{ count + 1 }}|{{ big }}|{{ ratio }}|{{ whole }}|{{ nothing is none }}|{{ list }}|{{ map.k[0] }}|{{ json.a | tojson }}|{{ add_generation_prompt }}{{ eos_token }}", options);
        Assert.Equal("<s>t|true|4|5000000000|0.25|2|true|[\"a\", 1, null]|v|[1, 2.5, true, null, {\"b\": \"c\"}]|false</s>", text);
    }

    [Fact]
    public void MessagesAreMappingsOfRoleAndContent()
    {
        var text = Render(
            "{% for m in messages %}{{ m.role }}={{ m['content'] }}{{ m | length }}{{ 'x' in m }}{{ m.get('name', '-') }};{% endfor %}{{ messages[1:] | length }}",
            null,
            new("system", "S"),
            new("user", "U"));
        Assert.Equal("system=S2false-;user=U2false-;1", text);
    }

    [Fact]
    public void StrftimeNowReadsTheOptionsClock()
    {
        var clock = new ManualTimeProvider(new DateTimeOffset(2026, 12, 8, 12, 34, 0, TimeSpan.Zero));
        var local = clock.GetLocalNow();
        var text = Render("{{ strftime_now('%Y-%m-%d %H:%M %b %B %% %q') }}", new ChatTemplateOptions { TimeProvider = clock });
        Assert.Equal(local.ToString("yyyy-MM-dd HH:mm MMM MMMM", System.Globalization.CultureInfo.InvariantCulture) + " % %q", text);
    }

    [Fact]
    public void Llama32WritesTodaysDateWithoutADateString()
    {
        using var document = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Fixtures", "chat-templates", "llama3_2-instruct.json")));
        var template = ChatTemplate.Parse(document.RootElement.GetProperty("template").GetString()!);
        var clock = new ManualTimeProvider(new DateTimeOffset(2026, 3, 5, 12, 0, 0, TimeSpan.Zero));
        var text = template.Render([new("user", "Hi")], new ChatTemplateOptions { TimeProvider = clock });
        Assert.Contains("Today Date: " + clock.GetLocalNow().ToString("dd MMM yyyy", System.Globalization.CultureInfo.InvariantCulture) + "\n", text, StringComparison.Ordinal);
    }

    [Fact]
    public void ExtensionsBeyondTheReference()
    {
        // Not in @huggingface/jinja (it fails on them); small, unambiguous and in Jinja proper.
        Assert.Equal("true false", Render("{{ 3 is equalto(3) }} {{ 3 is eq(4) }}"));
        Assert.Equal("2.0 2.35 3.0", Render("{{ 2.4 | round }} {{ 2.345 | round(2) }} {{ 2.1 | round(0, 'ceil') }}"));
        Assert.Equal("[\"a\", \"b\"] a b [\"k\"] 3", Render("{{ 'ab' | list }} {{ 'ab' | first }} {{ 'ab' | last }} {{ {'k': 1} | list }} {{ (3 is ne(4)) | int + 2 }}"));
    }

    [Fact]
    public void PlainStaysAsItWas()
    {
        Assert.True(ChatTemplate.Plain.IsPlain);
        Assert.Equal("Be kind.\n\nUser: Hi\nAssistant: Hello\nUser: More\nAssistant:", ChatTemplate.Plain.Render([new("system", "Be kind."), new("user", "Hi"), new("assistant", " Hello"), new("user", "More")]));
        var parsed = ChatTemplate.Parse("x");
        Assert.False(parsed.IsPlain);
        Assert.Equal("x", parsed.Source);
    }

    private static string Quote(string text)
    {
        var quoted = new StringBuilder("'");
        foreach (char c in text)
        {
            quoted.Append(c switch
            {
                '\\' => "\\\\",
                '\'' => "\\'",
                '\n' => "\\n",
                '\r' => "\\r",
                '\t' => "\\t",
                _ => c.ToString(),
            });
        }

        return quoted.Append('\'').ToString();
    }

    [Fact]
    public void StringLiteralsOfArbitraryTextRenderVerbatim() =>
        Prop.ForAll(ArbMap.Default.ArbFor<NonNull<string>>(), s =>
        {
            var text = s.Get;
            return Render("{{ " + Quote(text) + " }}") == text && Render("{{- " + Quote(text) + " -}}") == text;
        }).QuickCheckThrowOnFailure();

    [Fact]
    public void TextWithoutTagsRendersVerbatimLessOneFinalLineFeed() =>
        Prop.ForAll(ArbMap.Default.ArbFor<NonNull<string>>(), s =>
        {
            var text = s.Get.Replace("{", string.Empty, StringComparison.Ordinal);
            var expected = text.EndsWith('\n') ? text[..^1] : text;
            return Render(text) == expected;
        }).QuickCheckThrowOnFailure();

    [Fact]
    public void MessageContentOfArbitraryTextReachesTheOutputUntouched()
    {
        var chatMl = ChatTemplate.Parse("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}");
        Prop.ForAll(ArbMap.Default.ArbFor<NonNull<string>>(), ArbMap.Default.ArbFor<NonNull<string>>(), (a, b) =>
            chatMl.Render([new("user", a.Get), new("assistant", b.Get)]) == $"<|im_start|>user\n{a.Get}<|im_end|>\n<|im_start|>assistant\n{b.Get}<|im_end|>\n")
            .QuickCheckThrowOnFailure();
    }
}
