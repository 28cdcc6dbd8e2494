using System.Globalization;
using Petals.Models;

namespace Petals.Execution;

/// <summary>
/// What a pass adds to the frozen blocks: deep prompts, low-rank adapters the caller owns, or the name of an adapter
/// the servers hold. The fine-tuning parameters of a client; servers keep none of them between calls.
/// </summary>
/// <remarks>
/// <para>
/// <b>Deep prompts</b> (<see cref="Prompts"/>, <c>[blocks, batch, PromptLength, hidden]</c>, block-major): before each block
/// runs, prompt <c>p</c> of that block is added to the hidden state of position <c>p</c> for <c>p &lt; PromptLength</c> (as
/// Petals' <c>deep_ptune</c> does). In a stateless pass the positions are <c>0..tokens-1</c>, so the pass must have at
/// least <see cref="PromptLength"/> tokens; in a session step they are <c>start..start+tokens-1</c> and only the
/// positions below <see cref="PromptLength"/> get a prompt.
/// </para>
/// <para>
/// <b>Adapters</b>: <see cref="Lora"/> are adapters the caller sends with the call; <see cref="Adapter"/> names an
/// adapter loaded by the servers (<c>petals serve --adapters</c>). An executor takes only <see cref="Lora"/>: whoever
/// holds named adapters (a block server, <c>LocalTransformerBlocks</c>) resolves the name into <see cref="Lora"/>
/// first. A call may not use both.
/// </para>
/// <para>The same object is used for a whole model (prompts and adapters of every block) and for a span (<see cref="ForBlocks"/>).</para>
/// </remarks>
public sealed record BlockAdaptation
{
    /// <summary>An empty adaptation: the frozen model.</summary>
    public static BlockAdaptation None { get; } = new();

    /// <summary>The name of an adapter held by the servers, or <see langword="null"/>.</summary>
    public string? Adapter { get; init; }

    /// <summary>Deep prompts <c>[blocks, batch, PromptLength, hidden]</c>, or empty.</summary>
    public ReadOnlyMemory<float> Prompts { get; init; }

    /// <summary>Prompt positions per sequence; 0 without prompts.</summary>
    public int PromptLength { get; init; }

    /// <summary>Low-rank adapters sent with the call, for the same blocks as the call, or <see langword="null"/>.</summary>
    public LoraWeights? Lora { get; init; }

    /// <summary>Whether the adaptation changes nothing.</summary>
    public bool IsEmpty => Adapter is null && PromptLength == 0 && Lora is null;

    /// <summary>Whether deep prompts are given.</summary>
    public bool HasPrompts => PromptLength > 0;

    /// <summary>
    /// Checks the adaptation for a pass over <paramref name="blocks"/> of <paramref name="batchSize"/> sequences: the prompts'
    /// size and finiteness, the adapters' blocks and model, and that a named adapter and sent adapters are not both given.
    /// </summary>
    /// <param name="config">The model.</param>
    /// <param name="blocks">The blocks of the pass.</param>
    /// <param name="batchSize">The sequences of the pass.</param>
    /// <param name="tokenCount">The positions of a stateless pass (the prompts must fit in them), or null for a session step.</param>
    /// <exception cref="ArgumentException">Something does not match; the message says what.</exception>
    public void Validate(ModelConfig config, BlockRange blocks, int batchSize, int? tokenCount)
    {
        ArgumentNullException.ThrowIfNull(config);
        if (Adapter is not null && Lora is not null)
        {
            throw new ArgumentException($"A call uses either the servers' adapter '{Adapter}' or its own LoRA weights, not both.");
        }

        if (PromptLength < 0)
        {
            throw new ArgumentException(string.Create(CultureInfo.InvariantCulture, $"PromptLength is {PromptLength}; it must be 0 or more."));
        }

        var expected = (long)blocks.Count * batchSize * PromptLength * config.HiddenSize;
        if (Prompts.Length != expected)
        {
            throw new ArgumentException(
                string.Create(CultureInfo.InvariantCulture, $"Deep prompts hold {Prompts.Length} values; [blocks {blocks.Count}, batch {batchSize}, prompt length {PromptLength}, hidden {config.HiddenSize}] needs {expected}."));
        }

        if (tokenCount is { } tokens && PromptLength > tokens)
        {
            throw new ArgumentException(
                string.Create(CultureInfo.InvariantCulture, $"The deep prompts cover {PromptLength} positions but the pass has only {tokens} tokens per sequence."));
        }

        var span = Prompts.Span;
        for (var i = 0; i < span.Length; i++)
        {
            if (!float.IsFinite(span[i]))
            {
                throw new ArgumentException(string.Create(CultureInfo.InvariantCulture, $"Deep prompts hold {span[i]} at index {i}; prompts must be finite."));
            }
        }

        if (Lora is { } lora)
        {
            if (lora.Blocks != blocks)
            {
                throw new ArgumentException($"The LoRA weights are for blocks {lora.Blocks}; the pass runs blocks {blocks}.");
            }

            if (lora.Config.HiddenSize != config.HiddenSize || lora.Config.IntermediateSize != config.IntermediateSize
                || lora.Config.NumHeads != config.NumHeads || lora.Config.NumKeyValueHeads != config.NumKeyValueHeads || lora.Config.HeadDim != config.HeadDim)
            {
                throw new ArgumentException("The LoRA weights are shaped for another model.");
            }

            var values = lora.Values.Span;
            for (var i = 0; i < values.Length; i++)
            {
                if (!float.IsFinite(values[i]))
                {
                    throw new ArgumentException(string.Create(CultureInfo.InvariantCulture, $"The LoRA weights hold {values[i]} at index {i}; they must be finite."));
                }
            }
        }
    }

