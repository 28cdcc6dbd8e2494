using Petals.Models;

namespace Petals.Execution;

/// <summary>
/// Runs a contiguous span of decoder blocks. An executor owns the weights of its span only.
/// </summary>
/// <remarks>
/// Hidden states are fp32, row-major <c>[batch, tokens, hidden]</c> and are transformed in place.
/// Different caches may be used from different threads concurrently; one cache is used by one thread at a time.
/// An executor may also run any non-empty sub-range of its span (<see cref="CreateCache(int, int, BlockRange)"/>,
/// <see cref="Forward(Span{float}, int, int, IKvCache?, BlockRange)"/>): a server then serves a client that needs only
/// part of its blocks (e.g. to replace a failed server). The default implementations accept only the whole span.
/// </remarks>
public interface IBlockExecutor : IDisposable
{
    /// <summary>The configuration of the whole model.</summary>
    ModelConfig Config { get; }

    /// <summary>The blocks this executor runs.</summary>
    BlockRange Blocks { get; }

    /// <summary>Creates an empty attention cache for <paramref name="batchSize"/> sequences of up to <paramref name="maxLength"/> positions.</summary>
    /// <param name="batchSize">The number of sequences, at least 1.</param>
    /// <param name="maxLength">The most positions, at least 1.</param>
    /// <returns>A cache to pass to <see cref="Forward(Span{float}, int, int, IKvCache?)"/>; dispose it to free its memory.</returns>
    IKvCache CreateCache(int batchSize, int maxLength);

    /// <summary>
    /// Runs the span's blocks over <paramref name="hidden"/> in place. Without a cache, the tokens are
    /// positions <c>0..tokenCount-1</c> attending causally to each other only. With a cache, they are
    /// positions <c>cache.Length..cache.Length+tokenCount-1</c>, attend to the cached positions too, and
    /// are appended to the cache (prefill when many, decode when one).
    /// </summary>
    /// <param name="hidden">Hidden states <c>[batchSize, tokenCount, HiddenSize]</c>, overwritten with the outputs.</param>
    /// <param name="batchSize">Number of sequences; must equal the cache's batch size when a cache is given.</param>
    /// <param name="tokenCount">Number of new positions per sequence.</param>
    /// <param name="cache">The session cache, or <see langword="null"/> for a stateless pass.</param>
    /// <exception cref="ArgumentException">When the span length does not match the shape, or the batch size differs from the cache's.</exception>
    /// <exception cref="InvalidOperationException">When the cache would exceed its maximum length.</exception>
    void Forward(Span<float> hidden, int batchSize, int tokenCount, IKvCache? cache);

    /// <summary>
    /// Creates an empty attention cache for the sub-range <paramref name="blocks"/> of <see cref="Blocks"/>: it holds
    /// only those blocks' keys and values and can be used only with
    /// <see cref="Forward(Span{float}, int, int, IKvCache?, BlockRange)"/> on the same range.
    /// </summary>
    /// <param name="batchSize">The number of sequences, at least 1.</param>
    /// <param name="maxLength">The most positions, at least 1.</param>
    /// <param name="blocks">A non-empty range within <see cref="Blocks"/>.</param>
    /// <returns>A cache for that range; dispose it to free its memory.</returns>
    /// <exception cref="ArgumentOutOfRangeException">When <paramref name="blocks"/> is empty or not within <see cref="Blocks"/>.</exception>
    /// <exception cref="NotSupportedException">
    /// When <paramref name="blocks"/> is a proper sub-range and the executor runs only its whole span (the default implementation).
    /// </exception>
    IKvCache CreateCache(int batchSize, int maxLength, BlockRange blocks)
    {
        RequireWholeSpan(Blocks, blocks);
        return CreateCache(batchSize, maxLength);
    }

    /// <summary>
    /// Runs only the blocks <paramref name="blocks"/> (a sub-range of <see cref="Blocks"/>) over <paramref name="hidden"/>
    /// in place, as <see cref="Forward(Span{float}, int, int, IKvCache?)"/> runs the whole span. The outputs equal those
    /// of an executor created for exactly <paramref name="blocks"/>.
    /// </summary>
    /// <param name="hidden">Hidden states <c>[batchSize, tokenCount, HiddenSize]</c>, overwritten with the outputs.</param>
    /// <param name="batchSize">Number of sequences; must equal the cache's batch size when a cache is given.</param>
    /// <param name="tokenCount">Number of new positions per sequence.</param>
    /// <param name="cache">
    /// A cache created by <see cref="CreateCache(int, int, BlockRange)"/> for the same <paramref name="blocks"/>, or
    /// <see langword="null"/> for a stateless pass.
    /// </param>
    /// <param name="blocks">A non-empty range within <see cref="Blocks"/>.</param>
    /// <exception cref="ArgumentOutOfRangeException">When <paramref name="blocks"/> is empty or not within <see cref="Blocks"/>.</exception>
    /// <exception cref="ArgumentException">When the shape is wrong, or the cache was created for another range or executor.</exception>
    /// <exception cref="InvalidOperationException">When the cache would exceed its maximum length.</exception>
    /// <exception cref="NotSupportedException">
    /// When <paramref name="blocks"/> is a proper sub-range and the executor runs only its whole span (the default implementation).
    /// </exception>
    void Forward(Span<float> hidden, int batchSize, int tokenCount, IKvCache? cache, BlockRange blocks)
    {
        RequireWholeSpan(Blocks, blocks);
        Forward(hidden, batchSize, tokenCount, cache);
    }

