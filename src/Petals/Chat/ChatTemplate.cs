using System.Text;

namespace Petals.Chat;

/// <summary>
/// Turns a conversation into the prompt text a chat model was trained on: the model's own Jinja <c>chat_template</c>
/// (from <c>tokenizer_config.json</c> or GGUF <c>tokenizer.chat_template</c>) rendered by a Jinja-subset interpreter, or the
/// <see cref="Plain"/> format for models without one.
/// </summary>
/// <remarks>Immutable and thread-safe once created.</remarks>
public sealed class ChatTemplate
{
    private ChatTemplate(string source, bool isPlain)
    {
        Source = source;
        IsPlain = isPlain;
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

    /// <summary>Parses a Jinja chat template.</summary>
    /// <param name="source">The template text.</param>
    /// <returns>The template, ready to render.</returns>
    /// <exception cref="ChatTemplateException">When the text does not parse; the message names the line and column.</exception>
    public static ChatTemplate Parse(string source)
    {
        ArgumentNullException.ThrowIfNull(source);
        throw new NotSupportedException("Jinja chat templates land with the template interpreter.");
    }

    /// <summary>
    /// Reads the chat template of a model: <c>chat_template</c> of <c>tokenizer_config.json</c> in a Hugging Face directory
    /// (a string, or a list of named templates of which <c>default</c> is taken), or the GGUF metadata key
    /// <c>tokenizer.chat_template</c> of a <c>.gguf</c> file.
    /// </summary>
    /// <param name="modelPath">A .gguf file or a Hugging Face model directory.</param>
    /// <returns>The template, or <see langword="null"/> when the model has none.</returns>
    /// <exception cref="ChatTemplateException">When the model's template does not parse.</exception>
    public static ChatTemplate? Load(string modelPath)
    {
        ArgumentException.ThrowIfNullOrEmpty(modelPath);
        return null;
    }

    /// <summary>Renders a conversation.</summary>
    /// <param name="messages">The conversation so far.</param>
    /// <param name="options">Generation prompt, special-token texts and more variables; the defaults when null.</param>
    /// <returns>The prompt text, to be encoded without the tokenizer adding BOS when the template writes it itself.</returns>
    /// <exception cref="ChatTemplateException">When rendering fails or the template refuses the conversation.</exception>
    public string Render(IReadOnlyList<ChatTemplateMessage> messages, ChatTemplateOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(messages);
        options ??= new ChatTemplateOptions();
        if (!IsPlain)
        {
            throw new NotSupportedException("Jinja chat templates land with the template interpreter.");
        }

        return RenderPlain(messages, options);
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
