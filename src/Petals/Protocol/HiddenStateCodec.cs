using System.Buffers.Binary;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using Petals.Numerics;

namespace Petals.Protocol;

/// <summary>Converts fp32 hidden states to and from their wire form (fp32, fp16 or bf16, little-endian).</summary>
/// <remarks>
/// Encoding to fp16 and bf16 rounds to nearest, ties to even; NaN stays NaN. Decoding is exact.
/// Vectorized where the hardware allows. Thread-safe (stateless).
/// </remarks>
public static class HiddenStateCodec
{
    /// <summary>The bytes one element occupies on the wire.</summary>
    /// <param name="codec">The codec.</param>
    /// <returns>4 for <see cref="WireCodec.Fp32"/>, 2 for the others.</returns>
    /// <exception cref="ArgumentOutOfRangeException">When <paramref name="codec"/> is not defined.</exception>
    public static int ElementSize(WireCodec codec) => codec switch
    {
        WireCodec.Fp32 => 4,
        WireCodec.Fp16 or WireCodec.Bf16 => 2,
        _ => throw new ArgumentOutOfRangeException(nameof(codec), codec, "Unknown wire codec."),
    };

    /// <summary>Whether <paramref name="code"/> names a defined codec.</summary>
    /// <param name="code">A codec byte read from the wire.</param>
    /// <returns><see langword="true"/> for 0, 1 and 2.</returns>
    public static bool IsDefined(byte code) => code <= (byte)WireCodec.Bf16;

    /// <summary>Encodes <paramref name="source"/> into <paramref name="destination"/>.</summary>
    /// <param name="source">The fp32 values.</param>
    /// <param name="codec">The wire form.</param>
    /// <param name="destination">At least <c>source.Length * ElementSize(codec)</c> bytes; written little-endian.</param>
    /// <exception cref="ArgumentException">When <paramref name="destination"/> is too small.</exception>
    public static void Encode(ReadOnlySpan<float> source, WireCodec codec, Span<byte> destination)
    {
        var bytes = source.Length * ElementSize(codec);
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
            default:
                EncodeBFloat16(source, destination);
                break;
        }
    }

    /// <summary>Decodes <paramref name="source"/> into <paramref name="destination"/>.</summary>
    /// <param name="source">Little-endian wire bytes, at least <c>destination.Length * ElementSize(codec)</c>.</param>
    /// <param name="codec">The wire form.</param>
    /// <param name="destination">The fp32 values to fill.</param>
    /// <exception cref="ArgumentException">When <paramref name="source"/> is too small.</exception>
    public static void Decode(ReadOnlySpan<byte> source, WireCodec codec, Span<float> destination)
    {
        var bytes = destination.Length * ElementSize(codec);
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
