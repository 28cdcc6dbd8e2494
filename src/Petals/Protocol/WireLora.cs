using System.Globalization;
using Petals.Execution;
using Petals.Models;

namespace Petals.Protocol;

/// <summary>
/// LoRA weights on the wire (protocol 1.3, docs/wire-protocol.md section 5.12): rank, scale, the adapted layers in
/// layout order, and all values as one rank-1 tensor in <see cref="LoraWeights"/>' block-major layout. The blocks are
/// the message's own (the call's blocks), and the model's shapes are the receiver's, so neither is repeated.
/// </summary>
/// <param name="Rank">The rank r, 1 to <see cref="MaxRank"/>.</param>
/// <param name="Scale">The scale of the adapters' output; finite.</param>
/// <param name="Targets">The adapted layers in layout order: 1 to 7, distinct.</param>
/// <param name="Values">The values, <c>[count]</c>.</param>
public readonly record struct WireLora(int Rank, float Scale, IReadOnlyList<LoraTarget> Targets, WireTensor Values)
{
    /// <summary>The largest rank accepted on the wire.</summary>
    public const int MaxRank = 4096;

    /// <summary>The size on the wire: rank (u16), scale (f32), target count (u8), one byte per target, the values tensor.</summary>
    internal int EncodedSize => 2 + 4 + 1 + Targets.Count + Values.EncodedSize;

    /// <summary>Wraps <paramref name="weights"/> for sending (values not copied; keep them unchanged until written).</summary>
    /// <param name="weights">The weights, for the blocks of the message they go with.</param>
    /// <param name="codec">The wire form of the values; fp32 by default (small, and gradients need the precision).</param>
    /// <returns>The wire form.</returns>
    public static WireLora From(LoraWeights weights, WireCodec codec = WireCodec.Fp32)
    {
        ArgumentNullException.ThrowIfNull(weights);
        return new WireLora(weights.Rank, weights.Scale, weights.Targets, WireTensor.FromValues(new TensorShape(weights.Values.Length), weights.Values, codec));
    }

    /// <summary>
    /// Decodes the weights for <paramref name="blocks"/> of <paramref name="config"/> into a new buffer, checking that the
    /// values count matches the rank, targets, blocks and model.
    /// </summary>
    /// <param name="config">The receiver's model.</param>
    /// <param name="blocks">The blocks of the message.</param>
    /// <returns>The weights.</returns>
    /// <exception cref="ProtocolException"><see cref="ProtocolErrorCode.BadShape"/> when the count does not match.</exception>
    public LoraWeights ToWeights(ModelConfig config, BlockRange blocks)
    {
        ArgumentNullException.ThrowIfNull(config);
        long perBlock = 0;
        foreach (var target in Targets)
        {
            perBlock += (long)Rank * (LoraTargets.InFeatures(config, target) + LoraTargets.OutFeatures(config, target));
        }

        var expected = perBlock * blocks.Count;
        if (Values.Shape.ElementCount != expected)
        {
            throw new ProtocolException(ProtocolErrorCode.BadShape, string.Create(CultureInfo.InvariantCulture,
                $"the LoRA weights hold {Values.Shape.ElementCount} values; rank {Rank} on [{string.Join(", ", Targets.Select(LoraTargets.ModuleName))}] over blocks {blocks} of this model needs {expected}"));
        }

        return new LoraWeights(config, blocks, Rank, Scale, Targets, Values.ToArray());
    }

    internal void Write(ref WireWriter writer)
    {
        writer.U16((ushort)Rank);
        writer.U32(BitConverter.SingleToUInt32Bits(Scale));
        writer.U8((byte)Targets.Count);
        foreach (var target in Targets)
        {
            writer.U8((byte)target);
        }

        writer.Tensor(Values);
    }

    internal void Check()
    {
        if (Rank is < 1 or > MaxRank)
        {
            throw new ArgumentOutOfRangeException(nameof(Rank), Rank, $"A LoRA rank on the wire is 1 to {MaxRank}.");
        }

        if (!float.IsFinite(Scale))
        {
            throw new ArgumentException(string.Create(CultureInfo.InvariantCulture, $"The LoRA scale {Scale} is not finite."));
        }

        ArgumentNullException.ThrowIfNull(Targets);
        if (Targets.Count is 0 or > 7 || Targets.Distinct().Count() != Targets.Count)
        {
            throw new ArgumentException($"LoRA targets must be 1 to 7 distinct layers; got [{string.Join(", ", Targets)}].");
        }

        if (Values.Shape.Rank != 1)
        {
            throw new ArgumentException($"LoRA values are a rank-1 tensor, not {Values.Shape}.");
        }
    }

    internal static WireLora Read(ref WireReader reader)
    {
        var rank = reader.U16("loraRank");
        if (rank is < 1 or > MaxRank)
        {
            throw reader.Error(ProtocolErrorCode.MalformedFrame, "loraRank", string.Create(CultureInfo.InvariantCulture, $"is {rank}; it must be 1 to {MaxRank}."));
        }

        var scale = BitConverter.UInt32BitsToSingle(reader.U32("loraScale"));
        if (!float.IsFinite(scale))
        {
            throw reader.Error(ProtocolErrorCode.NonFiniteInput, "loraScale", string.Create(CultureInfo.InvariantCulture, $"is {scale}; it must be finite."));
        }

        var count = reader.U8("loraTargets");
        if (count is 0 or > 7)
        {
            throw reader.Error(ProtocolErrorCode.MalformedFrame, "loraTargets", string.Create(CultureInfo.InvariantCulture, $"counts {count} layers; it must be 1 to 7."));
        }

        var targets = new LoraTarget[count];
        var seen = 0;
        for (var i = 0; i < count; i++)
        {
            var code = reader.U8("loraTargets");
            if (code > (byte)LoraTarget.Down)
            {
                throw reader.Error(ProtocolErrorCode.MalformedFrame, "loraTargets", string.Create(CultureInfo.InvariantCulture, $"names layer {code} at index {i}; known layers are 0 (q_proj) to 6 (down_proj)."));
            }

            if ((seen & (1 << code)) != 0)
            {
                throw reader.Error(ProtocolErrorCode.MalformedFrame, "loraTargets", string.Create(CultureInfo.InvariantCulture, $"names layer {code} twice."));
            }

            seen |= 1 << code;
            targets[i] = (LoraTarget)code;
        }

        var values = reader.Tensor("loraValues");
        if (values.Shape.Rank != 1)
        {
            throw reader.Error(ProtocolErrorCode.BadShape, "loraValues", $"has shape {values.Shape}; LoRA values are a rank-1 tensor.");
        }

        return new WireLora(rank, scale, targets, values);
    }

    /// <inheritdoc />
    public bool Equals(WireLora other) =>
        Rank == other.Rank && Scale.Equals(other.Scale) && Values.Equals(other.Values)
        && (Targets ?? []).SequenceEqual(other.Targets ?? []);

    /// <inheritdoc />
    public override int GetHashCode() => HashCode.Combine(Rank, Scale, Values);
}
