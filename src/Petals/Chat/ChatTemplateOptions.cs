namespace Petals.Chat;

/// <summary>What a chat template is rendered with besides the messages (the variables Hugging Face's <c>apply_chat_template</c> passes).</summary>
public sealed record ChatTemplateOptions
{
    /// <summary>Whether to end with the start of an assistant turn (<c>add_generation_prompt</c>). Default <see langword="true"/>.</summary>
    public bool AddGenerationPrompt { get; init; } = true;

    /// <summary>The text of the beginning-of-sequence token (<c>bos_token</c>), e.g. <c>&lt;s&gt;</c>; empty when none. Default empty.</summary>
    public string BosToken { get; init; } = string.Empty;

    /// <summary>The text of the end-of-sequence token (<c>eos_token</c>), e.g. <c>&lt;/s&gt;</c>; empty when none. Default empty.</summary>
    public string EosToken { get; init; } = string.Empty;

    /// <summary>
    /// More variables visible to the template (strings, numbers, booleans, lists and string-keyed dictionaries of them,
    /// or <see langword="null"/>), e.g. <c>date_string</c> for Llama 3.1. Default none.
    /// </summary>
    public IReadOnlyDictionary<string, object?> Variables { get; init; } = new Dictionary<string, object?>();

    /// <summary>
    /// The clock of the templates' <c>strftime_now(…)</c> (local time, as Hugging Face uses it; e.g. Llama 3.2 writes today's
    /// date when no <c>date_string</c> is given). Default <see cref="TimeProvider.System"/>.
    /// </summary>
    public TimeProvider TimeProvider { get; init; } = TimeProvider.System;
}
