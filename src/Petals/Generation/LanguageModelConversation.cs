using System.Runtime.CompilerServices;
using Petals.Inference;

namespace Petals.Generation;

/// <summary>
/// A session of a <see cref="CausalLanguageModel"/> kept open across generations (the server-side KV cache of Petals'
/// <c>inference_session</c>), with the tokens it has processed. A generation whose prompt extends those tokens prefills only
/// the new ones (a prompt sharing only a prefix with them rolls the session back to it); its result equals a generation on a
/// fresh session. Opened with
/// <see cref="CausalLanguageModel.OpenConversationAsync"/>.
/// </summary>
/// <remarks>
/// One generation at a time: a second concurrent <see cref="GenerateAsync"/> throws. A generation that fails or is
/// cancelled during a forward step leaves the session unusable (<see cref="IsUsable"/> false); dispose it then.
/// Stopping the enumeration early (e.g. at a stop sequence) leaves it usable: only the tokens actually run count as
/// processed. The last generated token is never run, so it is not among <see cref="ProcessedTokens"/>.
/// </remarks>
public sealed class LanguageModelConversation : IAsyncDisposable
{
    private readonly CausalLanguageModel _model;
    private readonly ITransformerSession _session;
    private readonly int[] _tokens;
    private readonly GenerationState _state = new();
    private int _processed;
    private int _busy;
    private bool _broken;
    private bool _disposed;

    internal LanguageModelConversation(CausalLanguageModel model, ITransformerSession session, int maxLength)
    {
        _model = model;
        _session = session;
        _tokens = new int[maxLength];
        try
        {
            // A no-op at position 0: does the session roll back at all?
            session.Truncate(0);
            CanRollBack = true;
        }
        catch (NotSupportedException)
        {
        }
    }

    /// <summary>
    /// Whether the session rolls back (<see cref="ITransformerSession.Truncate"/>), so that a prompt sharing only a prefix
    /// with the processed tokens keeps that prefix; without it only prompts extending all of them keep anything.
    /// </summary>
    public bool CanRollBack { get; }

    /// <summary>The most positions the conversation holds (all prompts and generated tokens of its turns).</summary>
    public int MaxLength => _tokens.Length;

    /// <summary>The tokens the session has processed (whose keys and values its cache holds), in order.</summary>
    public ReadOnlySpan<int> ProcessedTokens => _tokens.AsSpan(0, _processed);

    /// <summary>The number of <see cref="ProcessedTokens"/>.</summary>
    public int ProcessedCount => _processed;

    /// <summary>The tokens the last generation prefilled (its prompt minus what the session already held); 0 before any.</summary>
    public int LastPrefillCount { get; private set; }

    /// <summary>Whether the session can still run generations (not disposed, no step failed or was cancelled).</summary>
    public bool IsUsable => !_disposed && !_broken;

    /// <summary>Whether a generation is running on the conversation now.</summary>
    public bool IsBusy => Volatile.Read(ref _busy) != 0;

    /// <summary>
    /// Whether <see cref="GenerateAsync"/> can continue with <paramref name="promptIds"/>: the conversation is usable, shares
    /// at least one token with the prompt (<see cref="CommonPrefixLength"/>), and the prompt plus
    /// <paramref name="maxNewTokens"/> fits in <see cref="MaxLength"/>.
    /// </summary>
    /// <param name="promptIds">The full prompt (history included).</param>
    /// <param name="maxNewTokens">The most tokens the generation may add.</param>
    /// <returns>True when the prompt can be continued here.</returns>
    public bool CanContinue(IReadOnlyList<int> promptIds, int maxNewTokens)
    {
        ArgumentNullException.ThrowIfNull(promptIds);
        return IsUsable && CommonPrefixLength(promptIds) > 0 && (long)promptIds.Count + maxNewTokens <= MaxLength;
    }

    /// <summary>Whether the processed tokens are a proper prefix of <paramref name="promptIds"/> (which holds at least one more token).</summary>
    /// <param name="promptIds">The full prompt.</param>
    /// <returns>True when the prompt extends all that the session processed.</returns>
    public bool IsPrefixOf(IReadOnlyList<int> promptIds)
    {
        ArgumentNullException.ThrowIfNull(promptIds);
        return promptIds.Count > _processed && CommonPrefixLength(promptIds) == _processed;
    }

