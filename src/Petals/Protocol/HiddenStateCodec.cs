using System.Buffers.Binary;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using Petals.Numerics;

namespace Petals.Protocol;

/// <summary>Converts fp32 hidden states to and from their wire form (fp32, fp16, bf16 or 8-bit blockwise, little-endian).</summary>
/// <remarks>
/// Encoding to fp16 and bf16 rounds to nearest, ties to even; NaN stays NaN. Decoding is exact.
/// <see cref="WireCodec.Int8Blockwise"/> keeps each element within <c>absmax_block / 254 · (1 + 2^-14) + 2^-140</c>
/// (absmax over the block's finite values) and sends a non-finite element as a marker that decodes to NaN.
/// Vectorized where the hardware allows; allocates nothing. Thread-safe (stateless).
/// </remarks>
public static class HiddenStateCodec
{
    /// <summary>The elements per block of <see cref="WireCodec.Int8Blockwise"/> (each block has one fp32 scale).</summary>
    public const int Int8BlockSize = Int8BlockwiseCodec.BlockSize;

    /// <summary>The bytes one element occupies on the wire, for the codecs with a fixed element size.</summary>
    /// <param name="codec">The codec.</param>
    /// <returns>4 for <see cref="WireCodec.Fp32"/>, 2 for <see cref="WireCodec.Fp16"/> and <see cref="WireCodec.Bf16"/>.</returns>
    /// <exception cref="ArgumentOutOfRangeException">When <paramref name="codec"/> is not defined.</exception>
    /// <exception cref="ArgumentException">For <see cref="WireCodec.Int8Blockwise"/>, whose size depends on the element count: use <see cref="PayloadBytes"/>.</exception>
    public static int ElementSize(WireCodec codec) => codec switch
    {
        WireCodec.Fp32 => 4,
        WireCodec.Fp16 or WireCodec.Bf16 => 2,
        WireCodec.Int8Blockwise => throw new ArgumentException("Int8Blockwise has no fixed element size (1 byte per element plus a 4-byte scale per block); use PayloadBytes.", nameof(codec)),
        _ => throw new ArgumentOutOfRangeException(nameof(codec), codec, "Unknown wire codec."),
    };

