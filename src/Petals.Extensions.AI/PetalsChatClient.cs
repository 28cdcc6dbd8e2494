using System.Runtime.CompilerServices;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Petals.Chat;
using Petals.Generation;
using Petals.Tokenization;

namespace Petals.Extensions.AI;

/// <summary>An <see cref="IChatClient"/> over a Petals model (local blocks, fixed peers or a swarm).</summary>
/// <remarks>
/// <para>
/// Each request renders the whole conversation with the chat template (<see cref="PetalsChatClientOptions.ChatTemplate"/>,
/// else the model's, else <see cref="ChatTemplate.Plain"/>), encodes it and generates the assistant's reply. The caller
/// sends the full history every time, as with any stateless chat API; <see cref="ChatOptions.ConversationId"/> is accepted
/// but holds no history on the service side.
/// </para>
/// <para>
/// Server-side cache reuse: the session of a finished turn stays open (up to
/// <see cref="PetalsChatClientOptions.MaxCachedConversations"/>, least recently used closed first); a request whose prompt
/// tokens share a prefix with the tokens such a session processed (at least half of them) continues on it, rolled back to
/// that prefix, and prefills only the rest. The text is the same as on a fresh session.
/// </para>
/// <para>Thread-safe: concurrent requests run on separate sessions.</para>
/// </remarks>
public sealed class PetalsChatClient : IChatClient
{
    /// <summary>The provider name in <see cref="ChatClientMetadata"/>.</summary>
    internal const string ProviderName = "petals";

    private readonly PetalsModelSource _source;
    private readonly string? _modelId;
    private readonly int _defaultMaxOutputTokens;
    private readonly int _maxCachedConversations;
    private readonly int _conversationMaxLength;
    private readonly ChatTemplate? _template;
    private readonly ConversationCache? _conversations;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private int _disposed;

    /// <summary>A conversation length opening failed at (servers refusing it); later turns run on sessions of their own.</summary>
    private int _refusedLength = int.MaxValue;

    /// <summary>A chat client over <paramref name="model"/>, which the caller keeps owning (disposing the client leaves it open).</summary>
    /// <param name="model">The model; it needs a tokenizer.</param>
    /// <param name="options">Options, read once here; the defaults when null.</param>
    /// <exception cref="ArgumentOutOfRangeException">When an option is out of range; the message names it.</exception>
    /// <exception cref="ChatTemplateException">When <see cref="PetalsChatClientOptions.ChatTemplate"/> does not parse.</exception>
    public PetalsChatClient(CausalLanguageModel model, PetalsChatClientOptions? options = null)
        : this(new PetalsModelSource(model), options)
    {
    }

    /// <summary>A chat client over the model <paramref name="source"/> gives (connected on first use, owned when it connects it).</summary>
    /// <param name="source">Where the model comes from.</param>
    /// <param name="options">Options; the defaults when null.</param>
    /// <param name="logger">Where reuse decisions and fallbacks are logged (event ids 6100-6149); none when null.</param>
    internal PetalsChatClient(PetalsModelSource source, PetalsChatClientOptions? options, ILogger? logger = null)
    {
        ArgumentNullException.ThrowIfNull(source);
        var o = options ?? new PetalsChatClientOptions();
        if (o.DefaultMaxOutputTokens < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(options), o.DefaultMaxOutputTokens, "PetalsChatClientOptions.DefaultMaxOutputTokens must be at least 1.");
        }

