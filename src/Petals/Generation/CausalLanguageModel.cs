using System.Runtime.CompilerServices;
using Petals.Execution;
using Petals.Formats;
using Petals.Inference;
using Petals.Models;
using Petals.Tokenization;

namespace Petals.Generation;

/// <summary>
/// A causal language model: local embeddings, final norm and LM head around a stack of decoder blocks
/// that may run in this process or elsewhere. Generates tokens and scores text.
/// </summary>
/// <remarks>
/// Thread-safe: each generation opens its own session and sampler. Disposing the model disposes what it was
/// given ownership of (weights, stack).
/// </remarks>
public sealed class CausalLanguageModel : IDisposable
{
    private const int PrefillChunk = 512;
    private readonly IDisposable[] _owned;

    /// <summary>Creates a model from its parts.</summary>
    /// <param name="head">Embeddings, final norm and LM head.</param>
    /// <param name="blocks">All decoder blocks.</param>
    /// <param name="tokenizer">The tokenizer, if text in and out is wanted.</param>
    /// <param name="owned">Objects disposed with the model (e.g. the weights and the stack).</param>
    /// <exception cref="ArgumentException">When the head and the blocks disagree on the hidden size.</exception>
    public CausalLanguageModel(LanguageModelHead head, ITransformerBlocks blocks, ITokenizer? tokenizer = null, params IDisposable[] owned)
    {
        ArgumentNullException.ThrowIfNull(head);
        ArgumentNullException.ThrowIfNull(blocks);
        if (head.Config.HiddenSize != blocks.Config.HiddenSize)
        {
            throw new ArgumentException($"The head has hidden size {head.Config.HiddenSize} but the blocks have {blocks.Config.HiddenSize}.", nameof(blocks));
        }

        Head = head;
        Blocks = blocks;
        Tokenizer = tokenizer;
        _owned = owned ?? [];
    }

    /// <summary>The model configuration.</summary>
    public ModelConfig Config => Head.Config;

    /// <summary>Embeddings, final norm and LM head.</summary>
    public LanguageModelHead Head { get; }

    /// <summary>The decoder blocks.</summary>
    public ITransformerBlocks Blocks { get; }

    /// <summary>The tokenizer, if any.</summary>
    public ITokenizer? Tokenizer { get; }

    /// <summary>
    /// The model's chat template (from <c>tokenizer_config.json</c> or GGUF <c>tokenizer.chat_template</c>), or
    /// <see langword="null"/> when the model has none (chat clients then use <see cref="Chat.ChatTemplate.Plain"/>).
    /// </summary>
    public Chat.ChatTemplate? ChatTemplate { get; init; }

    /// <summary>
    /// Why the model's own chat template cannot be used (it does not parse, or its <c>chat_template</c> field is malformed),
    /// or <see langword="null"/>. The model still loads for generation; chat clients refuse to chat unless given a template.
    /// </summary>
    public string? ChatTemplateError { get; init; }

    /// <summary>
    /// The model's id (<see cref="ModelIdentity.Compute"/> of its file, or the id the swarm's servers announce), or
    /// <see langword="null"/> when the model was built from parts without one.
    /// </summary>
    public string? ModelId { get; init; }

    /// <summary>
    /// Loads a model from a GGUF file or a Hugging Face directory and runs all its blocks in this process
    /// with executors from <paramref name="executorFactory"/>.
    /// </summary>
    /// <param name="modelPath">A .gguf file, or a directory with config.json, safetensors and tokenizer.json.</param>
    /// <param name="executorFactory">Creates the block executor (e.g. the managed CPU one).</param>
    /// <returns>The model, owning its weights and executor.</returns>
    /// <exception cref="ModelFormatException">When a file is malformed; the message names the file and field.</exception>
    public static CausalLanguageModel LoadLocal(string modelPath, IBlockExecutorFactory executorFactory) =>
        LoadLocal(modelPath, executorFactory, new Dictionary<string, string>());

