using System.Buffers.Binary;
using System.Globalization;
using System.Runtime.InteropServices;

namespace Petals.Tensors;

/// <summary>
/// Scalar reference codecs of the block-quantized <see cref="TensorDType"/> formats (the ggml block layouts Q8_0, Q4_0,
/// Q4_1, Q5_0, Q5_1, Q2_K … Q6_K, and NF4), per-output-channel int8, and the check for non-finite block scales.
/// </summary>
/// <remarks>
/// <para>
/// These are the definitions that fast kernels are tested against, and what loaders and quantize-at-load use. Every
/// method works on whole blocks and allocates nothing; callers parallelize over rows. All members are thread-safe.
/// </para>
/// <para>
/// <see cref="Dequantize"/> reproduces ggml's <c>dequantize_row_*</c> bit for bit (same float operations in the same
/// order). <see cref="Quantize"/> reproduces ggml's reference quantizers byte for byte for Q8_0, Q4_0, Q4_1, Q5_0 and
/// Q5_1; for the k-quants it runs its own least-squares scale search, which minimizes the plain squared error (ggml's
/// reference quantizers minimize an importance-weighted one), so its bytes differ from ggml's.
/// </para>
/// </remarks>
public static partial class BlockQuantization
{
    /// <summary>
    /// The 16 levels of QLoRA's 4-bit NormalFloat (NF4), ascending: code <c>i</c> decodes to <c>Nf4Levels[i] * scale</c>.
    /// They are the quantiles of a standard normal distribution normalized to [-1, 1], with an exact zero (code 7).
    /// </summary>
    public static ReadOnlySpan<float> Nf4Levels =>
    [
        -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
        -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
        0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,
        0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f,
    ];

    /// <summary>Decodes <paramref name="source"/> (whole blocks of <paramref name="dtype"/>) into floats.</summary>
    /// <param name="dtype">F32, F16, BF16 or a block-quantized type.</param>
    /// <param name="source">The encoded data: exactly <c>dtype.ByteSize(destination.Length)</c> bytes.</param>
    /// <param name="destination">The decoded values; its length must be a multiple of the block size.</param>
    /// <exception cref="ArgumentException">When <paramref name="dtype"/> has no float decoding (I8, I32, I64, undefined), the
    /// destination length is not a multiple of the block size, or the source length does not match it.</exception>
    public static void Dequantize(TensorDType dtype, ReadOnlySpan<byte> source, Span<float> destination)
    {
        var blocks = CheckLengths(dtype, source.Length, destination.Length, nameof(source), nameof(destination));
        switch (dtype)
        {
            case TensorDType.F32:
                MemoryMarshal.Cast<byte, float>(source).CopyTo(destination);
                return;
            case TensorDType.F16:
                for (var i = 0; i < destination.Length; i++)
                {
                    destination[i] = Half16(source, 2 * i);
                }

                return;
            case TensorDType.BF16:
                for (var i = 0; i < destination.Length; i++)
                {
                    destination[i] = BitConverter.Int32BitsToSingle(BinaryPrimitives.ReadUInt16LittleEndian(source[(2 * i)..]) << 16);
                }

                return;
        }

        var be = dtype.BlockElements();
        var bb = dtype.BlockBytes();
        for (var b = 0; b < blocks; b++)
        {
            var x = source.Slice(b * bb, bb);
            var y = destination.Slice(b * be, be);
            switch (dtype)
            {
                case TensorDType.Q8_0: DequantizeQ8_0(x, y); break;
                case TensorDType.Q4_0: DequantizeQ4_0(x, y); break;
                case TensorDType.Q4_1: DequantizeQ4_1(x, y); break;
                case TensorDType.Q5_0: DequantizeQ5_0(x, y); break;
                case TensorDType.Q5_1: DequantizeQ5_1(x, y); break;
                case TensorDType.Q2_K: DequantizeQ2_K(x, y); break;
                case TensorDType.Q3_K: DequantizeQ3_K(x, y); break;
                case TensorDType.Q4_K: DequantizeQ4_K(x, y); break;
                case TensorDType.Q5_K: DequantizeQ5_K(x, y); break;
                case TensorDType.Q6_K: DequantizeQ6_K(x, y); break;
                case TensorDType.NF4: DequantizeNf4(x, y); break;
                default: throw new ArgumentException($"{dtype} has no float decoding.", nameof(dtype));
            }
        }
    }

