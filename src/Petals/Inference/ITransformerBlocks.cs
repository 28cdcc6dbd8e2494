using Petals.Execution;
using Petals.Models;

namespace Petals.Inference;

/// <summary>
/// All decoder blocks of a model, wherever they run: in this process (<see cref="LocalTransformerBlocks"/>)
/// or on a chain of remote servers (<c>RemoteTransformerBlocks</c>). Generation and training code talk only to this contract.
/// </summary>
/// <remarks>
/// Thread-safe: several sessions and stateless calls may run at once. The fine-tuning members (an adaptation on a
/// session, <see cref="ForwardAsync(Memory{float}, int, int, BlockAdaptation?, CancellationToken)"/> and
/// <see cref="BackwardAsync"/>) have default implementations that refuse with <see cref="NotSupportedException"/>.
/// </remarks>
public interface ITransformerBlocks
{
    /// <summary>The model configuration.</summary>
    ModelConfig Config { get; }

    /// <summary>Opens an inference session that keeps attention caches for <paramref name="batchSize"/> sequences.</summary>
    /// <param name="batchSize">Number of sequences, at least 1.</param>
    /// <param name="maxLength">The most positions the session will hold, at least 1.</param>
    /// <param name="cancellationToken">Cancels opening.</param>
    /// <returns>The session; dispose it to free the caches.</returns>
    ValueTask<ITransformerSession> OpenSessionAsync(int batchSize, int maxLength, CancellationToken cancellationToken = default);

    /// <summary>
    /// Opens an inference session whose steps run with <paramref name="adaptation"/>: its deep prompts (for every block of
    /// the model, <c>[NumLayers, batchSize, PromptLength, hidden]</c>) are added at the first <c>PromptLength</c> positions,
    /// and its adapter (named or sent) applies to every step.
    /// </summary>
    /// <param name="batchSize">Number of sequences, at least 1.</param>
    /// <param name="maxLength">The most positions the session will hold, at least 1.</param>
    /// <param name="adaptation">The tuned parameters for all blocks, or <see langword="null"/>.</param>
    /// <param name="cancellationToken">Cancels opening.</param>
    /// <returns>The session; dispose it to free the caches.</returns>
    /// <exception cref="ArgumentException">The adaptation does not fit the model and batch.</exception>
    /// <exception cref="NotSupportedException">These blocks cannot run a non-empty adaptation (the default implementation).</exception>
    ValueTask<ITransformerSession> OpenSessionAsync(int batchSize, int maxLength, BlockAdaptation? adaptation, CancellationToken cancellationToken = default)
    {
        if (adaptation is not null && !adaptation.IsEmpty)
        {
            throw new NotSupportedException($"{GetType().Name} cannot run sessions with deep prompts or adapters.");
        }

        return OpenSessionAsync(batchSize, maxLength, cancellationToken);
    }

    /// <summary>
    /// Runs hidden states through every block without a session (positions <c>0..tokenCount-1</c>, causal), with
    /// <paramref name="adaptation"/>, in place, and returns what a later <see cref="BackwardAsync"/> needs: the input of
    /// each part of the model as it ran (a local executor's span, a remote server's segment).
    /// </summary>
    /// <param name="hidden">Hidden states <c>[batchSize, tokenCount, HiddenSize]</c>, overwritten with the last block's outputs.</param>
    /// <param name="batchSize">Number of sequences, at least 1.</param>
    /// <param name="tokenCount">Positions per sequence, at least 1.</param>
    /// <param name="adaptation">The tuned parameters for all blocks, or <see langword="null"/>.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>The saved activations; dispose them (or pass them to <see cref="BackwardAsync"/>, which does not dispose them).</returns>
    /// <exception cref="ArgumentException">A shape is wrong, the input is not finite, or the adaptation does not fit.</exception>
    /// <exception cref="NotSupportedException">These blocks have no stateless training pass (the default implementation).</exception>
    ValueTask<ForwardActivations> ForwardAsync(Memory<float> hidden, int batchSize, int tokenCount, BlockAdaptation? adaptation, CancellationToken cancellationToken = default) =>
        throw new NotSupportedException($"{GetType().Name} has no stateless training forward pass.");

    /// <summary>
    /// The backward pass of a <see cref="ForwardAsync(Memory{float}, int, int, BlockAdaptation?, CancellationToken)"/>:
    /// given dLoss/dOutputs in <paramref name="gradients"/>, writes dLoss/dInputs there (in place) and, when asked, the
    /// gradients of the adaptation's prompts and sent adapters. Parts run backward in reverse order from their saved inputs.
    /// </summary>
    /// <param name="activations">What the forward pass saved.</param>
    /// <param name="gradients">On entry dLoss/dOutputs, on return dLoss/dInputs; <c>[batch, tokens, HiddenSize]</c>.</param>
    /// <param name="adaptationGradients">Where to write the adaptation's gradients (for all blocks), or <see langword="null"/>.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>A task that completes when the gradients are written.</returns>
    /// <exception cref="ArgumentException">A shape is wrong, a gradient is not finite, or the gradients do not fit the adaptation.</exception>
    /// <exception cref="NotSupportedException">These blocks have no backward pass (the default implementation).</exception>
    ValueTask BackwardAsync(ForwardActivations activations, Memory<float> gradients, BlockGradients? adaptationGradients, CancellationToken cancellationToken = default) =>
        throw new NotSupportedException($"{GetType().Name} has no backward pass.");
}
