using System.Buffers.Binary;
using System.Text;
using Petals.Formats;
using Petals.Formats.Gguf;
using Petals.Testing;

namespace Petals.Tests.Formats;

public sealed class GgufBadInputTests : IDisposable
{
    private readonly TempDirectory _dir = TestData.CreateTempDirectory();

    public void Dispose() => _dir.Dispose();

    private static GgufTestWriter Valid(int version = 3) => new GgufTestWriter(version)
        .AddU32("some.key", 7)
        .Add("some.array", GgufValueType.Array, new GgufArray(GgufValueType.Int32, new[] { 1, 2, 3 }))
        .Add("some.flag", GgufValueType.Bool, true)
        .AddTensor("tensor.one", GgufTensorType.F32, [2, 8], new byte[64])
        .AddTensor("tensor.two", GgufTensorType.F16, [32], new byte[64]);

    private static int Find(byte[] bytes, string text)
    {
        var i = bytes.AsSpan().IndexOf(Encoding.UTF8.GetBytes(text));
        Assert.True(i >= 0, text);
        return i;
    }

    private ModelFormatException Fails(byte[] bytes, string? field)
    {
        var path = Path.Combine(_dir.Path, Guid.NewGuid().ToString("N") + ".gguf");
        File.WriteAllBytes(path, bytes);
        return GgufFileTests.AssertFormat(() => GgufFile.Open(path), path, field);
    }

    [Fact]
    public void EmptyFileAndBadMagicAreRejected()
    {
        Fails([], "magic");
        var bytes = Valid().ToBytes();
        bytes[0] = (byte)'X';
        Fails(bytes, "magic");
    }

    [Theory]
    [InlineData(0u)]
    [InlineData(4u)]
    [InlineData(0x03000000u)]
    public void UnsupportedVersionIsRejected(uint version)
    {
        var bytes = Valid().ToBytes();
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(4), version);
        Fails(bytes, "version");
    }

    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    public void EveryTruncationBeforeTheLastTensorEndsIsRejected(int version)
    {
        var bytes = Valid(version).ToBytes();
        var path = Path.Combine(_dir.Path, "ok.gguf");
        File.WriteAllBytes(path, bytes);
        long end;
        using (var f = GgufFile.Open(path))
        {
            end = f.Tensors.Max(t => t.DataOffset + t.ByteSize);
        }

        for (var cut = 0; cut < end; cut++)
        {
            var ex = Fails(bytes[..cut], null);
            Assert.NotNull(ex.Field);
        }
    }

    [Fact]
    public void UnknownMetadataValueTypeIsRejectedNamingTheKey()
    {
        var bytes = Valid().ToBytes();
        var typeAt = Find(bytes, "some.key") + "some.key".Length;
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(typeAt), 13);
        var ex = Fails(bytes, "some.key");
        Assert.Contains("unknown metadata value type 13", ex.Message, StringComparison.Ordinal);

        bytes = Valid().ToBytes();
        var elemAt = Find(bytes, "some.array") + "some.array".Length + 4;
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(elemAt), 99);
        Fails(bytes, "some.array");
    }

    [Fact]
    public void AbsurdCountsAndLengthsAreRejectedWithoutAllocating()
    {
        var before = GC.GetAllocatedBytesForCurrentThread();

        var bytes = Valid().ToBytes();
        BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan(8), 1UL << 60);
        Fails(bytes, "tensor_count");

        bytes = Valid().ToBytes();
        BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan(16), (ulong)int.MaxValue);
        Fails(bytes, "metadata_kv_count");

        bytes = Valid().ToBytes();
        BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan(24), 1UL << 40);
        Fails(bytes, "metadata entry 0 key");

        bytes = Valid().ToBytes();
        var countAt = Find(bytes, "some.array") + "some.array".Length + 8;
        BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan(countAt), 1UL << 61);
        Fails(bytes, "some.array");

        bytes = Valid(1).ToBytes();
        countAt = Find(bytes, "some.array") + "some.array".Length + 8;
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(countAt), uint.MaxValue);
        Fails(bytes, "some.array");

        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 16 << 20, "rejecting absurd counts must not allocate large arrays");
    }

    [Fact]
    public void DeeplyNestedArraysAreRejected()
    {
        object value = new GgufArray(GgufValueType.UInt8, new byte[] { 1 });
        for (var i = 0; i < GgufHeaderReader.MaxArrayDepth + 1; i++)
        {
            value = new GgufArray(GgufValueType.Array, new[] { (GgufArray)value });
        }

        var bytes = new GgufTestWriter(3).Add("deep", GgufValueType.Array, value).ToBytes();
        var ex = Fails(bytes, "deep");
        Assert.Contains("nested", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void BadScalarsAreRejected()
    {
        var bytes = Valid().ToBytes();
        bytes[Find(bytes, "some.flag") + "some.flag".Length + 4] = 2;
        Fails(bytes, "some.flag");

        var invalidUtf8 = new GgufTestWriter(3).AddString("text", "abcd").ToBytes();
        invalidUtf8[Find(invalidUtf8, "abcd")] = 0xFF;
        Fails(invalidUtf8, "text");

        Fails(new GgufTestWriter(3).AddU32("dup", 1).AddU32("dup", 2).ToBytes(), "dup");
        Fails(new GgufTestWriter(3).AddU32(GgufFile.AlignmentKey, 24).ToBytes(), GgufFile.AlignmentKey);
        Fails(new GgufTestWriter(3).AddString(GgufFile.AlignmentKey, "32").ToBytes(), GgufFile.AlignmentKey);
    }

    [Fact]
    public void BadTensorInfosAreRejectedNamingTheTensor()
    {
        // Layout after the name: n_dims (4), dims (8 each), type (4), offset (8).
        var bytes = Valid().ToBytes();
        var at = Find(bytes, "tensor.two") + "tensor.two".Length;
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(at), 5);
        Fails(bytes, "tensor.two");

        bytes = Valid().ToBytes();
        BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan(at + 4), 0);
        Fails(bytes, "tensor.two");

        bytes = Valid().ToBytes();
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(at + 12), 99);
        var ex = Fails(bytes, "tensor.two");
        Assert.Contains("99", ex.Message, StringComparison.Ordinal);

        bytes = Valid().ToBytes();
        BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan(at + 16), 4096);
        ex = Fails(bytes, "tensor.two");
        Assert.Contains("past the end", ex.Message, StringComparison.Ordinal);

        bytes = Valid().ToBytes();
        BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan(at + 16), 65);
        ex = Fails(bytes, "tensor.two");
        Assert.Contains("alignment", ex.Message, StringComparison.Ordinal);

        bytes = Valid().ToBytes();
        BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan(at + 4), ulong.MaxValue / 2);
        Fails(bytes, "tensor.two");

        // A Q8_0 row must be a whole number of blocks.
        Fails(new GgufTestWriter(3).AddTensor("q", GgufTensorType.Q8_0, [2, 16], new byte[68]).ToBytes(), "q");
        Fails(new GgufTestWriter(3).AddTensor("x", GgufTensorType.F32, [4], new byte[16]).AddTensor("x", GgufTensorType.F32, [4], new byte[16]).ToBytes(), "x");
    }
}