    /// <summary>Encodes <paramref name="source"/> (whole blocks) as <paramref name="dtype"/>.</summary>
    /// <param name="dtype">F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K or NF4.</param>
    /// <param name="source">The values; the length must be a multiple of the block size. They must be finite.</param>
    /// <param name="destination">The encoded data: exactly <c>dtype.ByteSize(source.Length)</c> bytes.</param>
    /// <exception cref="ArgumentException">When the lengths do not fit, or a block holds a NaN or infinite value (the
    /// message names the element).</exception>
    /// <exception cref="NotSupportedException">When <paramref name="dtype"/> cannot be encoded to (I8, I32, I64).</exception>
    public static void Quantize(TensorDType dtype, ReadOnlySpan<float> source, Span<byte> destination)
    {
        if (dtype is TensorDType.I8 or TensorDType.I32 or TensorDType.I64)
        {
            throw new NotSupportedException($"Quantizing floats to {dtype} is not supported (use QuantizeRowsInt8 for per-channel int8).");
        }

        var blocks = CheckLengths(dtype, destination.Length, source.Length, nameof(destination), nameof(source));
        switch (dtype)
        {
            case TensorDType.F32:
                MemoryMarshal.AsBytes(source).CopyTo(destination);
                return;
            case TensorDType.F16:
                for (var i = 0; i < source.Length; i++)
                {
                    BinaryPrimitives.WriteUInt16LittleEndian(destination[(2 * i)..], BitConverter.HalfToUInt16Bits((Half)source[i]));
                }

                return;
            case TensorDType.BF16:
                for (var i = 0; i < source.Length; i++)
                {
                    BinaryPrimitives.WriteUInt16LittleEndian(destination[(2 * i)..], SingleToBFloat16(source[i]));
                }

                return;
        }

        var be = dtype.BlockElements();
        var bb = dtype.BlockBytes();
        for (var b = 0; b < blocks; b++)
        {
            var x = source.Slice(b * be, be);
            if (FirstNonFinite(x) is var bad and >= 0)
            {
                throw new ArgumentException(string.Create(CultureInfo.InvariantCulture, $"Element {(b * be) + bad} is {x[bad]}; only finite values can be quantized."), nameof(source));
            }

            var y = destination.Slice(b * bb, bb);
            switch (dtype)
            {
                case TensorDType.Q8_0: QuantizeQ8_0(x, y); break;
                case TensorDType.Q4_0: QuantizeQ4_0(x, y); break;
                case TensorDType.Q4_1: QuantizeQ4_1(x, y); break;
                case TensorDType.Q5_0: QuantizeQ5_0(x, y); break;
                case TensorDType.Q5_1: QuantizeQ5_1(x, y); break;
                case TensorDType.Q2_K: QuantizeQ2_K(x, y); break;
                case TensorDType.Q3_K: QuantizeQ3_K(x, y); break;
                case TensorDType.Q4_K: QuantizeQ4_K(x, y); break;
                case TensorDType.Q5_K: QuantizeQ5_K(x, y); break;
                case TensorDType.Q6_K: QuantizeQ6_K(x, y); break;
                case TensorDType.NF4: QuantizeNf4(x, y); break;
                default: throw new NotSupportedException($"Quantizing floats to {dtype} is not supported.");
            }
        }
    }