    /// <summary>The payload bytes of <paramref name="elementCount"/> elements in <paramref name="codec"/>.</summary>
    /// <param name="codec">The codec.</param>
    /// <param name="elementCount">The element count, at least 0 and at most 2^56.</param>
    /// <returns><c>count × ElementSize</c>; for <see cref="WireCodec.Int8Blockwise"/> <c>count + 4 × ceil(count / 64)</c>.</returns>
    /// <exception cref="ArgumentOutOfRangeException">When <paramref name="codec"/> is not defined or the count is out of range.</exception>
    public static long PayloadBytes(WireCodec codec, long elementCount)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(elementCount);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(elementCount, 1L << 56);
        return codec == WireCodec.Int8Blockwise ? Int8BlockwiseCodec.PayloadBytes(elementCount) : elementCount * ElementSize(codec);
    }

    /// <summary>Whether <paramref name="code"/> names a defined codec.</summary>
    /// <param name="code">A codec byte read from the wire.</param>
    /// <returns><see langword="true"/> for 0 to 3.</returns>
    public static bool IsDefined(byte code) => code <= (byte)WireCodec.Int8Blockwise;

    /// <summary>The wire name of a codec, as the CLI's <c>--wire-codec</c> spells it.</summary>
    /// <param name="codec">The codec.</param>
    /// <returns><c>fp32</c>, <c>fp16</c>, <c>bf16</c> or <c>int8</c>.</returns>
    /// <exception cref="ArgumentOutOfRangeException">When <paramref name="codec"/> is not defined.</exception>
    public static string Name(WireCodec codec) => codec switch
    {
        WireCodec.Fp32 => "fp32",
        WireCodec.Fp16 => "fp16",
        WireCodec.Bf16 => "bf16",
        WireCodec.Int8Blockwise => "int8",
        _ => throw new ArgumentOutOfRangeException(nameof(codec), codec, "Unknown wire codec."),
    };

    /// <summary>Parses a codec name (<see cref="Name"/>; ordinal, lower case).</summary>
    /// <param name="name">The name.</param>
    /// <param name="codec">The codec.</param>
    /// <returns>Whether <paramref name="name"/> names a codec.</returns>
    public static bool TryParse(string? name, out WireCodec codec)
    {
        switch (name)
        {
            case "fp32": codec = WireCodec.Fp32; return true;
            case "fp16": codec = WireCodec.Fp16; return true;
            case "bf16": codec = WireCodec.Bf16; return true;
            case "int8": codec = WireCodec.Int8Blockwise; return true;
            default: codec = WireCodec.Fp32; return false;
        }
    }

    /// <summary>Encodes <paramref name="source"/> into <paramref name="destination"/>.</summary>
    /// <param name="source">The fp32 values.</param>
    /// <param name="codec">The wire form.</param>
    /// <param name="destination">At least <c>PayloadBytes(codec, source.Length)</c> bytes; written little-endian.</param>
    /// <exception cref="ArgumentException">When <paramref name="destination"/> is too small.</exception>
    public static void Encode(ReadOnlySpan<float> source, WireCodec codec, Span<byte> destination)
    {
        var bytes = (int)PayloadBytes(codec, source.Length);
        if (destination.Length < bytes)
        {
            throw new ArgumentException($"The destination holds {destination.Length} bytes, {bytes} are needed.", nameof(destination));
        }

        destination = destination[..bytes];
        switch (codec)
        {
            case WireCodec.Fp32:
                if (BitConverter.IsLittleEndian)
                {
                    MemoryMarshal.AsBytes(source).CopyTo(destination);
                }
                else
                {
                    for (var i = 0; i < source.Length; i++)
                    {
                        BinaryPrimitives.WriteSingleLittleEndian(destination[(i * 4)..], source[i]);
                    }
                }

                break;
            case WireCodec.Fp16:
                if (BitConverter.IsLittleEndian)
                {
                    TensorPrimitives.ConvertToHalf(source, MemoryMarshal.Cast<byte, Half>(destination));
                }
                else
                {
                    for (var i = 0; i < source.Length; i++)
                    {
                        BinaryPrimitives.WriteHalfLittleEndian(destination[(i * 2)..], (Half)source[i]);
                    }
                }

                break;
            case WireCodec.Int8Blockwise:
                Int8BlockwiseCodec.Encode(source, destination);
                break;
            default:
                EncodeBFloat16(source, destination);
                break;
        }
    }

    /// <summary>Decodes <paramref name="source"/> into <paramref name="destination"/>.</summary>
    /// <param name="source">Little-endian wire bytes, at least <c>PayloadBytes(codec, destination.Length)</c>.</param>
    /// <param name="codec">The wire form.</param>
    /// <param name="destination">The fp32 values to fill.</param>
    /// <exception cref="ArgumentException">When <paramref name="source"/> is too small, or an <see cref="WireCodec.Int8Blockwise"/> block scale is NaN, infinite, negative or above <c>float.MaxValue / 127</c>.</exception>
    public static void Decode(ReadOnlySpan<byte> source, WireCodec codec, Span<float> destination)
    {
        var bytes = (int)PayloadBytes(codec, destination.Length);
        if (source.Length < bytes)
        {
            throw new ArgumentException($"The source holds {source.Length} bytes, {bytes} are needed.", nameof(source));
        }

        source = source[..bytes];
        switch (codec)
        {
            case WireCodec.Fp32:
                if (BitConverter.IsLittleEndian)
                {
                    source.CopyTo(MemoryMarshal.AsBytes(destination));
                }
                else
                {
                    for (var i = 0; i < destination.Length; i++)
                    {
                        destination[i] = BinaryPrimitives.ReadSingleLittleEndian(source[(i * 4)..]);
                    }
                }

                break;
            case WireCodec.Fp16:
                if (BitConverter.IsLittleEndian)
                {
                    TensorPrimitives.ConvertToSingle(MemoryMarshal.Cast<byte, Half>(source), destination);
                }
                else
                {
                    for (var i = 0; i < destination.Length; i++)
                    {
                        destination[i] = (float)BinaryPrimitives.ReadHalfLittleEndian(source[(i * 2)..]);
                    }
                }

                break;
            case WireCodec.Int8Blockwise:
                Int8BlockwiseCodec.Decode(source, destination);
                break;
            default:
                if (BitConverter.IsLittleEndian)
                {
                    DenseMatrix.BFloat16ToSingle(MemoryMarshal.Cast<byte, ushort>(source), destination);
                }
                else
                {
                    for (var i = 0; i < destination.Length; i++)
                    {
                        destination[i] = BitConverter.UInt32BitsToSingle((uint)BinaryPrimitives.ReadUInt16LittleEndian(source[(i * 2)..]) << 16);
                    }
                }

                break;
        }
    }

    private static void EncodeBFloat16(ReadOnlySpan<float> source, Span<byte> destination)
    {
        var n = source.Length;
        var i = 0;
        if (BitConverter.IsLittleEndian && Vector256.IsHardwareAccelerated)
        {
            var src = MemoryMarshal.Cast<float, uint>(source);
            var dst = MemoryMarshal.Cast<byte, ushort>(destination);
            ref var s = ref MemoryMarshal.GetReference(src);
            ref var d = ref MemoryMarshal.GetReference(dst);
            var bias = Vector256.Create(0x7FFFu);
            var one = Vector256.Create(1u);
            var absMask = Vector256.Create(0x7FFFFFFFu);
            var infinity = Vector256.Create(0x7F800000u);
            var quiet = Vector256.Create(0x00400000u);
            for (; i <= n - 16; i += 16)
            {
                var lo = Round(Vector256.LoadUnsafe(ref s, (nuint)i));
                var hi = Round(Vector256.LoadUnsafe(ref s, (nuint)(i + 8)));
                Vector256.Narrow(lo, hi).StoreUnsafe(ref d, (nuint)i);
            }

            Vector256<uint> Round(Vector256<uint> bits)
            {
                var rounded = bits + bias + (Vector256.ShiftRightLogical(bits, 16) & one);
                var isNaN = Vector256.GreaterThan(bits & absMask, infinity);
                return Vector256.ShiftRightLogical(Vector256.ConditionalSelect(isNaN, bits | quiet, rounded), 16);
            }
        }

        for (; i < n; i++)
        {
            BinaryPrimitives.WriteUInt16LittleEndian(destination[(i * 2)..], DenseMatrix.SingleToBFloat16(source[i]));
        }
    }
}
