using System.Globalization;
using Petals.Models;

namespace Petals.Execution;

/// <summary>
/// Low-rank adapters (LoRA) for a range of blocks: for each block and each of <see cref="Targets"/>, a down-projection
/// <c>A [Rank, in]</c> and an up-projection <c>B [out, Rank]</c>; the adapted layer computes
/// <c>y = x Wᵀ + Scale · (x Aᵀ) Bᵀ</c>. The same type holds the gradients of adapters (same layout).
/// </summary>
/// <remarks>
/// <para>
/// Values are fp32 in one buffer, block-major: for block <c>Blocks.Start + i</c>, for each target in <see cref="Targets"/>
/// order, <c>A</c> (row-major) then <c>B</c> (row-major). The values of one block are contiguous, so <see cref="Slice"/>
/// of a sub-range is a view without a copy.
/// </para>
/// <para>Not thread-safe for writing; executors only read adapters (and write gradients into a separate instance).</para>
/// </remarks>
public sealed class LoraWeights
{
    private readonly int[] _offsets; // per target (in Targets order): offset of A within a block; B follows A.

    /// <summary>Creates adapters over <paramref name="values"/> (or zeros when it is empty).</summary>
    /// <param name="config">The model.</param>
    /// <param name="blocks">The blocks the adapters are for.</param>
    /// <param name="rank">The rank r, at least 1.</param>
    /// <param name="scale">The scale of the adapters' output (PEFT: <c>lora_alpha / r</c>, or <c>lora_alpha / √r</c> with rsLoRA).</param>
    /// <param name="targets">The adapted layers, distinct, in any order (kept as given).</param>
    /// <param name="values">The values in the layout above, or empty for a new zero buffer.</param>
    /// <exception cref="ArgumentException">No targets, a repeated target, a non-finite scale, or <paramref name="values"/> of the wrong length.</exception>
    public LoraWeights(ModelConfig config, BlockRange blocks, int rank, float scale, IReadOnlyList<LoraTarget> targets, Memory<float> values = default)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(targets);
        ArgumentOutOfRangeException.ThrowIfLessThan(rank, 1);
        if (blocks.Count <= 0)
        {
            throw new ArgumentOutOfRangeException(nameof(blocks), blocks, "LoRA adapters need at least one block.");
        }

        if (!float.IsFinite(scale))
        {
            throw new ArgumentException(string.Create(CultureInfo.InvariantCulture, $"The LoRA scale {scale} is not finite."), nameof(scale));
        }

        if (targets.Count == 0 || targets.Distinct().Count() != targets.Count)
        {
            throw new ArgumentException($"LoRA targets must be distinct and at least one; got [{string.Join(", ", targets)}].", nameof(targets));
        }

        Config = config;
        Blocks = blocks;
        Rank = rank;
        Scale = scale;
        Targets = [.. targets];
        _offsets = new int[targets.Count];
        long perBlock = 0;
        for (var i = 0; i < targets.Count; i++)
        {
            _offsets[i] = checked((int)perBlock);
            perBlock += (long)rank * (LoraTargets.InFeatures(config, targets[i]) + LoraTargets.OutFeatures(config, targets[i]));
        }

        ValuesPerBlock = checked((int)perBlock);
        var total = checked((long)ValuesPerBlock * blocks.Count);
        if (values.IsEmpty)
        {
            values = new float[checked((int)total)];
        }
        else if (values.Length != total)
        {
            throw new ArgumentException(
                string.Create(CultureInfo.InvariantCulture, $"LoRA values hold {values.Length} floats; rank {rank} over {Targets.Count} targets and {blocks.Count} blocks needs {total}."),
                nameof(values));
        }