    /// <summary>
    /// Finds the first block whose floating-point scale (or minimum) is NaN or infinite. Integer sub-block scales are
    /// always finite; for F32, F16 and BF16 every element is checked (as its own "block", field <c>"value"</c>).
    /// </summary>
    /// <param name="dtype">The element type of <paramref name="data"/>.</param>
    /// <param name="data">Whole blocks of <paramref name="dtype"/>.</param>
    /// <param name="block">The index of the first bad block (or element), or -1.</param>
    /// <param name="field">The bad field: <c>"d"</c> (the scale; for NF4 its absmax), <c>"m"</c> (Q4_1/Q5_1 minimum),
    /// <c>"dmin"</c> (k-quant minimum scale) or <c>"value"</c>; empty when none is bad.</param>
    /// <returns><see langword="true"/> when a non-finite scale was found.</returns>
    /// <exception cref="ArgumentException">When the length of <paramref name="data"/> is not a whole number of blocks, or
    /// <paramref name="dtype"/> has no scales or floats (I8, I32, I64).</exception>
    public static bool TryFindNonFiniteScale(TensorDType dtype, ReadOnlySpan<byte> data, out long block, out string field)
    {
        var bb = dtype.BlockBytes();
        if (data.Length % bb != 0)
        {
            throw new ArgumentException(string.Create(CultureInfo.InvariantCulture, $"{data.Length} bytes are not a whole number of {dtype} blocks of {bb} bytes."), nameof(data));
        }

        (int Offset, string Name)[] fields = dtype switch
        {
            TensorDType.F32 or TensorDType.F16 or TensorDType.BF16 => [(0, "value")],
            TensorDType.Q8_0 or TensorDType.Q4_0 or TensorDType.Q5_0 or TensorDType.NF4 => [(0, "d")],
            TensorDType.Q4_1 or TensorDType.Q5_1 => [(0, "d"), (2, "m")],
            TensorDType.Q4_K or TensorDType.Q5_K => [(0, "d"), (2, "dmin")],
            TensorDType.Q2_K => [(80, "d"), (82, "dmin")],
            TensorDType.Q3_K => [(108, "d")],
            TensorDType.Q6_K => [(208, "d")],
            _ => throw new ArgumentException($"{dtype} has no floating-point scales to check.", nameof(dtype)),
        };

        var blocks = data.Length / bb;
        for (var b = 0; b < blocks; b++)
        {
            var x = data.Slice(b * bb, bb);
            foreach (var (offset, name) in fields)
            {
                var finite = dtype switch
                {
                    TensorDType.F32 => float.IsFinite(BinaryPrimitives.ReadSingleLittleEndian(x)),
                    TensorDType.BF16 => (BinaryPrimitives.ReadUInt16LittleEndian(x) & 0x7F80) != 0x7F80,
                    _ => (BinaryPrimitives.ReadUInt16LittleEndian(x[offset..]) & 0x7C00) != 0x7C00,
                };
                if (!finite)
                {
                    block = b;
                    field = name;
                    return true;
                }
            }
        }

        block = -1;
        field = string.Empty;
        return false;
    }

    /// <summary>
    /// Per-output-channel int8 (bitsandbytes LLM.int8-style absmax, without outlier decomposition): each row's scale is
    /// its largest absolute value / 127, and each value is <c>round(x / scale)</c> (to nearest, ties away from zero), so
    /// the error of a value is at most half its row's scale. A row of zeros gets scale 0.
    /// </summary>
    /// <param name="weights">Row-major <paramref name="rows"/> × <paramref name="columns"/> values (finite).</param>
    /// <param name="rows">The number of rows (output channels).</param>
    /// <param name="columns">The number of columns (input features).</param>
    /// <param name="values">The int8 codes, row-major, <paramref name="rows"/> × <paramref name="columns"/>.</param>
    /// <param name="rowScales">One scale per row.</param>
    /// <exception cref="ArgumentException">When a length does not match the shape, or a row holds a non-finite value (named).</exception>
    public static void QuantizeRowsInt8(ReadOnlySpan<float> weights, int rows, int columns, Span<sbyte> values, Span<float> rowScales)
    {
        CheckInt8Shape(weights.Length, rows, columns, values.Length, rowScales.Length, nameof(weights), nameof(rowScales));
        for (var r = 0; r < rows; r++)
        {
            var row = weights.Slice(r * columns, columns);
            var amax = 0f;
            foreach (var v in row)
            {
                if (!float.IsFinite(v))
                {
                    throw new ArgumentException(string.Create(CultureInfo.InvariantCulture, $"Row {r} holds the non-finite value {v}."), nameof(weights));
                }

                amax = MathF.Max(amax, MathF.Abs(v));
            }

            var scale = amax / 127f;
            rowScales[r] = scale;
            var inverse = scale == 0 ? 0 : 1f / scale;
            var q = values.Slice(r * columns, columns);
            for (var c = 0; c < columns; c++)
            {
                q[c] = (sbyte)Math.Clamp(MathF.Round(row[c] * inverse, MidpointRounding.AwayFromZero), -127f, 127f);
            }
        }
    }

