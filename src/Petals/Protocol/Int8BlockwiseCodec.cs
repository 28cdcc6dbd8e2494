using System.Buffers.Binary;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Petals.Protocol;

/// <summary>
/// The 8-bit blockwise wire form (<see cref="WireCodec.Int8Blockwise"/>, docs/wire-protocol.md §3.1): the elements in
/// row-major order are cut into blocks of <see cref="BlockSize"/> (the last may be shorter); the payload is first one
/// little-endian fp32 scale per block (<c>absmax / 127</c> over the block's finite values), then one signed byte per
/// element, <c>round(x / scale)</c> to nearest even, in -127..127. The byte -128 (0x80) marks a non-finite element and
/// decodes as NaN, so a NaN or infinity still reaches the receiver as non-finite (and a server refuses it with
/// <c>non_finite_input</c> exactly as with fp32) while the rest of its block keeps the error bound.
/// </summary>
/// <remarks>
/// Error bound per element for a finite input x in a block whose finite values have absolute maximum <c>a</c>:
/// <c>|x − x'| ≤ a / 254 · (1 + 2^-14) + 2^-140</c> (the additive term only matters for blocks whose scale is
/// subnormal, a &lt; 1.5e-36). Stateless and thread-safe; writes straight into the caller's spans, allocates nothing.
/// </remarks>
internal static class Int8BlockwiseCodec
{
    /// <summary>Elements per block. 64: one block per token row for hidden 64 models and 64 blocks per 4096-wide row, so one
    /// outlier feature (LLM residual streams have a few channels 10-100x the rest) coarsens only its 63 neighbours;
    /// the fp32 scale costs 4/64 = 0.0625 bytes per element (1.0625 in all, 1.88x less than fp16).</summary>
    public const int BlockSize = 64;

    /// <summary>The largest scale a conforming encoder writes: <c>float.MaxValue / 127</c>, so finite codes never decode to infinity.</summary>
    public const float MaxScale = float.MaxValue / 127f;

    /// <summary>The code of a non-finite element.</summary>
    public const sbyte NonFiniteCode = sbyte.MinValue;

    /// <summary>The blocks of <paramref name="elementCount"/> elements.</summary>
    public static long Blocks(long elementCount) => (elementCount + BlockSize - 1) / BlockSize;

    /// <summary>The payload bytes of <paramref name="elementCount"/> elements: 4 per block plus 1 per element.</summary>
    public static long PayloadBytes(long elementCount) => (4 * Blocks(elementCount)) + elementCount;

    /// <summary>Whether <paramref name="scale"/> is a scale a conforming encoder can write.</summary>
    public static bool IsValidScale(float scale) => scale >= 0 && scale <= MaxScale;

    /// <summary>The first block of <paramref name="payload"/> whose scale is not valid (NaN, infinite, negative or above <see cref="MaxScale"/>), or -1.</summary>
    public static int IndexOfBadScale(ReadOnlySpan<byte> payload, int elementCount, out float scale)
    {
        var blocks = (int)Blocks(elementCount);
        for (var b = 0; b < blocks; b++)
        {
            scale = BinaryPrimitives.ReadSingleLittleEndian(payload[(b * 4)..]);
            if (!IsValidScale(scale))
            {
                return b;
            }
        }

        scale = 0;
        return -1;
    }

    /// <summary>Encodes <paramref name="source"/> into exactly <c>PayloadBytes(source.Length)</c> bytes of <paramref name="destination"/>.</summary>
    public static void Encode(ReadOnlySpan<float> source, Span<byte> destination)
    {
        var blocks = (int)Blocks(source.Length);
        var codes = MemoryMarshal.Cast<byte, sbyte>(destination.Slice(blocks * 4, source.Length));
        for (var b = 0; b < blocks; b++)
        {
            var start = b * BlockSize;
            var length = Math.Min(BlockSize, source.Length - start);
            var values = source.Slice(start, length);
            var block = codes.Slice(start, length);
            var absmax = Math.Abs(TensorPrimitives.MaxMagnitude(values));
            float scale;
            if (float.IsFinite(absmax))
            {
                scale = absmax / 127f;
                Quantize(values, scale, block);
            }
            else
            {
                scale = EncodeWithNonFinite(values, block);
            }

            BinaryPrimitives.WriteSingleLittleEndian(destination[(b * 4)..], scale);
        }
    }

