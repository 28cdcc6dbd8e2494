namespace Petals.Extensions.AI;

/// <summary>Options of <see cref="PetalsChatClient"/>.</summary>
public sealed class PetalsChatClientOptions
{
    /// <summary>The model id reported in <c>ChatClientMetadata</c> and responses; the model's own id when null. Default null.</summary>
    public string? ModelId { get; set; }

    /// <summary>Tokens generated when <c>ChatOptions.MaxOutputTokens</c> is not set. Default 256.</summary>
    public int DefaultMaxOutputTokens { get; set; } = 256;

    /// <summary>
    /// A chat template (Jinja source) overriding the model's own; the model's template, or the plain format when it has none,
    /// when null. Default null.
    /// </summary>
    public string? ChatTemplate { get; set; }

    /// <summary>
    /// The most conversations whose remote session (server-side KV cache) is kept open for reuse by the next turn; the least
    /// recently used is closed beyond it; 0 disables reuse. Default 16.
    /// </summary>
    public int MaxCachedConversations { get; set; } = 16;

    /// <summary>
    /// The positions a reusable conversation session is opened for (prompt plus every later turn); a turn that would not fit
    /// runs on a fresh session. The model's context when null. Default null.
    /// </summary>
    public int? ConversationMaxLength { get; set; }

    /// <summary>The clock that stamps <c>CreatedAt</c> of responses; <see cref="TimeProvider.System"/> when null. Default null.</summary>
    public TimeProvider? TimeProvider { get; set; }
}