        if (o.MaxCachedConversations < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(options), o.MaxCachedConversations, "PetalsChatClientOptions.MaxCachedConversations must be >= 0 (0 disables reuse).");
        }

        if (o.ConversationMaxLength is < 2)
        {
            throw new ArgumentOutOfRangeException(nameof(options), o.ConversationMaxLength, "PetalsChatClientOptions.ConversationMaxLength must be at least 2 (or null for the model's context).");
        }

        // The options are read once: changing them afterwards does not change this client.
        _template = o.ChatTemplate is { } source2 ? ChatTemplate.Parse(source2) : null;
        _modelId = o.ModelId;
        _defaultMaxOutputTokens = o.DefaultMaxOutputTokens;
        _maxCachedConversations = o.MaxCachedConversations;
        _conversationMaxLength = o.ConversationMaxLength ?? PetalsChatClientOptions.DefaultConversationMaxLength;
        _conversations = _maxCachedConversations > 0 ? new ConversationCache(_maxCachedConversations) : null;
        _time = o.TimeProvider ?? TimeProvider.System;
        _logger = logger ?? NullLogger.Instance;
        _source = source;
    }

    /// <summary>The positions a conversation session is opened for: the option, at most the model's context; 2048 by default.</summary>
    internal int ConversationLength(CausalLanguageModel model) =>
        Math.Min(_conversationMaxLength, model.Config.MaxPositionEmbeddings);

    /// <summary>The number of conversations whose session is kept open for reuse now.</summary>
    internal int CachedConversationCount => _conversations?.Count ?? 0;

    /// <inheritdoc />
    /// <exception cref="NotSupportedException">For options the client cannot honour (tools, non-text response formats, another
    /// model id, …) and message contents other than text; the message names the option or content.</exception>
    /// <exception cref="ArgumentException">When an option is out of range or the prompt plus the output limit exceeds the context.</exception>
    public async Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        var text = new System.Text.StringBuilder();
        ChatResponseUpdate? last = null;
        UsageDetails? usage = null;
        await foreach (var update in GetStreamingResponseAsync(messages, options, cancellationToken).ConfigureAwait(false))
        {
            text.Append(update.Text);
            foreach (var content in update.Contents)
            {
                if (content is UsageContent u)
                {
                    usage = u.Details;
                }
            }

            last = update;
        }

        return new ChatResponse(new ChatMessage(ChatRole.Assistant, text.ToString()) { MessageId = last?.MessageId, CreatedAt = last?.CreatedAt })
        {
            ResponseId = last?.ResponseId,
            ModelId = last?.ModelId,
            CreatedAt = last?.CreatedAt,
            FinishReason = last?.FinishReason,
            Usage = usage,
        };
    }

    /// <inheritdoc />
    /// <remarks>Every update carries the response id, model id, creation time and the assistant role; the last one carries the
    /// finish reason and a <see cref="UsageContent"/>. Text a stop sequence may still claim is held back until it is decided.</remarks>
    /// <exception cref="NotSupportedException">As <see cref="GetResponseAsync"/>.</exception>
    /// <exception cref="ArgumentException">As <see cref="GetResponseAsync"/>.</exception>
    public async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(
        IEnumerable<ChatMessage> messages,
        ChatOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(messages);
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        var model = await _source.GetAsync(cancellationToken).ConfigureAwait(false);
        var tokenizer = model.Tokenizer ?? throw new InvalidOperationException("The model has no tokenizer; a chat client needs one to encode prompts and decode replies.");
        var modelId = _modelId ?? model.ModelId;
        var request = ChatOptionsTranslator.Translate(options, modelId, _defaultMaxOutputTokens);
        var maxNewTokens = request.Generation.MaxNewTokens;

        if (_template is null && model.ChatTemplate is null && model.ChatTemplateError is { } templateError)
        {
            throw new InvalidOperationException(
                $"The model's own chat template cannot be used ({templateError}); give one with PetalsChatClientOptions.ChatTemplate.");
        }

        var template = _template ?? model.ChatTemplate ?? ChatTemplate.Plain;
        var generation = WithEndOfTurnTokens(request.Generation, template, tokenizer, model.Config.EosTokenIds);
        var prompt = template.Render(ToTemplateMessages(messages, request.Instructions), new ChatTemplateOptions
        {
            BosToken = tokenizer.BosTokenId is { } bos ? tokenizer.IdToToken(bos) ?? string.Empty : string.Empty,
            EosToken = tokenizer.EosTokenId is { } eos ? tokenizer.IdToToken(eos) ?? string.Empty : string.Empty,
        });

        // A template that writes BOS itself must not get a second one from the tokenizer.
        var addSpecialTokens = template.IsPlain || !template.Source.Contains("bos_token", StringComparison.Ordinal);
        var promptIds = tokenizer.Encode(prompt, addSpecialTokens);
        if (promptIds.Length == 0)
        {
            throw new ArgumentException("The conversation renders to no tokens; send at least one message with text.", nameof(messages));
        }

        var context = model.Config.MaxPositionEmbeddings;
        if ((long)promptIds.Length + maxNewTokens > context)
        {
            throw new ArgumentException(
                $"The prompt ({promptIds.Length} tokens) plus MaxOutputTokens ({maxNewTokens}) needs more than the model's context of {context} positions.", nameof(messages));
        }

        var responseId = "petals-" + Guid.NewGuid().ToString("N");
        var createdAt = _time.GetUtcNow();
        ChatResponseUpdate Update(IList<AIContent> contents) =>
            new(ChatRole.Assistant, contents) { ResponseId = responseId, MessageId = responseId, ModelId = modelId, CreatedAt = createdAt };

        var decoder = tokenizer.CreateStreamingDecoder(skipSpecialTokens: true);
        var filter = new StopSequenceFilter(request.StopSequences);

        // From here until the try block nothing throws: the conversation taken is always given back or closed.
        var (conversation, cachedTokens) = await TakeConversationAsync(model, promptIds, maxNewTokens, cancellationToken).ConfigureAwait(false);
        var tokens = conversation is not null
            ? conversation.GenerateAsync(promptIds, generation, cancellationToken)
            : model.GenerateAsync(promptIds, generation, cancellationToken);
        var generated = 0;
        var lastToken = -1;
        try
        {
            await foreach (var token in tokens.ConfigureAwait(false))
            {
                generated++;
                lastToken = token;
                var piece = filter.Append(decoder.Append(token));
                if (piece.Length > 0)
                {
                    yield return Update([new TextContent(piece)]);
                }

                if (filter.Stopped)
                {
                    break;
                }
            }

            if (!filter.Stopped)
            {
                var rest = filter.Append(decoder.Flush()) + filter.Flush();
                if (rest.Length > 0)
                {
                    yield return Update([new TextContent(rest)]);
                }
            }
        }
        finally
        {
            if (conversation is not null)
            {
                await ReturnConversationAsync(conversation, cancellationToken.IsCancellationRequested).ConfigureAwait(false);
            }
        }

        var stoppedByModel = generated < maxNewTokens || generation.StopTokenIds!.Contains(lastToken);
        var usage = new UsageDetails
        {
            InputTokenCount = promptIds.Length,
            OutputTokenCount = generated,
            TotalTokenCount = promptIds.Length + generated,
            CachedInputTokenCount = cachedTokens,
        };
        var final = Update([new UsageContent(usage)]);
        final.FinishReason = filter.Stopped || stoppedByModel ? ChatFinishReason.Stop : ChatFinishReason.Length;
        yield return final;
    }

    /// <inheritdoc />
    /// <remarks>
    /// Gives <see cref="ChatClientMetadata"/> (provider "petals", the model id), the <see cref="CausalLanguageModel"/> (null until
    /// a lazily connected model is connected), or this client; null for anything else or any key.
    /// </remarks>
    public object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        if (serviceKey is not null)
        {
            return null;
        }

        if (serviceType == typeof(ChatClientMetadata))
        {
            return new ChatClientMetadata(ProviderName, providerUri: null, defaultModelId: _modelId ?? _source.Current?.ModelId);
        }

        if (serviceType == typeof(CausalLanguageModel))
        {
            return _source.Current;
        }

        return serviceType.IsInstanceOfType(this) ? this : null;
    }

    /// <summary>Closes the sessions kept for reuse and disposes a model the client connected itself (a given model is left open).</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        var dropped = new List<LanguageModelConversation>();
        _conversations?.Close(dropped);
        CloseAsync(dropped).AsTask().GetAwaiter().GetResult();
        _source.DisposeAsync().AsTask().GetAwaiter().GetResult();
    }

    /// <summary>
    /// The generation options with the stop tokens of a chat reply: the model's end-of-sequence tokens and the end-of-turn
    /// tokens its template writes (<see cref="ChatTemplate.GetEndOfTurnTokenIds"/>).
    /// </summary>
    private static GenerationOptions WithEndOfTurnTokens(GenerationOptions generation, ChatTemplate template, ITokenizer tokenizer, IReadOnlyList<int> eos)
    {
        var endOfTurn = template.GetEndOfTurnTokenIds(tokenizer);
        var stops = new List<int>(eos);
        foreach (var id in endOfTurn)
        {
            if (!stops.Contains(id))
            {
                stops.Add(id);
            }
        }

        return generation with { StopTokenIds = stops };
    }

    private static List<ChatTemplateMessage> ToTemplateMessages(IEnumerable<ChatMessage> messages, string? instructions)
    {
        var result = new List<ChatTemplateMessage>();
        if (!string.IsNullOrEmpty(instructions))
        {
            result.Add(new ChatTemplateMessage(ChatRole.System.Value, instructions));
        }

        var index = 0;
        foreach (var message in messages)
        {
            if (message is null)
            {
                throw new ArgumentException($"Message {index} is null.", nameof(messages));
            }

            if (message.Role == ChatRole.Tool)
            {
                throw new NotSupportedException($"Message {index} has the role 'tool': the Petals chat client cannot call tools.");
            }

            foreach (var content in message.Contents)
            {
                if (content is not (TextContent or UsageContent))
                {
                    throw new NotSupportedException(
                        $"Message {index} ({message.Role}) holds a {content.GetType().Name}: the Petals chat client takes text only.");
                }
            }

            result.Add(new ChatTemplateMessage(message.Role.Value, message.Text));
            index++;
        }

        return result;
    }

    /// <summary>
    /// The conversation to generate on: a kept one that the prompt extends (with the tokens it already holds), a fresh one
    /// when the turn fits <see cref="PetalsChatClientOptions.ConversationMaxLength"/>, or none (a one-off session) when
    /// reuse is off or the turn does not fit.
    /// </summary>
    private async Task<(LanguageModelConversation? Conversation, int CachedTokens)> TakeConversationAsync(
        CausalLanguageModel model, int[] promptIds, int maxNewTokens, CancellationToken cancellationToken)
    {
        if (_conversations is null)
        {
            return (null, 0);
        }

        var dropped = new List<LanguageModelConversation>();
        var kept = _conversations.TryTake(promptIds, maxNewTokens, dropped);
        await CloseAsync(dropped).ConfigureAwait(false);
        if (kept is not null)
        {
            var shared = kept.CommonPrefixLength(promptIds);
            ChatClientLog.Reused(_logger, shared, promptIds.Length, promptIds.Length - shared);
            return (kept, shared);
        }

        var length = ConversationLength(model);
        if ((long)promptIds.Length + maxNewTokens > length)
        {
            ChatClientLog.TooLong(_logger, promptIds.Length, maxNewTokens, length);
            return (null, 0);
        }

        if (length >= Volatile.Read(ref _refusedLength))
        {
            return (null, 0);
        }

        ChatClientLog.Opened(_logger, promptIds.Length, length);
        try
        {
            return (await model.OpenConversationAsync(length, cancellationToken).ConfigureAwait(false), 0);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            // Servers may hold shorter sessions than the conversation asks for (their MaxSessionLength) or lack the cache for
            // it: the turn still runs on a session of its own size, which fails in turn if the servers are the problem.
            ChatClientLog.OpenFailed(_logger, length, e);
            Volatile.Write(ref _refusedLength, length);
            return (null, 0);
        }
    }

    /// <summary>Keeps a conversation for the next turn, or closes it when the request was cancelled or broke its session.</summary>
    private async ValueTask ReturnConversationAsync(LanguageModelConversation conversation, bool cancelled)
    {
        var dropped = new List<LanguageModelConversation>();
        if (cancelled || Volatile.Read(ref _disposed) != 0)
        {
            dropped.Add(conversation);
        }
        else
        {
            _conversations!.Return(conversation, dropped);
        }

        await CloseAsync(dropped).ConfigureAwait(false);
    }

    private async ValueTask CloseAsync(List<LanguageModelConversation> conversations)
    {
        if (conversations.Count > 0)
        {
            ChatClientLog.Closed(_logger, conversations.Count, _maxCachedConversations);
        }

        foreach (var conversation in conversations)
        {
            await conversation.DisposeAsync().ConfigureAwait(false);
        }
    }
}
