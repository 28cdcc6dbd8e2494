using System.Numerics.Tensors;
using Microsoft.Extensions.AI;
using Petals.Generation;

namespace Petals.Extensions.AI;

/// <summary>
/// An <see cref="IEmbeddingGenerator{TInput, TEmbedding}"/> over a Petals model (local blocks, fixed peers or a swarm): each
/// text is tokenized as a prompt (BOS added when the tokenizer adds it), run through every block, and its final-norm hidden
/// states pooled as <see cref="PetalsEmbeddingGeneratorOptions.Pooling"/> says (the mean by default, or the last token),
/// optionally L2-normalized. Vectors have the model's hidden size.
/// </summary>
/// <remarks>
/// Thread-safe: every text runs on its own session. A decoder-only model that was not trained for embeddings gives vectors
/// whose similarities are only as meaningful as its hidden states are.
/// </remarks>
public sealed class PetalsEmbeddingGenerator : IEmbeddingGenerator<string, Embedding<float>>
{
    /// <summary>The provider name in <see cref="EmbeddingGeneratorMetadata"/>.</summary>
    internal const string ProviderName = "petals";

    private readonly PetalsModelSource _source;
    private readonly PetalsEmbeddingGeneratorOptions _options;
    private readonly TimeProvider _timeProvider;
    private EmbeddingGeneratorMetadata? _metadata;

    /// <summary>An embedding generator over <paramref name="model"/>, which the caller keeps owning (disposing the generator leaves it open).</summary>
    /// <param name="model">The model; it needs a tokenizer.</param>
    /// <param name="options">Options; the defaults when null. Read once, here.</param>
    /// <exception cref="ArgumentException">When an option is out of range; the message names it.</exception>
    public PetalsEmbeddingGenerator(CausalLanguageModel model, PetalsEmbeddingGeneratorOptions? options = null)
        : this(new PetalsModelSource(model), options, timeProvider: null)
    {
    }

    /// <summary>An embedding generator over the model <paramref name="source"/> gives (connected on first use, owned when it connects it).</summary>
    internal PetalsEmbeddingGenerator(PetalsModelSource source, PetalsEmbeddingGeneratorOptions? options, TimeProvider? timeProvider)
    {
        ArgumentNullException.ThrowIfNull(source);
        options ??= new PetalsEmbeddingGeneratorOptions();
        var failures = PetalsAIOptionsValidation.Check(options);
        if (failures.Count > 0)
        {
            throw new ArgumentException(string.Join(" ", failures), nameof(options));
        }

        _source = source;
        _options = new PetalsEmbeddingGeneratorOptions
        {
            Pooling = options.Pooling,
            Normalize = options.Normalize,
            ModelId = options.ModelId,
            MaxConcurrency = options.MaxConcurrency,
        };
        _timeProvider = timeProvider ?? TimeProvider.System;
    }

    /// <summary>
    /// Embeds every value of <paramref name="values"/>, at most <see cref="PetalsEmbeddingGeneratorOptions.MaxConcurrency"/> at
    /// once; the embeddings come back in the order of the values, with the total token count as
    /// <see cref="UsageDetails.InputTokenCount"/>. Every value is tokenized and checked before any is run.
    /// </summary>
    /// <param name="values">The texts.</param>
    /// <param name="options">
    /// <see cref="EmbeddingGenerationOptions.Dimensions"/> may only be the model's hidden size and
    /// <see cref="EmbeddingGenerationOptions.ModelId"/> only this generator's model id; other members are ignored.
    /// </param>
    /// <param name="cancellationToken">Cancels the call and the sessions it opened.</param>
    /// <returns>One embedding per value.</returns>
    /// <exception cref="NotSupportedException">When <paramref name="options"/> asks for other dimensions or another model.</exception>
    /// <exception cref="ArgumentException">When a value is null, encodes to no token, or is longer than the model's context; the message names its index.</exception>
    /// <exception cref="InvalidOperationException">When the model has no tokenizer.</exception>
    public async Task<GeneratedEmbeddings<Embedding<float>>> GenerateAsync(
        IEnumerable<string> values,
        EmbeddingGenerationOptions? options = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(values);
        var texts = values as IList<string> ?? values.ToList();
        var model = await _source.GetAsync(cancellationToken).ConfigureAwait(false);
        var modelId = ModelIdOf(model);
        CheckOptions(options, model, modelId);
        var tokenizer = model.Tokenizer ?? throw new InvalidOperationException("The model has no tokenizer, so it cannot embed text.");

        var ids = new int[texts.Count][];
        long inputTokens = 0;
        var context = model.Config.MaxPositionEmbeddings;
        for (var i = 0; i < ids.Length; i++)
        {
            var text = texts[i] ?? throw new ArgumentException($"Value {i} is null.", nameof(values));
            var tokens = tokenizer.Encode(text, addSpecialTokens: true);
            if (tokens.Length == 0)
            {
                throw new ArgumentException($"Value {i} encodes to no token, so it has no embedding.", nameof(values));
            }

            if (context > 0 && tokens.Length > context)
            {
                throw new ArgumentException($"Value {i} is {tokens.Length} tokens, longer than the model's context of {context}; shorten it (it is not truncated).", nameof(values));
            }

            ids[i] = tokens;
            inputTokens += tokens.Length;
        }

        var vectors = new float[ids.Length][];
        await Parallel.ForEachAsync(
            Enumerable.Range(0, ids.Length),
            new ParallelOptions { MaxDegreeOfParallelism = _options.MaxConcurrency, CancellationToken = cancellationToken },
            async (i, ct) =>
            {
                var vector = await model.EmbedAsync(ids[i], _options.Pooling, ct).ConfigureAwait(false);
                if (_options.Normalize)
                {
                    var norm = TensorPrimitives.Norm(vector);
                    if (norm > 0)
                    {
                        TensorPrimitives.Divide(vector, norm, vector);
                    }
                }

                vectors[i] = vector;
            }).ConfigureAwait(false);

        var created = _timeProvider.GetUtcNow();
        var result = new GeneratedEmbeddings<Embedding<float>>(vectors.Length)
        {
            Usage = new UsageDetails { InputTokenCount = inputTokens, TotalTokenCount = inputTokens },
        };
        foreach (var vector in vectors)
        {
            result.Add(new Embedding<float>(vector) { ModelId = modelId, CreatedAt = created });
        }

        return result;
    }

