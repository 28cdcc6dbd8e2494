using System.Buffers.Binary;
using System.Collections;
using System.Text;
using Petals.Formats.Gguf;

namespace Petals.Tests.Formats;

/// <summary>An array metadata value for <see cref="GgufTestWriter"/>; nested arrays have items of type <see cref="GgufArray"/>.</summary>
internal sealed record GgufArray(GgufValueType ElementType, IList Items);

/// <summary>Writes GGUF files of version 1, 2 or 3 (test-only): metadata of every type and tensors of any ggml type.</summary>
internal sealed class GgufTestWriter(int version, int alignment = 32)
{
    private readonly List<(string Key, GgufValueType Type, object Value)> _metadata = [];
    private readonly List<(string Name, GgufTensorType Type, long[] Shape, byte[] Data)> _tensors = [];

    public int Version => version;

    public GgufTestWriter Add(string key, GgufValueType type, object value)
    {
        _metadata.Add((key, type, value));
        return this;
    }

    public GgufTestWriter AddString(string key, string value) => Add(key, GgufValueType.String, value);

    public GgufTestWriter AddU32(string key, uint value) => Add(key, GgufValueType.UInt32, value);

    public GgufTestWriter AddF32(string key, float value) => Add(key, GgufValueType.Float32, value);

    /// <summary>Adds a tensor; <paramref name="shape"/> is row-major (outermost first) and is written innermost first.</summary>
    public GgufTestWriter AddTensor(string name, GgufTensorType type, long[] shape, byte[] data)
    {
        _tensors.Add((name, type, shape, data));
        return this;
    }

    /// <summary>
    /// A writer with the metadata of <paramref name="file"/> (alignment included) and its tensors, each re-encoded by
    /// <paramref name="encode"/> from the file's float values (e.g. to quantize a real model).
    /// </summary>
    public static GgufTestWriter CopyOf(GgufFile file, Func<GgufTensorInfo, float[], (GgufTensorType Type, byte[] Data)> encode)
    {
        var w = new GgufTestWriter(file.Version, file.Alignment);
        foreach (var (key, value) in file.Metadata)
        {
            if (key == GgufFile.AlignmentKey)
            {
                continue;
            }

            w.Add(key, value.Type, value.Type == GgufValueType.Array ? new GgufArray(value.ElementType!.Value, (IList)value.Value) : value.Value);
        }

        foreach (var t in file.Tensors)
        {
            var (type, data) = encode(t, file.ReadSingles(t));
            w.AddTensor(t.Name, type, [.. t.Shape], data);
        }

        return w;
    }

    public byte[] ToBytes()
    {
        var ms = new MemoryStream();
        var w = new BinaryWriter(ms);
        w.Write("GGUF"u8);
        w.Write((uint)version);
        WriteCount(w, _tensors.Count);
        WriteCount(w, _metadata.Count + (alignment != 32 ? 1 : 0));
        if (alignment != 32)
        {
            WriteString(w, GgufFile.AlignmentKey);
            w.Write((uint)GgufValueType.UInt32);
            w.Write((uint)alignment);
        }

        foreach (var (key, type, value) in _metadata)
        {
            WriteString(w, key);
            w.Write((uint)type);
            WriteValue(w, type, value);
        }

        long offset = 0;
        var offsets = new List<long>();
        foreach (var (name, type, shape, data) in _tensors)
        {
            WriteString(w, name);
            w.Write((uint)shape.Length);
            for (var d = shape.Length - 1; d >= 0; d--)
            {
                WriteCount(w, shape[d]);
            }

            w.Write((uint)type);
            w.Write((ulong)offset);
            offsets.Add(offset);
            offset += Align(data.Length);
        }

        Pad(w);
        foreach (var (_, _, _, data) in _tensors)
        {
            w.Write(data);
            Pad(w);
        }

        w.Flush();
        return ms.ToArray();
    }

    public string Write(string path)
    {
        File.WriteAllBytes(path, ToBytes());
        return path;
    }

    private long Align(long n) => (n + alignment - 1) / alignment * alignment;

    private void Pad(BinaryWriter w)
    {
        while (w.BaseStream.Position % alignment != 0)
        {
            w.Write((byte)0);
        }
    }

    private void WriteCount(BinaryWriter w, long n)
    {
        if (version == 1)
        {
            w.Write(checked((uint)n));
        }
        else
        {
            w.Write((ulong)n);
        }
    }

    private void WriteString(BinaryWriter w, string s)
    {
        var bytes = Encoding.UTF8.GetBytes(s);
        WriteCount(w, bytes.Length);
        w.Write(bytes);
    }