    /// <summary>
    /// The adaptation of the sub-range <paramref name="sub"/> of a pass over <paramref name="all"/>: the prompts of those
    /// blocks (a view) and the adapters of those blocks (a view); the adapter name is kept.
    /// </summary>
    /// <param name="all">The blocks this adaptation covers.</param>
    /// <param name="sub">A non-empty range within <paramref name="all"/>.</param>
    /// <returns>The adaptation of <paramref name="sub"/> (this object when the ranges are equal).</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="sub"/> is empty or not within <paramref name="all"/>.</exception>
    public BlockAdaptation ForBlocks(BlockRange all, BlockRange sub)
    {
        if (sub.Count <= 0 || sub.Start < all.Start || sub.End > all.End)
        {
            throw new ArgumentOutOfRangeException(nameof(sub), sub, $"Blocks {sub} are not a non-empty range within {all}.");
        }

        if (sub == all)
        {
            return this;
        }

        var perBlock = all.Count == 0 ? 0 : Prompts.Length / all.Count;
        return this with
        {
            Prompts = Prompts.IsEmpty ? Prompts : Prompts.Slice((sub.Start - all.Start) * perBlock, sub.Count * perBlock),
            Lora = Lora?.Slice(sub),
        };
    }
}

/// <summary>
/// Where a backward pass writes the gradients of a <see cref="BlockAdaptation"/>'s trainable values: the deep prompts'
/// (same shape as <see cref="BlockAdaptation.Prompts"/>) and the sent adapters' (same layout as <see cref="BlockAdaptation.Lora"/>).
/// Values are overwritten, not accumulated.
/// </summary>
public sealed record BlockGradients
{
    /// <summary>The gradient of the loss with respect to the deep prompts, or empty when not wanted.</summary>
    public Memory<float> Prompts { get; init; }

    /// <summary>The gradient of the loss with respect to the sent adapters, or <see langword="null"/> when not wanted.</summary>
    public LoraWeights? Lora { get; init; }

    /// <summary>The gradients of the sub-range <paramref name="sub"/> of a pass over <paramref name="all"/> (views).</summary>
    /// <param name="all">The blocks these gradients cover.</param>
    /// <param name="sub">A non-empty range within <paramref name="all"/>.</param>
    /// <returns>The gradients of <paramref name="sub"/> (this object when the ranges are equal).</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="sub"/> is empty or not within <paramref name="all"/>.</exception>
    public BlockGradients ForBlocks(BlockRange all, BlockRange sub)
    {
        if (sub.Count <= 0 || sub.Start < all.Start || sub.End > all.End)
        {
            throw new ArgumentOutOfRangeException(nameof(sub), sub, $"Blocks {sub} are not a non-empty range within {all}.");
        }

        if (sub == all)
        {
            return this;
        }

        var perBlock = Prompts.Length / all.Count;
        return this with
        {
            Prompts = Prompts.IsEmpty ? Prompts : Prompts.Slice((sub.Start - all.Start) * perBlock, sub.Count * perBlock),
            Lora = Lora?.Slice(sub),
        };
    }

    /// <summary>
    /// Checks that these gradients fit <paramref name="adaptation"/>: prompt gradients only with prompts and of their size,
    /// adapter gradients only with sent adapters and of their layout.
    /// </summary>
    /// <param name="adaptation">The adaptation of the pass.</param>
    /// <exception cref="ArgumentException">They do not fit; the message says how.</exception>
    public void Validate(BlockAdaptation? adaptation)
    {
        var promptLength = adaptation?.Prompts.Length ?? 0;
        if (!Prompts.IsEmpty && Prompts.Length != promptLength)
        {
            throw new ArgumentException(
                string.Create(CultureInfo.InvariantCulture, $"The prompt gradient holds {Prompts.Length} values; the pass's deep prompts hold {promptLength}."));
        }

        if (Lora is { } lora && (adaptation?.Lora is not { } sent || !sent.HasLayoutOf(lora)))
        {
            throw new ArgumentException($"The LoRA gradient ({lora}) does not match the LoRA weights sent with the pass ({adaptation?.Lora?.ToString() ?? "none"}).");
        }
    }
}
