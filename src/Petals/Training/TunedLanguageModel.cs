using System.Runtime.CompilerServices;
using Petals.Generation;

namespace Petals.Training;

/// <summary>
/// Generation and scoring with trained parameters: every sequence starts with the trained prefix (prompt tuning), and
/// the session runs with the trained deep prompts or LoRA (<see cref="Inference.ITransformerBlocks.OpenSessionAsync(int, int, Execution.BlockAdaptation?, CancellationToken)"/>),
/// locally or through a swarm.
/// </summary>
/// <remarks>Thread-safe as long as the parameters are not being trained at the same time.</remarks>
public sealed class TunedLanguageModel
{
    private readonly FrozenHead _frozen;

    /// <summary>Wraps a trained (or loaded) model.</summary>
    /// <param name="model">The model with its trained parameters.</param>
    public TunedLanguageModel(TrainableModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        Model = model;
        _frozen = model.Frozen;
    }

    /// <summary>The trained model.</summary>
    public TrainableModel Model { get; }

    /// <summary>
    /// Loads the parameters saved in <paramref name="directory"/> (by <c>petals finetune</c> or <see cref="FineTuneCheckpoint.Save"/>)
    /// for <paramref name="lm"/>'s head and blocks.
    /// </summary>
    /// <param name="lm">The frozen model (local or remote blocks).</param>
    /// <param name="directory">The checkpoint directory.</param>
    /// <returns>The tuned model.</returns>
    /// <exception cref="InvalidDataException">The checkpoint is missing, malformed or of another model shape.</exception>
    public static TunedLanguageModel Load(CausalLanguageModel lm, string directory)
    {
        ArgumentNullException.ThrowIfNull(lm);
        var options = FineTuneCheckpoint.ReadOptions(directory);
        var model = new TrainableModel(lm.Head, lm.Blocks, options);
        FineTuneCheckpoint.LoadParameters(directory, model);
        return new TunedLanguageModel(model);
    }

    /// <summary>Generates tokens after <paramref name="promptIds"/> (after the trained prefix), greedy or sampled as <paramref name="options"/> say.</summary>
    /// <param name="promptIds">The prompt, at least one token.</param>
    /// <param name="options">Generation options.</param>
    /// <param name="cancellationToken">Stops the generation.</param>
    /// <returns>The generated ids; a stop token ends the stream (and is yielded).</returns>
    /// <exception cref="ArgumentException">The prompt is empty or the prefix, prompt and new tokens exceed the context.</exception>
    public async IAsyncEnumerable<int> GenerateAsync(IReadOnlyList<int> promptIds, GenerationOptions? options = null, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(promptIds);
        options ??= new GenerationOptions();
        options.Validate();
        if (promptIds.Count == 0)
        {
            throw new ArgumentException("The prompt must hold at least one token (e.g. BOS).", nameof(promptIds));
        }

        var config = Model.Config;
        var h = config.HiddenSize;
        var prefix = Model.PrefixLength;
        var maxLength = prefix + promptIds.Count + options.MaxNewTokens;
        if (maxLength > config.MaxPositionEmbeddings)
        {
            throw new ArgumentException($"The prefix ({prefix}), the prompt ({promptIds.Count}) and MaxNewTokens ({options.MaxNewTokens}) exceed the model's context of {config.MaxPositionEmbeddings}.", nameof(promptIds));
        }

        var history = new int[promptIds.Count + options.MaxNewTokens];
        for (var i = 0; i < promptIds.Count; i++)
        {
            history[i] = promptIds[i];
        }

        var length = promptIds.Count;
        var stopTokens = options.StopTokenIds ?? config.EosTokenIds;
        var sampler = new Sampler(options.Sampling);
        var logits = new float[config.VocabSize];
        var normed = new float[h];
        // A servers' adapter (GenerationOptions.Adapter) combines with trained prompts; with trained LoRA it is refused (BlockAdaptation.Validate).
        var adaptation = options.Adapter is { } adapter ? (Model.CreateAdaptation(1) ?? Execution.BlockAdaptation.None) with { Adapter = adapter } : Model.CreateAdaptation(1);
        var session = await Model.Blocks.OpenSessionAsync(1, maxLength, adaptation, cancellationToken).ConfigureAwait(false);
        await using (session.ConfigureAwait(false))
        {
            var first = new float[(prefix + length) * h];
            Model.Embed(history.AsSpan(0, length), first);
            await session.ForwardAsync(first, prefix + length, cancellationToken).ConfigureAwait(false);
            Logits(first.AsSpan((prefix + length - 1) * h, h), logits, normed);
            var step = new float[h];
            for (var generated = 0; generated < options.MaxNewTokens; generated++)
            {
                var token = sampler.Sample(logits, history.AsSpan(0, length));
                history[length++] = token;
                yield return token;
                if (stopTokens.Contains(token) || generated == options.MaxNewTokens - 1)
                {
                    break;
                }

                Model.Head.Embed(history.AsSpan(length - 1, 1), step);
                await session.ForwardAsync(step, 1, cancellationToken).ConfigureAwait(false);
                Logits(step, logits, normed);
            }
        }
    }

    /// <summary>Teacher-forced NLL of <paramref name="tokenIds"/> after the trained prefix: every token after the first is predicted.</summary>
    /// <param name="tokenIds">The sequence, at least two tokens (typically BOS and the text).</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>The mean NLL in nats per predicted token.</returns>
    /// <exception cref="ArgumentException">Fewer than two tokens, or the prefix and sequence exceed the context.</exception>
    public async Task<NegativeLogLikelihood> ComputeNegativeLogLikelihoodAsync(IReadOnlyList<int> tokenIds, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(tokenIds);
        if (tokenIds.Count < 2)
        {
            throw new ArgumentException("At least two tokens are needed: one to condition on and one to predict.", nameof(tokenIds));
        }

        var config = Model.Config;
        var h = config.HiddenSize;
        var prefix = Model.PrefixLength;
        var n = tokenIds.Count - 1;
        if (prefix + n > config.MaxPositionEmbeddings)
        {
            throw new ArgumentException($"The prefix ({prefix}) and the sequence ({tokenIds.Count} tokens) exceed the model's context of {config.MaxPositionEmbeddings}.", nameof(tokenIds));
        }

        var ids = tokenIds.ToArray();
        var hidden = new float[(prefix + n) * h];
        Model.Embed(ids.AsSpan(0, n), hidden);
        var session = await Model.Blocks.OpenSessionAsync(1, prefix + n, Model.CreateAdaptation(1), cancellationToken).ConfigureAwait(false);
        await using (session.ConfigureAwait(false))
        {
            await session.ForwardAsync(hidden, prefix + n, cancellationToken).ConfigureAwait(false);
        }

        var targets = new int[n];
        ids.AsSpan(1).CopyTo(targets);
        var sum = _frozen.CrossEntropy(hidden.AsSpan(prefix * h), targets, 1, default);
        return new NegativeLogLikelihood(sum / n, n);
    }

    private void Logits(ReadOnlySpan<float> hidden, Span<float> logits, Span<float> normed)
    {
        FrozenHead.Normalize(hidden, _frozen.NormWeight, _frozen.NormEpsilon, normed);
        var h = _frozen.HiddenSize;
        for (var v = 0; v < _frozen.VocabSize; v++)
        {
            logits[v] = System.Numerics.Tensors.TensorPrimitives.Dot(_frozen.Head.AsSpan(v * h, h), normed);
        }
    }
}