    /// <summary>Decodes per-output-channel int8 weights: <c>value = code * rowScales[row]</c>.</summary>
    /// <param name="values">The int8 codes, row-major.</param>
    /// <param name="rowScales">One scale per row.</param>
    /// <param name="rows">The number of rows.</param>
    /// <param name="columns">The number of columns.</param>
    /// <param name="destination">The decoded values, row-major.</param>
    /// <exception cref="ArgumentException">When a length does not match the shape.</exception>
    public static void DequantizeRowsInt8(ReadOnlySpan<sbyte> values, ReadOnlySpan<float> rowScales, int rows, int columns, Span<float> destination)
    {
        CheckInt8Shape(destination.Length, rows, columns, values.Length, rowScales.Length, nameof(destination), nameof(rowScales));
        for (var r = 0; r < rows; r++)
        {
            var scale = rowScales[r];
            var q = values.Slice(r * columns, columns);
            var y = destination.Slice(r * columns, columns);
            for (var c = 0; c < columns; c++)
            {
                y[c] = q[c] * scale;
            }
        }
    }

    private static void CheckInt8Shape(int floats, int rows, int columns, int values, int scales, string floatsName, string scalesName)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        ArgumentOutOfRangeException.ThrowIfNegative(columns);
        var count = (long)rows * columns;
        if (floats != count)
        {
            throw new ArgumentException(string.Create(CultureInfo.InvariantCulture, $"{floatsName} holds {floats} values, not {rows} × {columns}."), floatsName);
        }

        if (values != count)
        {
            throw new ArgumentException(string.Create(CultureInfo.InvariantCulture, $"values holds {values} codes, not {rows} × {columns}."), nameof(values));
        }

        if (scales != rows)
        {
            throw new ArgumentException(string.Create(CultureInfo.InvariantCulture, $"{scalesName} holds {scales} scales, not {rows}."), scalesName);
        }
    }

    private static int CheckLengths(TensorDType dtype, int bytes, int elements, string bytesName, string elementsName)
    {
        if (!Enum.IsDefined(dtype) || dtype is TensorDType.I8 or TensorDType.I32 or TensorDType.I64)
        {
            throw new ArgumentException($"{dtype} has no float encoding.", nameof(dtype));
        }

        var be = dtype.BlockElements();
        var bb = dtype.BlockBytes();
        if (elements % be != 0)
        {
            throw new ArgumentException(string.Create(CultureInfo.InvariantCulture, $"{elementsName} holds {elements} values, not a multiple of the {dtype} block size {be}."), elementsName);
        }

        var blocks = elements / be;
        if ((long)blocks * bb != bytes)
        {
            throw new ArgumentException(string.Create(CultureInfo.InvariantCulture, $"{bytesName} holds {bytes} bytes, but {elements} {dtype} values take {(long)blocks * bb} ({blocks} blocks of {bb})."), bytesName);
        }

        return blocks;
    }

    private static int FirstNonFinite(ReadOnlySpan<float> x)
    {
        for (var i = 0; i < x.Length; i++)
        {
            if (!float.IsFinite(x[i]))
            {
                return i;
            }
        }

        return -1;
    }

    private static float Half16(ReadOnlySpan<byte> x, int offset) =>
        (float)BitConverter.UInt16BitsToHalf(BinaryPrimitives.ReadUInt16LittleEndian(x[offset..]));

    private static void WriteHalf(Span<byte> y, int offset, float value) =>
        BinaryPrimitives.WriteUInt16LittleEndian(y[offset..], BitConverter.HalfToUInt16Bits((Half)value));

    private static float RoundHalf(float value) => (float)(Half)value;

    private static ushort SingleToBFloat16(float value)
    {
        var bits = BitConverter.SingleToUInt32Bits(value);
        if (float.IsNaN(value))
        {
            return (ushort)((bits >> 16) | 0x40);
        }

        // Round to nearest even on the dropped 16 bits.
        return (ushort)((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16);
    }

    /// <summary>C's roundf: to nearest, ties away from zero (what ggml's reference quantizers use).</summary>
    private static int RoundAway(float v) => (int)MathF.Round(v, MidpointRounding.AwayFromZero);

    /// <summary>Round to nearest (ties to even), for the k-quant searches.</summary>
    private static int Nearest(float v) => (int)MathF.Round(v);
}
