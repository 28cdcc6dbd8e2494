using Petals.Generation;

namespace Petals.Training;

/// <summary>
/// Generation and scoring with trained parameters: every sequence starts with the trained prefix (prompt tuning), and
/// the session runs with the trained deep prompts or LoRA (<see cref="Inference.ITransformerBlocks.OpenSessionAsync(int, int, Execution.BlockAdaptation?, CancellationToken)"/>),
/// locally or through a swarm.
/// </summary>
/// <remarks>Thread-safe as long as the parameters are not being trained at the same time.</remarks>
[System.Diagnostics.CodeAnalysis.SuppressMessage("Design", "CA1001", Justification = "The wrapped CausalLanguageModel owns nothing: it is created over the trainable model's head and blocks, whose owner disposes them.")]
public sealed class TunedLanguageModel
{
    private readonly CausalLanguageModel _lm;

    /// <summary>Wraps a trained (or loaded) model.</summary>
    /// <param name="model">The model with its trained parameters.</param>
    public TunedLanguageModel(TrainableModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        Model = model;
        _lm = new CausalLanguageModel(model.Head, model.Blocks);
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

    /// <summary>
    /// Generates tokens after <paramref name="promptIds"/> (after the trained prefix), greedy or sampled as <paramref name="options"/>
    /// say, as <see cref="CausalLanguageModel.GenerateAsync(IReadOnlyList{int}, GenerationOptions?, CancellationToken)"/> does.
    /// A servers' adapter (<see cref="GenerationOptions.Adapter"/>) combines with trained prompts and is refused with trained LoRA.
    /// </summary>
    /// <param name="promptIds">The prompt, at least one token.</param>
    /// <param name="options">Generation options.</param>
    /// <param name="cancellationToken">Stops the generation.</param>
    /// <returns>The generated ids; a stop token ends the stream (and is yielded).</returns>
    /// <exception cref="ArgumentException">The prompt is empty, the prefix, prompt and new tokens exceed the context, or the adaptation does not fit.</exception>
    public IAsyncEnumerable<int> GenerateAsync(IReadOnlyList<int> promptIds, GenerationOptions? options = null, CancellationToken cancellationToken = default) =>
        _lm.GenerateAsync(promptIds, options, Prefix, Model.CreateAdaptation(1), cancellationToken);

    /// <summary>Teacher-forced NLL of <paramref name="tokenIds"/> after the trained prefix: every token after the first is predicted.</summary>
    /// <param name="tokenIds">The sequence, at least two tokens (typically BOS and the text).</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>The mean NLL in nats per predicted token.</returns>
    /// <exception cref="ArgumentException">Fewer than two tokens, or the prefix and sequence exceed the context.</exception>
    public Task<NegativeLogLikelihood> ComputeNegativeLogLikelihoodAsync(IReadOnlyList<int> tokenIds, CancellationToken cancellationToken = default) =>
        _lm.ComputeNegativeLogLikelihoodAsync(tokenIds, Prefix, Model.CreateAdaptation(1), cancellationToken);

    /// <summary>The trained prefix embeddings <c>[PrefixLength, hidden]</c>, empty without prompt tuning.</summary>
    private ReadOnlyMemory<float> Prefix => Model.Prompts is { } prompts ? prompts.Values : default;
}
