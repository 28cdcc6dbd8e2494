using System.Text;
using System.Text.Json;
using Petals.Chat.Jinja;
using Petals.Formats;
using Petals.Formats.Gguf;

namespace Petals.Chat;

/// <summary>
/// Turns a conversation into the prompt text a chat model was trained on: the model's own Jinja <c>chat_template</c>
/// (from <c>tokenizer_config.json</c> or GGUF <c>tokenizer.chat_template</c>) rendered by a Jinja-subset interpreter, or the
/// <see cref="Plain"/> format for models without one.
/// </summary>
/// <remarks>Immutable and thread-safe once created.</remarks>
public sealed class ChatTemplate
{
    /// <summary>The GGUF metadata key of a model's chat template.</summary>
    internal const string GgufChatTemplateKey = "tokenizer.chat_template";

    /// <summary>The file beside a Hugging Face model that newer exports keep the template in.</summary>
    internal const string ChatTemplateFileName = "chat_template.jinja";

    private readonly JinjaTemplate? _jinja;

    private ChatTemplate(string source, bool isPlain, JinjaTemplate? jinja = null)
    {
        Source = source;
        IsPlain = isPlain;
        _jinja = jinja;
    }

    /// <summary>
    /// The format for models without a template (e.g. the tiny stories model): every system message's text followed by a
    /// blank line, then one line per other message, <c>User: …</c> or <c>Assistant: …</c> (other roles by their name with a
    /// capital first letter), each ending with a line feed; with <see cref="ChatTemplateOptions.AddGenerationPrompt"/>,
    /// <c>Assistant:</c> ends the text (the model's reply starts with its own space). BOS is added by the tokenizer, not
    /// here. One leading space of a message's content is dropped (the space after the colon stands for it), so a reply
    /// written back as an assistant message renders to the text it was generated after.
    /// </summary>
    public static ChatTemplate Plain { get; } = new("(plain: \"User: …\\nAssistant: …\\n\")", isPlain: true);

    /// <summary>The Jinja source of the template (for <see cref="Plain"/>, a short description).</summary>
    public string Source { get; }

    /// <summary>Whether this is <see cref="Plain"/>.</summary>
    public bool IsPlain { get; }

    /// <summary>
    /// Parses a Jinja chat template. The interpreter covers the Jinja subset real chat templates use, with the semantics of
    /// <c>@huggingface/jinja</c> (see docs/chat-templates.md): text, <c>{{ }}</c>, <c>{% %}</c>, <c>{# #}</c>, whitespace
    /// control and Hugging Face's <c>trim_blocks</c>/<c>lstrip_blocks</c>; if/elif/else, for (with <c>loop</c> and else),
    /// set (with <c>namespace()</c>), macro/call, filter blocks; the usual filters, tests, operators and string/mapping methods;
    /// <c>raise_exception</c>.
    /// </summary>
    /// <param name="source">The template text.</param>
    /// <returns>The template, ready to render.</returns>
    /// <exception cref="ChatTemplateException">When the text does not parse; the message names the line and column.</exception>
    public static ChatTemplate Parse(string source)
    {
        ArgumentNullException.ThrowIfNull(source);
        return new ChatTemplate(source, isPlain: false, JinjaTemplate.Parse(source));
    }

    /// <summary>
    /// Reads the chat template of a model: <c>chat_template</c> of <c>tokenizer_config.json</c> in a Hugging Face directory
    /// (a string, or a list of named templates of which <c>default</c> is taken), or the GGUF metadata key
    /// <c>tokenizer.chat_template</c> of a <c>.gguf</c> file.
    /// </summary>
    /// <param name="modelPath">A .gguf file or a Hugging Face model directory.</param>
    /// <returns>The template, or <see langword="null"/> when the model has none.</returns>
    /// <exception cref="ChatTemplateException">When the model's template does not parse.</exception>
    /// <exception cref="ModelFormatException">When tokenizer_config.json is not valid JSON or its <c>chat_template</c> has the wrong shape.</exception>
    public static ChatTemplate? Load(string modelPath)
    {
        ArgumentException.ThrowIfNullOrEmpty(modelPath);
        var source = ReadSource(modelPath);
        if (source is null)
        {
            return null;
        }

        try
        {
            return Parse(source.Value.Text);
        }
        catch (ChatTemplateException e)
        {
            throw new ChatTemplateException($"The chat template of {source.Value.Origin} does not parse: {e.Message}", e) { Line = e.Line, Column = e.Column };
        }
    }

    /// <summary>
    /// <see cref="Load"/> for the model loaders: a template that does not parse (or a malformed <c>chat_template</c> field) does
    /// not stop the model from loading for generation; the reason is returned in <paramref name="error"/> instead, and chat
    /// clients refuse to chat without a template given to them.
    /// </summary>
    internal static ChatTemplate? LoadForModel(string modelPath, out string? error)
    {
        error = null;
        try
        {
            return Load(modelPath);
        }
        catch (Exception e) when (e is ChatTemplateException or ModelFormatException)
        {
            error = e.Message;
            return null;
        }
    }

    /// <summary>
    /// The ids of the end-of-turn special tokens this template writes (<c>&lt;|eot_id|&gt;</c>, <c>&lt;|im_end|&gt;</c>,
    /// <c>&lt;end_of_turn&gt;</c>, <c>&lt;|end|&gt;</c>, <c>&lt;|eom_id|&gt;</c>, <c>&lt;|endoftext|&gt;</c>) that are special
    /// tokens of <paramref name="tokenizer"/>: a chat reply ends with one of them, which the model's configured end-of-sequence
    /// tokens may not include (Llama 3's <c>eos_token</c> is <c>&lt;|end_of_text|&gt;</c>, its turns end with <c>&lt;|eot_id|&gt;</c>).
    /// Empty for <see cref="Plain"/>.
    /// </summary>
    /// <param name="tokenizer">The model's tokenizer.</param>
    /// <returns>The token ids, in the order above, each once.</returns>
    public IReadOnlyList<int> GetEndOfTurnTokenIds(Tokenization.ITokenizer tokenizer)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        if (IsPlain)
        {
            return [];
        }