    /// <summary>
    /// Loads a model as <see cref="LoadLocal(string, IBlockExecutorFactory)"/> does, with named LoRA adapters read from
    /// PEFT directories (<see cref="Formats.Peft.PeftAdapter"/>) for every block, which generations name with
    /// <see cref="GenerationOptions.Adapter"/>.
    /// </summary>
    /// <param name="modelPath">A .gguf file, or a directory with config.json, safetensors and tokenizer.json.</param>
    /// <param name="executorFactory">Creates the block executor (e.g. the managed CPU one).</param>
    /// <param name="adapterDirectories">Adapter name → PEFT adapter directory; empty for none.</param>
    /// <returns>The model, owning its weights and executor.</returns>
    /// <exception cref="ModelFormatException">When a model file is malformed; the message names the file and field.</exception>
    /// <exception cref="InvalidOperationException">When an adapter does not load; the message names the adapter and the file.</exception>
    public static CausalLanguageModel LoadLocal(string modelPath, IBlockExecutorFactory executorFactory, IReadOnlyDictionary<string, string> adapterDirectories)
    {
        ArgumentNullException.ThrowIfNull(executorFactory);
        ArgumentNullException.ThrowIfNull(adapterDirectories);
        var weights = ModelLoader.Open(modelPath);
        try
        {
            var tokenizer = TokenizerLoader.Load(modelPath);
            var head = LanguageModelHead.Load(weights);
            var adapters = new Dictionary<string, LoraWeights>(StringComparer.Ordinal);
            foreach (var (name, directory) in adapterDirectories)
            {
                try
                {
                    adapters.Add(name, Formats.Peft.PeftAdapter.Load(directory, weights.Config));
                }
                catch (ModelFormatException e)
                {
                    throw new InvalidOperationException($"The LoRA adapter '{name}' ({directory}) does not load: {e.Message}", e);
                }
            }

            var executor = executorFactory.Create(weights, new BlockRange(0, weights.Config.NumLayers));
            try
            {
                var stack = new LocalTransformerBlocks([executor], adapters: adapters);
                return new CausalLanguageModel(head, stack, tokenizer, stack, weights)
                {
                    ChatTemplate = Chat.ChatTemplate.LoadForModel(modelPath, out var templateError),
                    ChatTemplateError = templateError,
                    ModelId = ModelIdentity.Compute(modelPath, weights.Config),
                };
            }
            catch
            {
                executor.Dispose();
                throw;
            }
        }
        catch
        {
            weights.Dispose();
            throw;
        }
    }

