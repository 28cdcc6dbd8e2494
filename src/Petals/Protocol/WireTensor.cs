namespace Petals.Protocol;

/// <summary>
/// A floating-point tensor in a message: a shape, a wire codec, and either the caller's fp32 values (when sending) or
/// the received wire bytes (when decoded), so that neither side copies more than once.
/// </summary>
/// <remarks>
/// A received tensor's <see cref="Encoded"/> bytes point into the <see cref="ProtocolReader"/>'s buffer and are valid
/// until its next read; decode them with <see cref="CopyTo"/> straight into the executor's input buffer.
/// Equality compares shape, codec and wire bytes (it encodes values to compare them: for tests, not hot paths).
/// </remarks>
public readonly struct WireTensor : IEquatable<WireTensor>
{
    private WireTensor(TensorShape shape, WireCodec codec, ReadOnlyMemory<float> values, ReadOnlyMemory<byte> encoded, bool isEncoded)
    {
        Shape = shape;
        Codec = codec;
        Values = values;
        Encoded = encoded;
        IsEncoded = isEncoded;
    }

    /// <summary>The largest element payload a tensor may have (any message limit is smaller).</summary>
    public const int MaxPayloadBytes = int.MaxValue - 1024;

    /// <summary>The shape.</summary>
    public TensorShape Shape { get; }

    /// <summary>The wire form of the elements.</summary>
    public WireCodec Codec { get; }

    /// <summary>The fp32 values of a tensor built for sending (empty for a received one).</summary>
    public ReadOnlyMemory<float> Values { get; }

    /// <summary>The wire bytes of a received tensor (empty for one built for sending).</summary>
    public ReadOnlyMemory<byte> Encoded { get; }

    /// <summary>Whether the tensor holds wire bytes (received) rather than fp32 values.</summary>
    public bool IsEncoded { get; }

    /// <summary>The size of the element payload on the wire.</summary>
    public int PayloadBytes => (int)HiddenStateCodec.PayloadBytes(Codec, Shape.ElementCount);

    /// <summary>The size of the whole tensor on the wire: codec, rank, dimensions and payload.</summary>
    public int EncodedSize => 2 + (4 * Shape.Rank) + PayloadBytes;

    /// <summary>Wraps fp32 values for sending; they are encoded straight into the frame when written.</summary>
    /// <param name="shape">The shape.</param>
    /// <param name="values">Exactly <c>shape.ElementCount</c> values; not copied, so keep them unchanged until written.</param>
    /// <param name="codec">The wire form.</param>
    /// <returns>The tensor.</returns>
    /// <exception cref="ArgumentException">When the count of values does not match the shape, the shape is default, the payload exceeds <see cref="MaxPayloadBytes"/>, or the codec is unknown.</exception>
    public static WireTensor FromValues(TensorShape shape, ReadOnlyMemory<float> values, WireCodec codec = WireCodec.Fp32)
    {
        if (shape.Rank == 0)
        {
            throw new ArgumentException("The shape is empty.", nameof(shape));
        }

        if (HiddenStateCodec.PayloadBytes(codec, shape.ElementCount) > MaxPayloadBytes)
        {
            throw new ArgumentException($"Shape {shape} in {codec} takes more than {MaxPayloadBytes} bytes, more than any message can hold.", nameof(shape));
        }

        if (values.Length != shape.ElementCount)
        {
            throw new ArgumentException($"Shape {shape} holds {shape.ElementCount} elements but {values.Length} values were given.", nameof(values));
        }

        return new WireTensor(shape, codec, values, default, isEncoded: false);
    }

    /// <summary>Wraps wire bytes (as received).</summary>
    /// <param name="shape">The shape.</param>
    /// <param name="codec">The wire form.</param>
    /// <param name="encoded">Exactly <c>HiddenStateCodec.PayloadBytes(codec, shape.ElementCount)</c> little-endian bytes.</param>
    /// <returns>The tensor.</returns>
    /// <exception cref="ArgumentException">When the byte count does not match the shape and codec.</exception>
    public static WireTensor FromEncoded(TensorShape shape, WireCodec codec, ReadOnlyMemory<byte> encoded)
    {
        if (shape.Rank == 0)
        {
            throw new ArgumentException("The shape is empty.", nameof(shape));
        }

        var bytes = HiddenStateCodec.PayloadBytes(codec, shape.ElementCount);
        if (encoded.Length != bytes)
        {
            throw new ArgumentException($"Shape {shape} in {codec} takes {bytes} bytes but {encoded.Length} were given.", nameof(encoded));
        }

        return new WireTensor(shape, codec, default, encoded, isEncoded: true);
    }

    /// <summary>Whether two tensors are equal.</summary>
    /// <param name="left">The first tensor.</param>
    /// <param name="right">The second tensor.</param>
    /// <returns><see langword="true"/> when shape, codec and wire bytes are equal.</returns>
    public static bool operator ==(WireTensor left, WireTensor right) => left.Equals(right);

    /// <summary>Whether two tensors differ.</summary>
    /// <param name="left">The first tensor.</param>
    /// <param name="right">The second tensor.</param>
    /// <returns><see langword="true"/> when shape, codec or wire bytes differ.</returns>
    public static bool operator !=(WireTensor left, WireTensor right) => !left.Equals(right);

    /// <summary>Decodes (or copies) the elements into <paramref name="destination"/>.</summary>
    /// <param name="destination">At least <c>Shape.ElementCount</c> floats; the first that many are written.</param>
    /// <exception cref="ArgumentException">When <paramref name="destination"/> is too small.</exception>
    public void CopyTo(Span<float> destination)
    {
        if (destination.Length < Shape.ElementCount)
        {
            throw new ArgumentException($"The destination holds {destination.Length} floats, the tensor {Shape.ElementCount}.", nameof(destination));
        }

        if (IsEncoded)
        {
            HiddenStateCodec.Decode(Encoded.Span, Codec, destination[..Shape.ElementCount]);
        }
        else
        {
            Values.Span.CopyTo(destination);
        }
    }

    /// <summary>Decodes the elements into a new array (convenience; allocates).</summary>
    /// <returns>The fp32 elements.</returns>
    public float[] ToArray()
    {
        var result = new float[Shape.ElementCount];
        CopyTo(result);
        return result;
    }

    /// <summary>Writes the element payload (not the tensor header) in wire form.</summary>
    /// <param name="destination">At least <see cref="PayloadBytes"/> bytes.</param>
    public void WritePayload(Span<byte> destination)
    {
        if (IsEncoded)
        {
            Encoded.Span.CopyTo(destination);
        }
        else
        {
            HiddenStateCodec.Encode(Values.Span, Codec, destination);
        }
    }

    /// <inheritdoc />
    public bool Equals(WireTensor other)
    {
        if (Shape != other.Shape || Codec != other.Codec)
        {
            return false;
        }

        if (Shape.Rank == 0)
        {
            return true;
        }

        return PayloadOf(this).AsSpan().SequenceEqual(PayloadOf(other));

        static byte[] PayloadOf(WireTensor tensor)
        {
            var bytes = new byte[tensor.PayloadBytes];
            tensor.WritePayload(bytes);
            return bytes;
        }
    }

    /// <inheritdoc />
    public override bool Equals(object? obj) => obj is WireTensor other && Equals(other);

    /// <inheritdoc />
    public override int GetHashCode() => HashCode.Combine(Shape, Codec);

    /// <inheritdoc />
    public override string ToString() => $"{Codec}{Shape}";
}