    private void WriteValue(BinaryWriter w, GgufValueType type, object value)
    {
        switch (type)
        {
            case GgufValueType.UInt8: w.Write((byte)value); break;
            case GgufValueType.Int8: w.Write((sbyte)value); break;
            case GgufValueType.UInt16: w.Write((ushort)value); break;
            case GgufValueType.Int16: w.Write((short)value); break;
            case GgufValueType.UInt32: w.Write((uint)value); break;
            case GgufValueType.Int32: w.Write((int)value); break;
            case GgufValueType.Float32: w.Write((float)value); break;
            case GgufValueType.Bool: w.Write((bool)value ? (byte)1 : (byte)0); break;
            case GgufValueType.String: WriteString(w, (string)value); break;
            case GgufValueType.UInt64: w.Write((ulong)value); break;
            case GgufValueType.Int64: w.Write((long)value); break;
            case GgufValueType.Float64: w.Write((double)value); break;
            case GgufValueType.Array:
                var array = (GgufArray)value;
                w.Write((uint)array.ElementType);
                WriteCount(w, array.Items.Count);
                foreach (var item in array.Items)
                {
                    WriteValue(w, array.ElementType, item!);
                }

                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(type));
        }
    }
}

/// <summary>Element encodings used by the tests (independent of the library's own conversions, except the block formats).</summary>
internal static class TestEncodings
{
    /// <summary>
    /// Encodes <paramref name="values"/> as <paramref name="type"/>: the float types and Q8_0 with the test's own encoders,
    /// the other block types with <see cref="Petals.Tensors.BlockQuantization.Quantize"/> (tested against ggml in Petals.Abstractions.Tests).
    /// </summary>
    public static byte[] Encode(GgufTensorType type, float[] values)
    {
        switch (type)
        {
            case GgufTensorType.F32: return F32(values);
            case GgufTensorType.F16: return F16(values);
            case GgufTensorType.BF16: return BF16(values);
            case GgufTensorType.Q8_0: return Q8_0(values);
        }

        var dtype = GgufTensorTypeInfo.ServedAs(type);
        if (dtype is null)
        {
            // A type the readers do not serve (IQ2_XXS, …): bytes of the right size, content irrelevant.
            Assert.True(GgufTensorTypeInfo.TryGetBlock(type, out var be, out var bb));
            return new byte[values.Length / be * bb];
        }

        var bytes = new byte[Petals.Tensors.TensorDTypeExtensions.ByteSize(dtype.Value, values.Length)];
        Petals.Tensors.BlockQuantization.Quantize(dtype.Value, values, bytes);
        return bytes;
    }

    public static byte[] F32(float[] values)
    {
        var bytes = new byte[values.Length * 4];
        for (var i = 0; i < values.Length; i++)
        {
            BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(i * 4), values[i]);
        }

        return bytes;
    }

    public static byte[] F16(float[] values)
    {
        var bytes = new byte[values.Length * 2];
        for (var i = 0; i < values.Length; i++)
        {
            BinaryPrimitives.WriteHalfLittleEndian(bytes.AsSpan(i * 2), (Half)values[i]);
        }

        return bytes;
    }

    public static byte[] BF16(float[] values)
    {
        var bytes = new byte[values.Length * 2];
        for (var i = 0; i < values.Length; i++)
        {
            var bits = BitConverter.SingleToUInt32Bits(values[i]);
            var rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16;
            BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(i * 2), (ushort)rounded);
        }

        return bytes;
    }

    /// <summary>Quantizes to Q8_0 like ggml: scale = max|x| / 127 stored as fp16, q = round(x / scale).</summary>
    public static byte[] Q8_0(float[] values)
    {
        var blocks = values.Length / 32;
        var bytes = new byte[blocks * 34];
        for (var b = 0; b < blocks; b++)
        {
            var max = 0f;
            for (var i = 0; i < 32; i++)
            {
                max = Math.Max(max, Math.Abs(values[(b * 32) + i]));
            }

            var d = max / 127f;
            var id = d != 0 ? 1f / d : 0f;
            BinaryPrimitives.WriteHalfLittleEndian(bytes.AsSpan(b * 34), (Half)d);
            for (var i = 0; i < 32; i++)
            {
                bytes[(b * 34) + 2 + i] = (byte)(sbyte)Math.Round(values[(b * 32) + i] * id);
            }
        }

        return bytes;
    }

    /// <summary>The exact Q8_0 dequantization (fp16 scale times int8).</summary>
    public static float[] DequantizeQ8_0(byte[] bytes)
    {
        var blocks = bytes.Length / 34;
        var result = new float[blocks * 32];
        for (var b = 0; b < blocks; b++)
        {
            var d = (float)BinaryPrimitives.ReadHalfLittleEndian(bytes.AsSpan(b * 34));
            for (var i = 0; i < 32; i++)
            {
                result[(b * 32) + i] = d * (sbyte)bytes[(b * 34) + 2 + i];
            }
        }

        return result;
    }

    public static float[] Random(Random rng, long count, float scale = 0.05f, float offset = 0f)
    {
        var values = new float[count];
        for (var i = 0; i < values.Length; i++)
        {
            values[i] = offset + (scale * (float)((rng.NextDouble() * 2) - 1));
        }

        return values;
    }
}