        Values = values;
    }

    /// <summary>The model.</summary>
    public ModelConfig Config { get; }

    /// <summary>The blocks these adapters are for.</summary>
    public BlockRange Blocks { get; }

    /// <summary>The rank r.</summary>
    public int Rank { get; }

    /// <summary>The scale of the adapters' output.</summary>
    public float Scale { get; }

    /// <summary>The adapted layers, in layout order.</summary>
    public IReadOnlyList<LoraTarget> Targets { get; }

    /// <summary>Floats per block.</summary>
    public int ValuesPerBlock { get; }

    /// <summary>All values, in the layout of the remarks.</summary>
    public Memory<float> Values { get; }

    /// <summary>Whether <paramref name="target"/> is adapted.</summary>
    /// <param name="target">The layer.</param>
    /// <returns>True when it is one of <see cref="Targets"/>.</returns>
    public bool Has(LoraTarget target) => IndexOf(target) >= 0;

    /// <summary>The down-projection <c>A [Rank, in]</c> of <paramref name="target"/> in <paramref name="block"/>.</summary>
    /// <param name="block">A block of <see cref="Blocks"/> (model numbering).</param>
    /// <param name="target">One of <see cref="Targets"/>.</param>
    /// <returns>A view of its values.</returns>
    /// <exception cref="ArgumentOutOfRangeException">The block is not in <see cref="Blocks"/>.</exception>
    /// <exception cref="ArgumentException">The target is not adapted.</exception>
    public Memory<float> A(int block, LoraTarget target)
    {
        var (offset, index) = Locate(block, target);
        return Values.Slice(offset, Rank * LoraTargets.InFeatures(Config, Targets[index]));
    }

    /// <summary>The up-projection <c>B [out, Rank]</c> of <paramref name="target"/> in <paramref name="block"/>.</summary>
    /// <param name="block">A block of <see cref="Blocks"/> (model numbering).</param>
    /// <param name="target">One of <see cref="Targets"/>.</param>
    /// <returns>A view of its values.</returns>
    /// <exception cref="ArgumentOutOfRangeException">The block is not in <see cref="Blocks"/>.</exception>
    /// <exception cref="ArgumentException">The target is not adapted.</exception>
    public Memory<float> B(int block, LoraTarget target)
    {
        var (offset, index) = Locate(block, target);
        var t = Targets[index];
        return Values.Slice(offset + (Rank * LoraTargets.InFeatures(Config, t)), Rank * LoraTargets.OutFeatures(Config, t));
    }

    /// <summary>The adapters of the sub-range <paramref name="blocks"/>, sharing these values.</summary>
    /// <param name="blocks">A non-empty range within <see cref="Blocks"/>.</param>
    /// <returns>A view; writes through it change these adapters.</returns>
    /// <exception cref="ArgumentOutOfRangeException">The range is empty or not within <see cref="Blocks"/>.</exception>
    public LoraWeights Slice(BlockRange blocks)
    {
        if (blocks.Count <= 0 || blocks.Start < Blocks.Start || blocks.End > Blocks.End)
        {
            throw new ArgumentOutOfRangeException(nameof(blocks), blocks, $"Blocks {blocks} are not a non-empty range within the adapters' blocks {Blocks}.");
        }

        return blocks == Blocks
            ? this
            : new LoraWeights(Config, blocks, Rank, Scale, Targets, Values.Slice((blocks.Start - Blocks.Start) * ValuesPerBlock, blocks.Count * ValuesPerBlock));
    }

    /// <summary>New zero adapters with the same blocks, rank, scale and targets (e.g. for gradients).</summary>
    /// <returns>The new adapters.</returns>
    public LoraWeights CreateZeros() => new(Config, Blocks, Rank, Scale, Targets);

    /// <summary>Whether <paramref name="other"/> has the same blocks, rank, scale, targets and model shape (and so the same layout).</summary>
    /// <param name="other">The other adapters.</param>
    /// <returns>True when the layouts match.</returns>
    public bool HasLayoutOf(LoraWeights other)
    {
        ArgumentNullException.ThrowIfNull(other);
        return other.Blocks == Blocks && other.Rank == Rank && other.Scale.Equals(Scale) && other.Targets.SequenceEqual(Targets)
            && other.Config.HiddenSize == Config.HiddenSize && other.Config.IntermediateSize == Config.IntermediateSize
            && other.Config.NumHeads == Config.NumHeads && other.Config.NumKeyValueHeads == Config.NumKeyValueHeads && other.Config.HeadDim == Config.HeadDim;
    }

    /// <inheritdoc />
    public override string ToString() =>
        string.Create(CultureInfo.InvariantCulture, $"LoRA r={Rank} scale={Scale} on [{string.Join(", ", Targets.Select(LoraTargets.ModuleName))}] for blocks {Blocks}");

    private int IndexOf(LoraTarget target)
    {
        for (var i = 0; i < Targets.Count; i++)
        {
            if (Targets[i] == target)
            {
                return i;
            }
        }

        return -1;
    }

    private (int Offset, int Index) Locate(int block, LoraTarget target)
    {
        if (!Blocks.Contains(block))
        {
            throw new ArgumentOutOfRangeException(nameof(block), block, $"Block {block} is not in the adapters' blocks {Blocks}.");
        }

        var index = IndexOf(target);
        if (index < 0)
        {
            throw new ArgumentException($"{LoraTargets.ModuleName(target)} is not adapted ({this}).", nameof(target));
        }

        return (((block - Blocks.Start) * ValuesPerBlock) + _offsets[index], index);
    }
}
