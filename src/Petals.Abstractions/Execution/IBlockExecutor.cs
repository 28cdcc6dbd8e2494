using Petals.Models;

namespace Petals.Execution;

/// <summary>
/// Runs a contiguous span of decoder blocks. An executor owns the weights of its span only.
/// </summary>
/// <remarks>
/// Hidden states are fp32, row-major <c>[batch, tokens, hidden]</c> and are transformed in place.
/// Different caches may be used from different threads concurrently; one cache is used by one thread at a time.
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
    /// <returns>A cache to pass to <see cref="Forward"/>; dispose it to free its memory.</returns>
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

    /// <summary>Returns an object of the requested type that this executor provides (e.g. its options), or <see langword="null"/>.</summary>
    /// <param name="serviceType">The type of object requested.</param>
    /// <param name="serviceKey">An optional key.</param>
    /// <returns>The object, or <see langword="null"/>.</returns>
    object? GetService(Type serviceType, object? serviceKey = null);
}