        var ids = new List<int>();
        foreach (var marker in EndOfTurnMarkers)
        {
            if (Source.Contains(marker, StringComparison.Ordinal) && tokenizer.TokenToId(marker) is { } id && tokenizer.IsSpecial(id) && !ids.Contains(id))
            {
                ids.Add(id);
            }
        }

        return ids;
    }

    private static readonly string[] EndOfTurnMarkers = ["<|eot_id|>", "<|im_end|>", "<end_of_turn>", "<|end|>", "<|eom_id|>", "<|endoftext|>"];

    /// <summary>The template text of a model and where it came from, or null when the model has none.</summary>
    internal static (string Text, string Origin)? ReadSource(string modelPath)
    {
        if (File.Exists(modelPath) && modelPath.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase))
        {
            using var gguf = GgufFile.Open(modelPath);
            var value = gguf.GetValue(GgufChatTemplateKey);
            if (value is null)
            {
                return null;
            }

            return value.Value is string text
                ? (text, $"{modelPath} ({GgufChatTemplateKey})")
                : throw new ModelFormatException(modelPath, GgufChatTemplateKey, $"is a {value.Type}, not a string.");
        }

        string? directory = Directory.Exists(modelPath) ? modelPath : Path.GetDirectoryName(Path.GetFullPath(modelPath));
        if (directory is null)
        {
            return null;
        }

        var jinjaPath = Path.Combine(directory, ChatTemplateFileName);
        if (File.Exists(jinjaPath))
        {
            return (File.ReadAllText(jinjaPath), jinjaPath);
        }

        var configPath = Path.Combine(directory, "tokenizer_config.json");
        if (!File.Exists(configPath))
        {
            return null;
        }

        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(File.ReadAllText(configPath), new JsonDocumentOptions { AllowTrailingCommas = true, CommentHandling = JsonCommentHandling.Skip });
        }
        catch (JsonException e)
        {
            throw new ModelFormatException(configPath, null, $"not valid JSON: {e.Message}", e);
        }

        using (document)
        {
            if (document.RootElement.ValueKind != JsonValueKind.Object
                || !document.RootElement.TryGetProperty("chat_template", out var template)
                || template.ValueKind == JsonValueKind.Null)
            {
                return null;
            }

            if (template.ValueKind == JsonValueKind.String)
            {
                return (template.GetString()!, $"{configPath} (chat_template)");
            }

            if (template.ValueKind != JsonValueKind.Array)
            {
                throw new ModelFormatException(configPath, "chat_template", $"is a {template.ValueKind}, not a string or a list of {{name, template}}.");
            }

            foreach (var entry in template.EnumerateArray())
            {
                if (entry.ValueKind != JsonValueKind.Object
                    || !entry.TryGetProperty("name", out var name) || name.ValueKind != JsonValueKind.String
                    || !entry.TryGetProperty("template", out var text) || text.ValueKind != JsonValueKind.String)
                {
                    throw new ModelFormatException(configPath, "chat_template", "every entry must be an object with string 'name' and 'template'.");
                }

                if (name.GetString() == "default")
                {
                    return (text.GetString()!, $"{configPath} (chat_template 'default')");
                }
            }

            return null;
        }
    }

    /// <summary>Renders a conversation.</summary>
    /// <param name="messages">The conversation so far.</param>
    /// <param name="options">Generation prompt, special-token texts and more variables; the defaults when null.</param>
    /// <returns>The prompt text, to be encoded without the tokenizer adding BOS when the template writes it itself.</returns>
    /// <exception cref="ChatTemplateException">When rendering fails (the message names the line and column), or the template
    /// refuses the conversation (<see cref="ChatTemplateException.RaisedByTemplate"/>, the message is the template's).</exception>
    /// <exception cref="ArgumentException">When a message is null or a variable has a type templates cannot use or a reserved name.</exception>
    public string Render(IReadOnlyList<ChatTemplateMessage> messages, ChatTemplateOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(messages);
        options ??= new ChatTemplateOptions();
        return _jinja is not null ? _jinja.Render(messages, options) : RenderPlain(messages, options);
    }

    private static string RenderPlain(IReadOnlyList<ChatTemplateMessage> messages, ChatTemplateOptions options)
    {
        var text = new StringBuilder();
        foreach (var message in messages)
        {
            ArgumentNullException.ThrowIfNull(message);
            var content = message.Content.StartsWith(' ') ? message.Content[1..] : message.Content;
            if (string.Equals(message.Role, "system", StringComparison.OrdinalIgnoreCase))
            {
                text.Append(content).Append("\n\n");
                continue;
            }

            text.Append(Label(message.Role)).Append(':');
            if (content.Length > 0)
            {
                text.Append(' ').Append(content);
            }

            text.Append('\n');
        }

        if (options.AddGenerationPrompt)
        {
            text.Append("Assistant:");
        }

        return text.ToString();
    }

    private static string Label(string role) => role.ToLowerInvariant() switch
    {
        "user" => "User",
        "assistant" => "Assistant",
        "" => throw new ArgumentException("A message has an empty role.", nameof(role)),
        _ => string.Concat(role[..1].ToUpperInvariant(), role[1..]),
    };
}
