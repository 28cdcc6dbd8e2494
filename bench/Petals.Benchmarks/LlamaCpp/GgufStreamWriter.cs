using System.Buffers.Binary;
using System.Text;

namespace Petals.Benchmarks.LlamaCpp;

/// <summary>
/// Writes a GGUF v3 file of F32 tensors whose data are produced one tensor at a time, so multi-gigabyte random models
/// never sit in memory: the header (metadata, then every tensor's name, shape, type and offset) is written first, then
/// each tensor's data in declaration order, aligned to 32 bytes.
/// </summary>
internal sealed class GgufStreamWriter
{
    private const int Alignment = 32;
    private const uint TypeF32 = 0;
    private readonly List<(string Key, Action<BinaryWriter> Write)> _metadata = [];
    private readonly List<(string Name, long[] Shape, Action<Span<float>, long> Fill)> _tensors = [];

    public GgufStreamWriter String(string key, string value) => Add(key, 8, w => WriteString(w, value));

    public GgufStreamWriter UInt32(string key, uint value) => Add(key, 4, w => w.Write(value));

    public GgufStreamWriter Float32(string key, float value) => Add(key, 6, w => w.Write(value));

    public GgufStreamWriter Strings(string key, IReadOnlyList<string> values) => Add(key, 9, w =>
    {
        w.Write(8u);
        w.Write((ulong)values.Count);
        foreach (var v in values)
        {
            WriteString(w, v);
        }
    });

    public GgufStreamWriter Floats(string key, IReadOnlyList<float> values) => Add(key, 9, w =>
    {
        w.Write(6u);
        w.Write((ulong)values.Count);
        foreach (var v in values)
        {
            w.Write(v);
        }
    });

    public GgufStreamWriter Int32s(string key, IReadOnlyList<int> values) => Add(key, 9, w =>
    {
        w.Write(5u);
        w.Write((ulong)values.Count);
        foreach (var v in values)
        {
            w.Write(v);
        }
    });

    /// <summary>
    /// Declares an F32 tensor of row-major <paramref name="shape"/> (outermost first); <paramref name="fill"/> gets chunks of
    /// the tensor's values and the index of each chunk's first element.
    /// </summary>
    public GgufStreamWriter Tensor(string name, long[] shape, Action<Span<float>, long> fill)
    {
        _tensors.Add((name, shape, fill));
        return this;
    }

    /// <summary>Writes the file; returns its length.</summary>
    public long Write(string path)
    {
        using var stream = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20);
        using var w = new BinaryWriter(stream, Encoding.UTF8, leaveOpen: true);
        w.Write("GGUF"u8);
        w.Write(3u);
        w.Write((ulong)_tensors.Count);
        w.Write((ulong)_metadata.Count);
        foreach (var (key, write) in _metadata)
        {
            WriteString(w, key);
            write(w);
        }

        long offset = 0;
        foreach (var (name, shape, _) in _tensors)
        {
            WriteString(w, name);
            w.Write((uint)shape.Length);
            for (var d = shape.Length - 1; d >= 0; d--)
            {
                w.Write((ulong)shape[d]);
            }

            w.Write(TypeF32);
            w.Write((ulong)offset);
            offset += Align(Count(shape) * 4);
        }

        Pad(w);
        var chunk = new float[1 << 20];
        var bytes = new byte[chunk.Length * 4];
        foreach (var (_, shape, fill) in _tensors)
        {
            var count = Count(shape);
            for (long done = 0; done < count; done += chunk.Length)
            {
                var n = (int)Math.Min(chunk.Length, count - done);
                fill(chunk.AsSpan(0, n), done);
                for (var i = 0; i < n; i++)
                {
                    BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(i * 4), chunk[i]);
                }

                w.Write(bytes, 0, n * 4);
            }

            Pad(w);
        }

        w.Flush();
        return stream.Length;
    }

    private GgufStreamWriter Add(string key, uint type, Action<BinaryWriter> value)
    {
        _metadata.Add((key, w =>
        {
            w.Write(type);
            value(w);
        }));
        return this;
    }

    private static long Count(long[] shape)
    {
        long n = 1;
        foreach (var d in shape)
        {
            n *= d;
        }

        return n;
    }

    private static long Align(long n) => (n + Alignment - 1) / Alignment * Alignment;

    private static void Pad(BinaryWriter w)
    {
        while (w.BaseStream.Position % Alignment != 0)
        {
            w.Write((byte)0);
        }
    }

    private static void WriteString(BinaryWriter w, string s)
    {
        var b = Encoding.UTF8.GetBytes(s);
        w.Write((ulong)b.Length);
        w.Write(b);
    }
}