    /// <summary>Encodes a prompt as the tokenizer says (with BOS when the tokenizer adds it).</summary>
    /// <param name="prompt">The prompt text.</param>
    /// <returns>The prompt token ids.</returns>
    /// <exception cref="InvalidOperationException">When the model has no tokenizer.</exception>
    public int[] EncodePrompt(string prompt)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        var tokenizer = Tokenizer ?? throw new InvalidOperationException("This model has no tokenizer; pass token ids instead.");
        return tokenizer.Encode(prompt, addSpecialTokens: true);
    }

    /// <summary>
    /// Generates tokens after <paramref name="promptIds"/>, yielding each one as soon as it is chosen. Stops after
    /// <see cref="GenerationOptions.MaxNewTokens"/> tokens or after a stop token (which is yielded).
    /// </summary>
    /// <param name="promptIds">The prompt, at least one token.</param>
    /// <param name="options">Generation options; greedy, 64 tokens by default.</param>
    /// <param name="cancellationToken">Stops the generation.</param>
    /// <returns>The generated token ids.</returns>
    /// <exception cref="ArgumentException">When the prompt is empty, holds an id outside the vocabulary, or the prompt plus
    /// <see cref="GenerationOptions.MaxNewTokens"/> exceeds the model's context (<see cref="ModelConfig.MaxPositionEmbeddings"/>).</exception>
    public IAsyncEnumerable<int> GenerateAsync(
        IReadOnlyList<int> promptIds,
        GenerationOptions? options = null,
        CancellationToken cancellationToken = default) =>
        GenerateAsync(promptIds, options, prefix: default, adaptation: null, cancellationToken);

    /// <summary>
    /// <see cref="GenerateAsync(IReadOnlyList{int}, GenerationOptions?, CancellationToken)"/> with trained parameters:
    /// <paramref name="prefix"/> (<c>[P, hidden]</c> embeddings, prompt tuning) runs before the prompt, and the session runs
    /// with <paramref name="adaptation"/> (deep prompts, LoRA; <see cref="GenerationOptions.Adapter"/> is added to it).
    /// </summary>
    internal async IAsyncEnumerable<int> GenerateAsync(
        IReadOnlyList<int> promptIds,
        GenerationOptions? options,
        ReadOnlyMemory<float> prefix,
        BlockAdaptation? adaptation,
        [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        options = ValidateGeneration(promptIds, options);
        var prefixRows = prefix.Length / Config.HiddenSize;
        var history = new int[promptIds.Count + options.MaxNewTokens];
        for (var i = 0; i < promptIds.Count; i++)
        {
            history[i] = promptIds[i];
        }

        var maxLength = prefixRows + history.Length;
        EnsureWithinContext(maxLength, prefixRows == 0
            ? $"the prompt ({promptIds.Count} tokens) plus MaxNewTokens ({options.MaxNewTokens})"
            : $"the trained prefix ({prefixRows}), the prompt ({promptIds.Count} tokens) and MaxNewTokens ({options.MaxNewTokens})", nameof(options));
        if (options.Adapter is { } adapter)
        {
            // A servers' adapter combines with trained prompts; with trained LoRA it is refused (BlockAdaptation.Validate).
            adaptation = (adaptation ?? BlockAdaptation.None) with { Adapter = adapter };
        }

        var session = adaptation is null
            ? await Blocks.OpenSessionAsync(1, maxLength, cancellationToken).ConfigureAwait(false)
            : await Blocks.OpenSessionAsync(1, maxLength, adaptation, cancellationToken).ConfigureAwait(false);
        await using (session.ConfigureAwait(false))
        {
            await foreach (var token in RunGenerationAsync(session, prefix, history, processed: 0, promptIds.Count, options, state: null, cancellationToken).ConfigureAwait(false))
            {
                yield return token;
            }
        }
    }

    /// <summary>
    /// Opens a conversation: a session of up to <paramref name="maxLength"/> positions kept open across generations, so
    /// that a prompt extending what the session already processed prefills only its new tokens
    /// (<see cref="LanguageModelConversation.GenerateAsync"/>).
    /// </summary>
    /// <param name="maxLength">The most positions the conversation holds (every prompt and generated token of all its turns).</param>
    /// <param name="cancellationToken">Cancels opening the session.</param>
    /// <returns>The conversation, which the caller disposes (closing the session).</returns>
    /// <exception cref="ArgumentOutOfRangeException">When <paramref name="maxLength"/> is below 2 or beyond the model's context.</exception>
    public async Task<LanguageModelConversation> OpenConversationAsync(int maxLength, CancellationToken cancellationToken = default)
    {
        if (maxLength < 2 || maxLength > Config.MaxPositionEmbeddings)
        {
            throw new ArgumentOutOfRangeException(nameof(maxLength), maxLength,
                $"A conversation needs between 2 and the model's context of {Config.MaxPositionEmbeddings} (max_position_embeddings) positions.");
        }

        var session = await Blocks.OpenSessionAsync(1, maxLength, cancellationToken).ConfigureAwait(false);
        return new LanguageModelConversation(this, session, maxLength);
    }

    /// <summary>Checks <paramref name="options"/> and the prompt ids, returning the validated options.</summary>
    internal GenerationOptions ValidateGeneration(IReadOnlyList<int> promptIds, GenerationOptions? options)
    {
        ArgumentNullException.ThrowIfNull(promptIds);
        options ??= new GenerationOptions();
        options.Validate();
        if (promptIds.Count == 0)
        {
            throw new ArgumentException("The prompt must hold at least one token (e.g. BOS).", nameof(promptIds));
        }

        var vocab = Config.VocabSize;
        for (var i = 0; i < promptIds.Count; i++)
        {
            if ((uint)promptIds[i] >= (uint)vocab)
            {
                throw new ArgumentException($"Prompt token {i} is {promptIds[i]}, outside the vocabulary [0, {vocab}).", nameof(promptIds));
            }
        }

        return options;
    }

    /// <summary>
    /// The generation loop every path shares: prefills the positions <c>processed..</c> of the prefix rows followed by
    /// <c>history[..promptLength]</c> on <paramref name="session"/> (which already holds the first
    /// <paramref name="processed"/>), then samples and runs one token at a time, writing each into
    /// <paramref name="history"/> after the prompt. Stops after <see cref="GenerationOptions.MaxNewTokens"/> or a stop
    /// token (yielded, never run); the caller stopping the enumeration early leaves the session consistent.
    /// </summary>
    /// <param name="session">The session (batch 1), holding the first <paramref name="processed"/> positions.</param>
    /// <param name="prefix">Trained prefix rows run before the tokens (empty for none).</param>
    /// <param name="history">The tokens: the prompt in <c>[..promptLength]</c>, room for MaxNewTokens after it.</param>
    /// <param name="processed">Positions (prefix rows and tokens) the session already holds; fewer than the prompt's.</param>
    /// <param name="promptLength">The prompt tokens in <paramref name="history"/>.</param>
    /// <param name="options">Validated generation options.</param>
    /// <param name="state">When given, <see cref="GenerationState.Forwarding"/> is true while a forward is in flight, so
    /// that a caller can tell a session a failed or cancelled step left unusable.</param>
    /// <param name="cancellationToken">Stops the generation.</param>
    internal async IAsyncEnumerable<int> RunGenerationAsync(
        ITransformerSession session,
        ReadOnlyMemory<float> prefix,
        int[] history,
        int processed,
        int promptLength,
        GenerationOptions options,
        GenerationState? state,
        [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var h = Config.HiddenSize;
        var prefixRows = prefix.Length / h;
        var stopTokens = options.StopTokenIds ?? Config.EosTokenIds;
        var sampler = new Sampler(options.Sampling);
        var logits = new float[Config.VocabSize];
        var scratch = new float[h];
        var step = new float[h];
        var length = promptLength;

        // Prefill (prefix, then prompt) in chunks so that a long prompt needs bounded memory.
        var total = prefixRows + length;
        var chunk = new float[Math.Min(total - processed, PrefillChunk) * h];
        for (var start = processed; start < total; start += PrefillChunk)
        {
            var n = Math.Min(PrefillChunk, total - start);
            var hidden = chunk.AsMemory(0, n * h);
            EmbedPositions(prefix.Span, history, start, hidden.Span);
            state?.Forwarding = true;
            await session.ForwardAsync(hidden, n, cancellationToken).ConfigureAwait(false);
            state?.Forwarding = false;
            if (start + n == total)
            {
                Head.ComputeLogits(hidden.Span.Slice((n - 1) * h, h), logits, scratch);
            }
        }

        for (var generated = 0; generated < options.MaxNewTokens; generated++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var token = sampler.Sample(logits, history.AsSpan(0, length), generated);
            history[length++] = token;
            yield return token;
            if (Contains(stopTokens, token) || generated == options.MaxNewTokens - 1)
            {
                break;
            }

            Head.Embed(history.AsSpan(length - 1, 1), step);
            state?.Forwarding = true;
            await session.ForwardAsync(step, 1, cancellationToken).ConfigureAwait(false);
            state?.Forwarding = false;
            Head.ComputeLogits(step, logits, scratch);
        }
    }

    /// <summary>
    /// Generates text after <paramref name="prompt"/>, yielding text pieces as tokens complete them (never a
    /// split UTF-8 character). Special tokens are not printed.
    /// </summary>
    /// <param name="prompt">The prompt text.</param>
    /// <param name="options">Generation options.</param>
    /// <param name="cancellationToken">Stops the generation.</param>
    /// <returns>The generated text, piece by piece.</returns>
    /// <exception cref="InvalidOperationException">When the model has no tokenizer.</exception>
    public async IAsyncEnumerable<string> GenerateTextAsync(
        string prompt,
        GenerationOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var ids = EncodePrompt(prompt);
        var decoder = Tokenizer!.CreateStreamingDecoder(skipSpecialTokens: true);
        await foreach (var token in GenerateAsync(ids, options, cancellationToken).ConfigureAwait(false))
        {
            var piece = decoder.Append(token);
            if (piece.Length > 0)
            {
                yield return piece;
            }
        }

        var rest = decoder.Flush();
        if (rest.Length > 0)
        {
            yield return rest;
        }
    }

    /// <summary>
    /// Teacher-forced negative log-likelihood: every token after the first is predicted from the ones before it.
    /// </summary>
    /// <param name="tokenIds">The sequence, at least two tokens (typically BOS followed by the text).</param>
    /// <param name="cancellationToken">Cancels the computation.</param>
    /// <returns>The mean NLL in nats per predicted token and the number of predicted tokens.</returns>
    /// <exception cref="ArgumentException">When fewer than two tokens are given, an id is outside the vocabulary, or the
    /// sequence is longer than the model's context (<see cref="ModelConfig.MaxPositionEmbeddings"/>).</exception>
    public Task<NegativeLogLikelihood> ComputeNegativeLogLikelihoodAsync(IReadOnlyList<int> tokenIds, CancellationToken cancellationToken = default) =>
        ComputeNegativeLogLikelihoodAsync(tokenIds, prefix: default, adaptation: null, cancellationToken);

    /// <summary>
    /// <see cref="ComputeNegativeLogLikelihoodAsync(IReadOnlyList{int}, CancellationToken)"/> with trained parameters:
    /// <paramref name="prefix"/> (<c>[P, hidden]</c>) runs before the tokens (and predicts nothing), the session runs with
    /// <paramref name="adaptation"/>.
    /// </summary>
    internal async Task<NegativeLogLikelihood> ComputeNegativeLogLikelihoodAsync(IReadOnlyList<int> tokenIds, ReadOnlyMemory<float> prefix, BlockAdaptation? adaptation, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(tokenIds);
        if (tokenIds.Count < 2)
        {
            throw new ArgumentException("At least two tokens are needed: one to condition on and one to predict.", nameof(tokenIds));
        }

        var h = Config.HiddenSize;
        var vocab = Config.VocabSize;
        var prefixRows = prefix.Length / h;
        var ids = new int[tokenIds.Count];
        for (var i = 0; i < ids.Length; i++)
        {
            ids[i] = tokenIds[i];
            if ((uint)ids[i] >= (uint)vocab)
            {
                throw new ArgumentException($"Token {i} is {ids[i]}, outside the vocabulary [0, {vocab}).", nameof(tokenIds));
            }
        }

        // The last token is only predicted, never run.
        var positions = prefixRows + ids.Length - 1;
        EnsureWithinContext(positions + 1, prefixRows == 0 ? $"the sequence ({ids.Length} tokens)" : $"the trained prefix ({prefixRows}) and the sequence ({ids.Length} tokens)", nameof(tokenIds));
        var logits = new float[vocab];
        var scratch = new float[h];
        var chunk = new float[Math.Min(positions, PrefillChunk) * h];
        var total = 0.0;
        var session = adaptation is null
            ? await Blocks.OpenSessionAsync(1, positions, cancellationToken).ConfigureAwait(false)
            : await Blocks.OpenSessionAsync(1, positions, adaptation, cancellationToken).ConfigureAwait(false);
        await using (session.ConfigureAwait(false))
        {
            for (var start = 0; start < positions; start += PrefillChunk)
            {
                var n = Math.Min(PrefillChunk, positions - start);
                var hidden = chunk.AsMemory(0, n * h);
                EmbedPositions(prefix.Span, ids, start, hidden.Span);
                await session.ForwardAsync(hidden, n, cancellationToken).ConfigureAwait(false);
                for (var t = Math.Max(0, prefixRows - start); t < n; t++)
                {
                    Head.ComputeLogits(hidden.Span.Slice(t * h, h), logits, scratch);
                    total += NegativeLogSoftmax(logits, ids[start + t - prefixRows + 1]);
                }
            }
        }

        return new NegativeLogLikelihood(total / (ids.Length - 1), ids.Length - 1);
    }

    /// <summary>
    /// The embedding of a text: its tokens run through every block, the final norm applied to each position, and the
    /// positions pooled as <paramref name="pooling"/> says. The LM head is not applied.
    /// </summary>
    /// <param name="tokenIds">The tokens (typically <see cref="EncodePrompt"/> of the text), at least one.</param>
    /// <param name="pooling">How the positions are pooled; the mean by default.</param>
    /// <param name="cancellationToken">Cancels the computation (and the session it opened).</param>
    /// <returns>A vector of <see cref="ModelConfig.HiddenSize"/> values.</returns>
    /// <exception cref="ArgumentException">When no token is given, an id is outside the vocabulary, or the sequence is longer
    /// than the model's context.</exception>
    public async Task<float[]> EmbedAsync(IReadOnlyList<int> tokenIds, EmbeddingPooling pooling = EmbeddingPooling.Mean, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(tokenIds);
        if (tokenIds.Count == 0)
        {
            throw new ArgumentException("At least one token is needed to compute an embedding.", nameof(tokenIds));
        }

        if (pooling is not (EmbeddingPooling.Mean or EmbeddingPooling.LastToken))
        {
            throw new ArgumentOutOfRangeException(nameof(pooling), pooling, "Unknown pooling.");
        }

        var h = Config.HiddenSize;
        var ids = new int[tokenIds.Count];
        for (var i = 0; i < ids.Length; i++)
        {
            ids[i] = tokenIds[i];
            if ((uint)ids[i] >= (uint)Config.VocabSize)
            {
                throw new ArgumentException($"Token {i} is {ids[i]}, outside the vocabulary [0, {Config.VocabSize}).", nameof(tokenIds));
            }
        }

        EnsureWithinContext(ids.Length, $"the text ({ids.Length} tokens)", nameof(tokenIds));
        var result = new float[h];
        var normed = new float[h];
        var chunk = new float[Math.Min(ids.Length, PrefillChunk) * h];
        var session = await Blocks.OpenSessionAsync(1, ids.Length, cancellationToken).ConfigureAwait(false);
        await using (session.ConfigureAwait(false))
        {
            for (var start = 0; start < ids.Length; start += PrefillChunk)
            {
                var n = Math.Min(PrefillChunk, ids.Length - start);
                var hidden = chunk.AsMemory(0, n * h);
                Head.Embed(ids.AsSpan(start, n), hidden.Span);
                await session.ForwardAsync(hidden, n, cancellationToken).ConfigureAwait(false);
                var first = pooling == EmbeddingPooling.Mean ? 0 : start + n == ids.Length ? n - 1 : n;
                for (var t = first; t < n; t++)
                {
                    Head.Normalize(hidden.Span.Slice(t * h, h), normed);
                    System.Numerics.Tensors.TensorPrimitives.Add(result, normed, result);
                }
            }
        }

        if (pooling == EmbeddingPooling.Mean)
        {
            System.Numerics.Tensors.TensorPrimitives.Multiply(result, 1f / ids.Length, result);
        }

        return result;
    }

    /// <summary>
    /// The inputs of positions <c>start..</c> (as many as <paramref name="destination"/> holds rows) of the sequence
    /// <paramref name="prefix"/> rows followed by the embeddings of <paramref name="ids"/>.
    /// </summary>
    private void EmbedPositions(ReadOnlySpan<float> prefix, int[] ids, int start, Span<float> destination)
    {
        var h = Config.HiddenSize;
        var prefixRows = prefix.Length / h;
        var n = destination.Length / h;
        var fromPrefix = Math.Clamp(prefixRows - start, 0, n);
        prefix.Slice(Math.Min(start, prefixRows) * h, fromPrefix * h).CopyTo(destination);
        if (fromPrefix < n)
        {
            Head.Embed(ids.AsSpan(start + fromPrefix - prefixRows, n - fromPrefix), destination[(fromPrefix * h)..]);
        }
    }

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (var owned in _owned)
        {
            owned.Dispose();
        }
    }

    private void EnsureWithinContext(int length, string what, string parameter)
    {
        if (length > Config.MaxPositionEmbeddings)
        {
            throw new ArgumentException(
                $"{what} needs {length} positions, more than the model's context of {Config.MaxPositionEmbeddings} (max_position_embeddings).", parameter);
        }
    }

    private static double NegativeLogSoftmax(ReadOnlySpan<float> logits, int target)
    {
        var max = double.NegativeInfinity;
        foreach (var l in logits)
        {
            max = Math.Max(max, l);
        }

        var sum = 0.0;
        foreach (var l in logits)
        {
            sum += Math.Exp(l - max);
        }

        return -(logits[target] - max - Math.Log(sum));
    }

    private static bool Contains(IReadOnlyList<int> list, int value)
    {
        for (var i = 0; i < list.Count; i++)
        {
            if (list[i] == value)
            {
                return true;
            }
        }

        return false;
    }
}
