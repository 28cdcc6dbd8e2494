using Petals.Models;
using Petals.Tensors;

namespace Petals.Protocol;

/// <summary>What a server offers: protocol version, model, span of blocks, compute dtype, codecs, free cache and limits.</summary>
/// <param name="VersionMajor">The server's protocol major version.</param>
/// <param name="VersionMinor">The server's protocol minor version.</param>
/// <param name="ModelId">The model the server serves.</param>
/// <param name="Blocks">The span of blocks the server holds.</param>
/// <param name="HiddenSize">The model's hidden size (the last dimension of every hidden-state tensor).</param>
/// <param name="ComputeDType">The dtype the server computes in.</param>
/// <param name="Codecs">The wire codecs the server accepts and can reply with.</param>
/// <param name="CacheTokensLeft">Attention cache tokens still free on the server.</param>
/// <param name="MaxFrameSize">The largest frame payload the server accepts.</param>
/// <param name="MaxMessageSize">The largest (reassembled) message the server accepts.</param>
/// <param name="MaxBatchSize">The largest batch a request may carry.</param>
/// <param name="MaxSessionLength">The most tokens one inference session may hold.</param>
public sealed record InfoResponse(
    ushort VersionMajor,
    ushort VersionMinor,
    string ModelId,
    BlockRange Blocks,
    int HiddenSize,
    TensorDType ComputeDType,
    WireCodecs Codecs,
    ulong CacheTokensLeft,
    int MaxFrameSize,
    int MaxMessageSize,
    int MaxBatchSize,
    int MaxSessionLength) : ProtocolMessage
{
    /// <inheritdoc />
    public override FrameType Type => FrameType.InfoResponse;

    /// <summary>
    /// The relative L2 error per row the server states for its outputs against an exact computation
    /// (<see cref="Execution.NumericErrorBound"/>; 1e-4 for fp32, larger for quantized executors), which clients that
    /// verify outputs use as the tolerance; null when not stated. Sent (as an f32 after the other fields) only on
    /// connections that negotiated protocol 1.1 or later, and read when present.
    /// </summary>
    public float? StatedError { get; init; }

    /// <summary>
    /// How the server holds its weights (<see cref="Discovery.ServerInfo.Quantization"/>: <c>"none"</c>, <c>"int8"</c>,
    /// <c>"nf4"</c>, <c>"q4_k+q6_k"</c>, …), which a client that requires one checks; null when not stated. Sent (as a
    /// string after <see cref="StatedError"/>, which must then be present) only on connections that negotiated protocol
    /// 1.2 or later, and read when present; 1 to <see cref="Discovery.AnnouncementLimits.MaxQuantizationBytes"/> characters
    /// of a-z, 0-9, '_' and '+'.
    /// </summary>
    public string? Quantization { get; init; }

    /// <summary>The most adapter names an info response carries.</summary>
    public const int MaxAdapters = 256;

    /// <summary>
    /// The names of the adapters the server holds for its blocks (<c>petals serve --adapters</c>), which clients that name
    /// an adapter route by; null when not stated. Sent (as a u16 count and that many strings after
    /// <see cref="Quantization"/>, which must then be present) only on connections that negotiated protocol 1.3 or
    /// later, and read when present; at most <see cref="MaxAdapters"/> non-empty names.
    /// </summary>
    public IReadOnlyList<string>? Adapters { get; init; }

    /// <inheritdoc />
    public bool Equals(InfoResponse? other) =>
        other is not null
        && VersionMajor == other.VersionMajor && VersionMinor == other.VersionMinor && ModelId == other.ModelId && Blocks == other.Blocks
        && HiddenSize == other.HiddenSize && ComputeDType == other.ComputeDType && Codecs == other.Codecs && CacheTokensLeft == other.CacheTokensLeft
        && MaxFrameSize == other.MaxFrameSize && MaxMessageSize == other.MaxMessageSize && MaxBatchSize == other.MaxBatchSize
        && MaxSessionLength == other.MaxSessionLength && Nullable.Equals(StatedError, other.StatedError) && Quantization == other.Quantization
        && (Adapters is null ? other.Adapters is null : other.Adapters is not null && Adapters.SequenceEqual(other.Adapters, StringComparer.Ordinal));

    /// <inheritdoc />
    public override int GetHashCode() => HashCode.Combine(ModelId, Blocks, HiddenSize, CacheTokensLeft);

    internal override int GetPayloadSize(ProtocolLimits limits)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(MaxFrameSize);
        ArgumentOutOfRangeException.ThrowIfNegative(MaxMessageSize);
        ArgumentOutOfRangeException.ThrowIfNegative(MaxBatchSize);
        ArgumentOutOfRangeException.ThrowIfNegative(MaxSessionLength);
        ArgumentOutOfRangeException.ThrowIfNegative(HiddenSize);
        if (StatedError is { } error && !(error >= 0 && error <= 1))
        {
            throw new InvalidOperationException(string.Create(System.Globalization.CultureInfo.InvariantCulture, $"StatedError is {error}; a stated error bound must be in [0, 1]."));
        }

        if (Quantization is not null)
        {
            if (StatedError is null)
            {
                throw new InvalidOperationException("Quantization is sent after StatedError (protocol 1.2); set StatedError too.");
            }

            if (!Discovery.AnnouncementLimits.IsValidQuantization(Quantization, out var fault))
            {
                throw new InvalidOperationException("Quantization: " + fault);
            }
        }

        var adapters = 0;
        if (Adapters is not null)
        {
            if (Quantization is null)
            {
                throw new InvalidOperationException("Adapters are sent after Quantization (protocol 1.3); set Quantization too.");
            }

            if (Adapters.Count > MaxAdapters)
            {
                throw new InvalidOperationException(string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{Adapters.Count} adapters exceed the limit of {MaxAdapters}."));
            }

            adapters = 2;
            foreach (var name in Adapters)
            {
                if (string.IsNullOrEmpty(name))
                {
                    throw new InvalidOperationException("An adapter name is empty.");
                }

                adapters += WireWriter.StringSize(name, "adapters", limits.MaxStringBytes);
            }
        }

        return 2 + 2 + WireWriter.StringSize(ModelId, "modelId", limits.MaxStringBytes) + 8 + 4 + 1 + 1 + 8 + 16 + (StatedError.HasValue ? 4 : 0)
            + (Quantization is null ? 0 : WireWriter.StringSize(Quantization, "quantization", limits.MaxStringBytes)) + adapters;
    }

    internal override void WritePayload(ref WireWriter writer)
    {
        writer.U16(VersionMajor);
        writer.U16(VersionMinor);
        writer.String(ModelId);
        writer.Blocks(Blocks);
        writer.U32((uint)HiddenSize);
        writer.U8((byte)ComputeDType);
        writer.U8((byte)Codecs);
        writer.U64(CacheTokensLeft);
        writer.U32((uint)MaxFrameSize);
        writer.U32((uint)MaxMessageSize);
        writer.U32((uint)MaxBatchSize);
        writer.U32((uint)MaxSessionLength);
        if (StatedError is { } error)
        {
            writer.U32(BitConverter.SingleToUInt32Bits(error));
        }

        if (Quantization is not null)
        {
            writer.String(Quantization);
        }

        if (Adapters is not null)
        {
            writer.U16((ushort)Adapters.Count);
            foreach (var name in Adapters)
            {
                writer.String(name);
            }
        }
    }
}