    /// <summary>
    /// The processed tokens a generation from <paramref name="promptIds"/> keeps: the longest common prefix of the two,
    /// less than the prompt's length (its last token must run to give the next token's logits). The rest of the session
    /// is rolled back. A reply the tokenizer would encode differently when it comes back in the history (a model may
    /// generate a non-canonical tokenization) still keeps everything up to where the two differ.
    /// </summary>
    /// <param name="promptIds">The full prompt.</param>
    /// <returns>The positions kept, from 0 to <c>min(ProcessedCount, promptIds.Count - 1)</c>; without
    /// <see cref="CanRollBack"/>, either all processed tokens or 0.</returns>
    public int CommonPrefixLength(IReadOnlyList<int> promptIds)
    {
        ArgumentNullException.ThrowIfNull(promptIds);
        var limit = Math.Min(_processed, promptIds.Count - 1);
        var n = 0;
        while (n < limit && _tokens[n] == promptIds[n])
        {
            n++;
        }

        return n == _processed || CanRollBack ? n : 0;
    }

    /// <summary>
    /// Generates after <paramref name="promptIds"/> (the whole conversation so far), keeping the processed tokens it shares
    /// with them (<see cref="CommonPrefixLength"/>; the session is rolled back past them) and prefilling only the rest;
    /// yields the same tokens as <see cref="CausalLanguageModel.GenerateAsync(IReadOnlyList{int}, GenerationOptions?, CancellationToken)"/>
    /// on a fresh session would.
    /// </summary>
    /// <param name="promptIds">The full prompt; any prompt works, one sharing a longer prefix with <see cref="ProcessedTokens"/> prefills less.</param>
    /// <param name="options">Generation options (no <see cref="GenerationOptions.Adapter"/>: the session runs the plain weights).</param>
    /// <param name="cancellationToken">Stops the generation; a step it interrupts leaves the conversation unusable.</param>
    /// <returns>The generated token ids (a stop token included).</returns>
    /// <exception cref="ArgumentException">When the prompt does not fit with
    /// <see cref="GenerationOptions.MaxNewTokens"/> in <see cref="MaxLength"/>, holds an id outside the vocabulary, or the
    /// options name an adapter.</exception>
    /// <exception cref="InvalidOperationException">When another generation runs on the conversation or it is not usable.</exception>
    public async IAsyncEnumerable<int> GenerateAsync(
        IReadOnlyList<int> promptIds,
        GenerationOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        options = _model.ValidateGeneration(promptIds, options);
        if (options.Adapter is not null)
        {
            throw new ArgumentException($"A conversation runs the plain weights; GenerationOptions.Adapter ('{options.Adapter}') needs its own session.", nameof(options));
        }

        if (Interlocked.Exchange(ref _busy, 1) != 0)
        {
            throw new InvalidOperationException("Another generation is running on this conversation; a conversation runs one at a time.");
        }

        try
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_broken)
            {
                throw new InvalidOperationException("An earlier step of this conversation failed or was cancelled; its session is unusable.");
            }


            if ((long)promptIds.Count + options.MaxNewTokens > MaxLength)
            {
                throw new ArgumentException(
                    $"The prompt ({promptIds.Count} tokens) plus MaxNewTokens ({options.MaxNewTokens}) needs more than the conversation's {MaxLength} positions.", nameof(options));
            }

            // Keep the common prefix, roll the rest back, and run from there.
            var kept = CommonPrefixLength(promptIds);
            if (kept < _processed)
            {
                _session.Truncate(kept);
                _processed = kept;
            }

            for (var i = kept; i < promptIds.Count; i++)
            {
                _tokens[i] = promptIds[i];
            }

            LastPrefillCount = promptIds.Count - kept;
            try
            {
                await foreach (var token in _model.RunGenerationAsync(_session, default, _tokens, _processed, promptIds.Count, options, _state, cancellationToken).ConfigureAwait(false))
                {
                    yield return token;
                }
            }
            finally
            {
                // A step cut off midway leaves the session's cache in an unknown state; otherwise it holds exactly the
                // tokens run so far (the prompt and every generated token but the last).
                _broken |= _state.Forwarding;
                _processed = _broken ? 0 : _session.Position;
            }
        }
        finally
        {
            Volatile.Write(ref _busy, 0);
        }
    }

    /// <summary>Closes the session (on remote servers: ends the inference session, freeing its cache).</summary>
    /// <returns>A task that completes when the session is closed.</returns>
    public async ValueTask DisposeAsync()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        await _session.DisposeAsync().ConfigureAwait(false);
    }
}