    /// <summary>
    /// Runs blocks <paramref name="blocks"/> over <paramref name="hidden"/> in place as
    /// <see cref="Forward(Span{float}, int, int, IKvCache?, BlockRange)"/> does, with <paramref name="adaptation"/>'s deep
    /// prompts added at each block's input and its sent adapters applied to the linear layers. The default implementation
    /// accepts only an empty adaptation.
    /// </summary>
    /// <param name="hidden">Hidden states <c>[batchSize, tokenCount, HiddenSize]</c>, overwritten with the outputs.</param>
    /// <param name="batchSize">Number of sequences; must equal the cache's batch size when a cache is given.</param>
    /// <param name="tokenCount">Number of new positions per sequence.</param>
    /// <param name="cache">A cache for the same <paramref name="blocks"/>, or <see langword="null"/> for a stateless pass.</param>
    /// <param name="blocks">A non-empty range within <see cref="Blocks"/>.</param>
    /// <param name="adaptation">Prompts and adapters for exactly <paramref name="blocks"/> (no adapter name), or <see langword="null"/>.</param>
    /// <exception cref="ArgumentException">The shape is wrong, or the adaptation does not fit (<see cref="BlockAdaptation.Validate"/>) or names an adapter.</exception>
    /// <exception cref="NotSupportedException">The executor cannot apply a non-empty adaptation (the default implementation).</exception>
    void Forward(Span<float> hidden, int batchSize, int tokenCount, IKvCache? cache, BlockRange blocks, BlockAdaptation? adaptation)
    {
        if (adaptation is not null && !adaptation.IsEmpty)
        {
            throw new NotSupportedException($"This executor ({GetType().Name}) cannot run deep prompts or LoRA adapters.");
        }

        Forward(hidden, batchSize, tokenCount, cache, blocks);
    }

    /// <summary>
    /// The backward pass of a stateless forward over <paramref name="blocks"/>: given the pass's inputs and the gradient of
    /// the loss with respect to its outputs, writes the gradient with respect to its inputs into
    /// <paramref name="gradients"/> (in place) and, when asked, the gradients of the adaptation's prompts and sent
    /// adapters. Weights are frozen (no weight gradients). The forward is recomputed inside: nothing is kept between calls.
    /// Positions are <c>0..tokenCount-1</c>, causal, as in a stateless <see cref="Forward(Span{float}, int, int, IKvCache?, BlockRange, BlockAdaptation?)"/>.
    /// </summary>
    /// <param name="inputs">The pass's inputs <c>[batchSize, tokenCount, HiddenSize]</c> (the hidden states before the first block).</param>
    /// <param name="gradients">On entry dLoss/dOutputs, on return dLoss/dInputs; <c>[batchSize, tokenCount, HiddenSize]</c>.</param>
    /// <param name="batchSize">Number of sequences, at least 1.</param>
    /// <param name="tokenCount">Positions per sequence, at least 1.</param>
    /// <param name="blocks">A non-empty range within <see cref="Blocks"/>.</param>
    /// <param name="adaptation">The adaptation of the forward pass, or <see langword="null"/>.</param>
    /// <param name="adaptationGradients">Where to write the gradients of the adaptation's prompts and adapters, or <see langword="null"/>.</param>
    /// <exception cref="ArgumentException">A shape is wrong, a gradient is not finite, or the adaptation or its gradients do not fit.</exception>
    /// <exception cref="NotSupportedException">The executor has no backward pass (the default implementation).</exception>
    void Backward(ReadOnlySpan<float> inputs, Span<float> gradients, int batchSize, int tokenCount, BlockRange blocks, BlockAdaptation? adaptation = null, BlockGradients? adaptationGradients = null) =>
        throw new NotSupportedException($"This executor ({GetType().Name}) has no backward pass.");

    /// <summary>Returns an object of the requested type that this executor provides (e.g. its options), or <see langword="null"/>.</summary>
    /// <param name="serviceType">The type of object requested.</param>
    /// <param name="serviceKey">An optional key.</param>
    /// <returns>The object, or <see langword="null"/>.</returns>
    object? GetService(Type serviceType, object? serviceKey = null);

    /// <summary>The check of the default sub-range members: <paramref name="blocks"/> must lie within the span, and be all of it.</summary>
    private static void RequireWholeSpan(BlockRange span, BlockRange blocks)
    {
        if (blocks.Count <= 0 || blocks.Start < span.Start || blocks.End > span.End)
        {
            throw new ArgumentOutOfRangeException(nameof(blocks), blocks, $"Blocks {blocks} are not a non-empty range within this executor's span {span}.");
        }

        if (blocks != span)
        {
            throw new NotSupportedException($"This executor runs only its whole span {span}, not the sub-range {blocks}.");
        }
    }
}