    /// <summary>
    /// <see cref="CausalLanguageModel"/> (the model, once connected), <see cref="EmbeddingGeneratorMetadata"/> (provider
    /// "petals", the model id, the hidden size once the model is connected), <see cref="PetalsEmbeddingGeneratorOptions"/> (a
    /// copy) or this generator; null for other types or any key.
    /// </summary>
    /// <param name="serviceType">The type asked for.</param>
    /// <param name="serviceKey">Must be null.</param>
    /// <returns>The service, or null.</returns>
    public object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        if (serviceKey is not null)
        {
            return null;
        }

        if (serviceType == typeof(EmbeddingGeneratorMetadata))
        {
            return Metadata();
        }

        if (serviceType == typeof(CausalLanguageModel))
        {
            return _source.Current;
        }

        if (serviceType == typeof(PetalsEmbeddingGeneratorOptions))
        {
            return new PetalsEmbeddingGeneratorOptions
            {
                Pooling = _options.Pooling,
                Normalize = _options.Normalize,
                ModelId = _options.ModelId,
                MaxConcurrency = _options.MaxConcurrency,
            };
        }

        return serviceType.IsInstanceOfType(this) ? this : null;
    }

    /// <summary>Disposes the model when this generator connected it (DI registrations); a model given to the constructor stays open.</summary>
    public void Dispose() => _source.DisposeAsync().AsTask().GetAwaiter().GetResult();

    private string? ModelIdOf(CausalLanguageModel model) => _options.ModelId ?? model.ModelId;

    private EmbeddingGeneratorMetadata Metadata()
    {
        if (_metadata is { } known)
        {
            return known;
        }

        var model = _source.Current;
        if (model is null)
        {
            // Not connected yet: what the options say; the dimensions are known once the model is.
            return new EmbeddingGeneratorMetadata(ProviderName, null, _options.ModelId, null);
        }

        var metadata = new EmbeddingGeneratorMetadata(ProviderName, null, ModelIdOf(model), model.Config.HiddenSize);
        _metadata = metadata;
        return metadata;
    }

    private static void CheckOptions(EmbeddingGenerationOptions? options, CausalLanguageModel model, string? modelId)
    {
        if (options is null)
        {
            return;
        }

        if (options.Dimensions is { } dimensions && dimensions != model.Config.HiddenSize)
        {
            throw new NotSupportedException(
                $"EmbeddingGenerationOptions.Dimensions is {dimensions}, but this model's embeddings have its hidden size, {model.Config.HiddenSize}, and are not truncated or projected.");
        }

        if (options.ModelId is { } requested && !string.Equals(requested, modelId, StringComparison.Ordinal))
        {
            throw new NotSupportedException(
                $"EmbeddingGenerationOptions.ModelId is '{requested}', but this generator serves the model '{modelId ?? "(no id)"}' only.");
        }
    }
}