    /// <summary>Decodes <c>PayloadBytes(destination.Length)</c> bytes of <paramref name="source"/> into <paramref name="destination"/>.</summary>
    /// <exception cref="ArgumentException">When a block's scale is not valid (<see cref="IsValidScale"/>).</exception>
    public static void Decode(ReadOnlySpan<byte> source, Span<float> destination)
    {
        var blocks = (int)Blocks(destination.Length);
        var codes = MemoryMarshal.Cast<byte, sbyte>(source.Slice(blocks * 4, destination.Length));
        for (var b = 0; b < blocks; b++)
        {
            var scale = BinaryPrimitives.ReadSingleLittleEndian(source[(b * 4)..]);
            if (!IsValidScale(scale))
            {
                throw new ArgumentException($"Block {b} has scale {scale}; a scale is finite, at least 0 and at most {MaxScale}.", nameof(source));
            }

            var start = b * BlockSize;
            var length = Math.Min(BlockSize, destination.Length - start);
            Dequantize(codes.Slice(start, length), scale, destination.Slice(start, length));
        }
    }

    private static void Quantize(ReadOnlySpan<float> values, float scale, Span<sbyte> codes)
    {
        if (scale == 0)
        {
            // Every value is ±0 (or the block's absmax is below the smallest subnormal scale).
            codes.Clear();
            return;
        }

        var i = 0;
        if (Vector256.IsHardwareAccelerated && values.Length == BlockSize)
        {
            ref var x = ref MemoryMarshal.GetReference(values);
            ref var q = ref MemoryMarshal.GetReference(codes);
            var s = Vector256.Create(scale);
            var high = Vector256.Create(127);
            var low = Vector256.Create(-127);
            for (; i < BlockSize; i += 32)
            {
                var q0 = Code(Vector256.LoadUnsafe(ref x, (nuint)i));
                var q1 = Code(Vector256.LoadUnsafe(ref x, (nuint)(i + 8)));
                var q2 = Code(Vector256.LoadUnsafe(ref x, (nuint)(i + 16)));
                var q3 = Code(Vector256.LoadUnsafe(ref x, (nuint)(i + 24)));
                Vector256.Narrow(Vector256.Narrow(q0, q1), Vector256.Narrow(q2, q3)).StoreUnsafe(ref q, (nuint)i);
            }

            Vector256<int> Code(Vector256<float> v) =>
                Vector256.Min(Vector256.Max(Vector256.ConvertToInt32(Vector256.Round(v / s)), low), high);
        }

        for (; i < values.Length; i++)
        {
            codes[i] = QuantizeOne(values[i], scale);
        }
    }

    private static sbyte QuantizeOne(float value, float scale) => (sbyte)Math.Clamp((int)MathF.Round(value / scale), -127, 127);

    /// <summary>A block holding NaN or an infinity: the scale comes from its finite values, the others get <see cref="NonFiniteCode"/>.</summary>
    private static float EncodeWithNonFinite(ReadOnlySpan<float> values, Span<sbyte> codes)
    {
        var absmax = 0f;
        foreach (var v in values)
        {
            if (float.IsFinite(v))
            {
                absmax = Math.Max(absmax, Math.Abs(v));
            }
        }

        var scale = absmax / 127f;
        for (var i = 0; i < values.Length; i++)
        {
            codes[i] = !float.IsFinite(values[i]) ? NonFiniteCode : scale == 0 ? (sbyte)0 : QuantizeOne(values[i], scale);
        }

        return scale;
    }

    private static void Dequantize(ReadOnlySpan<sbyte> codes, float scale, Span<float> values)
    {
        if (Vector256.IsHardwareAccelerated && codes.Length == BlockSize)
        {
            ref var q = ref MemoryMarshal.GetReference(codes);
            var lo = Vector256.LoadUnsafe(ref q);
            var hi = Vector256.LoadUnsafe(ref q, 32);
            var marker = Vector256.Create(NonFiniteCode);
            if (!Vector256.EqualsAny(lo, marker) && !Vector256.EqualsAny(hi, marker))
            {
                ref var x = ref MemoryMarshal.GetReference(values);
                var s = Vector256.Create(scale);
                Store(lo, s, ref x, 0);
                Store(hi, s, ref x, 32);
                return;
            }
        }

        for (var i = 0; i < codes.Length; i++)
        {
            values[i] = codes[i] == NonFiniteCode ? float.NaN : codes[i] * scale;
        }
    }

    private static void Store(Vector256<sbyte> bytes, Vector256<float> scale, ref float destination, nuint at)
    {
        var (a, b) = Vector256.Widen(bytes);
        var (a0, a1) = Vector256.Widen(a);
        var (b0, b1) = Vector256.Widen(b);
        (Vector256.ConvertToSingle(a0) * scale).StoreUnsafe(ref destination, at);
        (Vector256.ConvertToSingle(a1) * scale).StoreUnsafe(ref destination, at + 8);
        (Vector256.ConvertToSingle(b0) * scale).StoreUnsafe(ref destination, at + 16);
        (Vector256.ConvertToSingle(b1) * scale).StoreUnsafe(ref destination, at + 24);
    }
}
