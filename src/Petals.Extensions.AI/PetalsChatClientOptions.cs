namespace Petals.Extensions.AI;

/// <summary>Options of <see cref="PetalsChatClient"/>.</summary>
public sealed class PetalsChatClientOptions
{
    /// <summary>The conversation length used when <see cref="ConversationMaxLength"/> is null: 2048 positions.</summary>
    public const int DefaultConversationMaxLength = 2048;

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
    /// The positions a reusable conversation session is opened for (prompt plus every later turn, at most the model's
    /// context); a turn that would not fit runs on a session of its own size, not kept. Each kept conversation holds this
    /// many positions of cache on every server of its chain (and a client-side copy of its inputs for recovery), so a
    /// smaller value serves more conversations per server. <see cref="DefaultConversationMaxLength"/> (2048, the servers'
    /// default <c>MaxSessionLength</c>) when null. Default null.
    /// </summary>
    public int? ConversationMaxLength { get; set; }

    /// <summary>The clock that stamps <c>CreatedAt</c> of responses; <see cref="TimeProvider.System"/> when null. Default null.</summary>
    public TimeProvider? TimeProvider { get; set; }
}
