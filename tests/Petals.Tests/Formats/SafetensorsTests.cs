using System.Buffers.Binary;
using System.Text;
using Petals.Formats;
using Petals.Formats.Safetensors;
using Petals.Tensors;
using Petals.Testing;

namespace Petals.Tests.Formats;

public sealed class SafetensorsTests : IDisposable
{
    private readonly TempDirectory _dir = TestData.CreateTempDirectory();

    public void Dispose() => _dir.Dispose();

    internal static List<WeightTensor> SampleTensors(int seed)
    {
        var rng = new Random(seed);
        var values = TestEncodings.Random(rng, 12, 3f);
        var i8 = new byte[6];
        rng.NextBytes(i8);
        var i32 = new byte[4 * 3];
        rng.NextBytes(i32);
        var i64 = new byte[8 * 2];
        rng.NextBytes(i64);
        return
        [
            new(new TensorDescriptor("f32", TensorDType.F32, [3, 4]), TestEncodings.F32(values)),
            new(new TensorDescriptor("f16", TensorDType.F16, [2, 6]), TestEncodings.F16(values)),
            new(new TensorDescriptor("bf16", TensorDType.BF16, [12]), TestEncodings.BF16(values)),
            new(new TensorDescriptor("i8", TensorDType.I8, [2, 3]), i8),
            new(new TensorDescriptor("i32", TensorDType.I32, [3]), i32),
            new(new TensorDescriptor("i64", TensorDType.I64, [2, 1]), i64),
            new(new TensorDescriptor("scalar", TensorDType.F32, []), TestEncodings.F32([42f])),
            new(new TensorDescriptor("empty", TensorDType.F16, [0, 5]), Array.Empty<byte>()),
        ];
    }

    [Fact]
    public void EveryDTypeRoundTripsBitwiseWithMetadata()
    {
        var path = Path.Combine(_dir.Path, "a.safetensors");
        var tensors = SampleTensors(1);
        var metadata = new Dictionary<string, string> { ["format"] = "pt", ["note"] = "ünïcode" };
        SafetensorsWriter.Write(path, tensors, metadata);
        using var f = SafetensorsFile.Open(path);
        Assert.Equal(0, f.DataOffset % 8);
        Assert.Equal(metadata, f.Metadata);
        Assert.Equal(tensors.Count, f.Tensors.Count);
        foreach (var t in tensors)
        {
            Assert.Equal(t.Descriptor, f.Tensors[t.Descriptor.Name] with { }, new DescriptorComparer());
            Assert.Equal(t.Data.ToArray(), f.GetTensorData(t.Descriptor.Name).ToArray());
            Assert.Equal(t.Data.ToArray(), f.GetTensor(t.Descriptor.Name).Data.ToArray());
        }

        Assert.Throws<KeyNotFoundException>(() => f.GetTensorData("nope"));

        // The header length field plus header is a multiple of 8 and the header is padded with spaces.
        var bytes = File.ReadAllBytes(path);
        var n = (int)BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        Assert.Equal(0, (8 + n) % 8);
        Assert.EndsWith("}", Encoding.UTF8.GetString(bytes, 8, n).TrimEnd(' '), StringComparison.Ordinal);
    }

    [Fact]
    public void F16AndBF16DecodeToTheExpectedFloats()
    {
        var path = Path.Combine(_dir.Path, "h.safetensors");
        float[] values = [1f, -2f, 0.5f, 65504f, 1.0009765625f, -0.0f];
        SafetensorsWriter.Write(path, [
            new(new TensorDescriptor("h", TensorDType.F16, [6]), TestEncodings.F16(values)),
            new(new TensorDescriptor("b", TensorDType.BF16, [6]), TestEncodings.BF16(values))]);
        using var f = SafetensorsFile.Open(path);
        var h = new float[6];
        var b = new float[6];
        Petals.Formats.TensorConversions.HalfToSingle(f.GetTensorData("h").Span, h);
        Petals.Formats.TensorConversions.BFloat16ToSingle(f.GetTensorData("b").Span, b);
        Assert.Equal(values, h);
        Assert.Equal([1f, -2f, 0.5f, 65536f, 1f, -0.0f], b);
    }

    [Fact]
    public void WriterEnforcesOrderSizesAndCompletion()
    {
        var path = Path.Combine(_dir.Path, "w.safetensors");
        TensorDescriptor[] descriptors = [new("a", TensorDType.F32, [2]), new("b", TensorDType.F32, [1])];
        using (var w = SafetensorsWriter.Create(path, descriptors))
        {
            Assert.Throws<InvalidOperationException>(() => w.WriteTensor("b", new byte[4]));
            Assert.Throws<ArgumentException>(() => w.WriteTensor("a", new byte[4]));
            w.WriteTensor("a", new byte[8]);
            Assert.Throws<InvalidOperationException>(w.Complete);
        }

        Assert.False(File.Exists(path), "an incomplete file is deleted");
        Assert.Throws<ArgumentException>(() => SafetensorsWriter.Create(path, [new("a", TensorDType.F32, [1]), new("a", TensorDType.F32, [1])]));
        Assert.Throws<ArgumentException>(() => SafetensorsWriter.Create(path, [new("q", TensorDType.Q8_0, [32])]));
    }

    private string WriteRaw(byte[] header, int dataBytes = 64, ulong? length = null)
    {
        var path = Path.Combine(_dir.Path, Guid.NewGuid().ToString("N") + ".safetensors");
        var bytes = new byte[8 + header.Length + dataBytes];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, length ?? (ulong)header.Length);
        header.CopyTo(bytes, 8);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    private string WriteJson(string json, int dataBytes = 64) => WriteRaw(Encoding.UTF8.GetBytes(json), dataBytes);

    private static ModelFormatException Fails(string path, string? field) =>
        GgufFileTests.AssertFormat(() => SafetensorsFile.Open(path), path, field);

    [Fact]
    public void HeaderLengthProblemsAreRejected()
    {
        var tiny = Path.Combine(_dir.Path, "tiny.safetensors");
        File.WriteAllBytes(tiny, [1, 2, 3]);
        Fails(tiny, "header length");
        Fails(WriteRaw("{}"u8.ToArray(), 0, length: 1000), "header length");
        Fails(WriteRaw("{}"u8.ToArray(), 0, length: ulong.MaxValue), "header length");
        Fails(WriteRaw("{}"u8.ToArray(), 0, length: SafetensorsFile.MaxHeaderLength + 1), "header length");
        Fails(WriteRaw("{}"u8.ToArray(), 0, length: 0), "header length");
    }

    [Theory]
    [InlineData("{\"a\": ", "header")]
    [InlineData("not json at all", "header")]
    [InlineData("[1, 2]", "header")]
    [InlineData("{\"a\": {\"dtype\": \"F8\", \"shape\": [1], \"data_offsets\": [0, 1]}}", "a")]
    [InlineData("{\"a\": {\"dtype\": \"F64\", \"shape\": [1], \"data_offsets\": [0, 8]}}", "a")]
    [InlineData("{\"a\": {\"dtype\": 3, \"shape\": [1], \"data_offsets\": [0, 4]}}", "a")]
    [InlineData("{\"a\": {\"dtype\": \"F32\", \"data_offsets\": [0, 4]}}", "a")]
    [InlineData("{\"a\": {\"dtype\": \"F32\", \"shape\": [-1], \"data_offsets\": [0, 4]}}", "a")]
    [InlineData("{\"a\": {\"dtype\": \"F32\", \"shape\": [1.5], \"data_offsets\": [0, 4]}}", "a")]
    [InlineData("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 400]}}", "a")]
    [InlineData("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [60, 68]}}", "a")]
    [InlineData("{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 4]}}", "a")]
    [InlineData("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [8, 4]}}", "a")]
    [InlineData("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0]}}", "a")]
    [InlineData("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4], \"extra\": 1}}", "a")]
    [InlineData("{\"a\": {\"dtype\": \"F32\", \"shape\": [4611686018427387904, 4], \"data_offsets\": [0, 4]}}", "a")]
    [InlineData("{\"a\": 5}", "a")]
    [InlineData("{\"a\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]}, \"b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [8, 16]}}", "b")]
    [InlineData("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}, \"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}}", "a")]
    [InlineData("{\"__metadata__\": {\"k\": 1}}", "__metadata__.k")]
    [InlineData("{\"__metadata__\": [1]}", "__metadata__")]
    public void BadHeadersAreRejectedNamingTheField(string json, string field) => Fails(WriteJson(json), field);

    [Fact]
    public void InvalidUtf8InTheHeaderIsRejected()
    {
        var header = Encoding.UTF8.GetBytes("{\"aX\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}");
        header[3] = 0xFF;
        Fails(WriteRaw(header), null);
    }

    [Fact]
    public void TruncatedDataIsRejectedNamingTheTensor()
    {
        var path = Path.Combine(_dir.Path, "t.safetensors");
        SafetensorsWriter.Write(path, SampleTensors(2));
        var bytes = File.ReadAllBytes(path);
        var cut = Path.Combine(_dir.Path, "cut.safetensors");
        for (var len = 0; len < bytes.Length; len++)
        {
            File.WriteAllBytes(cut, bytes[..len]);
            var ex = Fails(cut, null);
            Assert.NotNull(ex.Field);
        }
    }

    [Fact]
    public void ShardedIndexIsReadAndValidated()
    {
        var path = Path.Combine(_dir.Path, SafetensorsIndex.FileName);
        new SafetensorsIndex(new Dictionary<string, string> { ["a"] = "s1.safetensors", ["b"] = "s2.safetensors", ["c"] = "s1.safetensors" }, new Dictionary<string, string>()).Write(path, 123);
        var index = SafetensorsIndex.Read(path);
        Assert.Equal(["s1.safetensors", "s2.safetensors"], index.Shards);
        Assert.Equal("s2.safetensors", index.WeightMap["b"]);
        Assert.Equal("123", index.Metadata["total_size"]);

        File.WriteAllText(path, "{\"weight_map\": {\"a\": \"../evil.safetensors\"}}");
        GgufFileTests.AssertFormat(() => SafetensorsIndex.Read(path), path, "weight_map.a");
        File.WriteAllText(path, "{\"weight_map\": {\"a\": 3}}");
        GgufFileTests.AssertFormat(() => SafetensorsIndex.Read(path), path, "weight_map.a");
        File.WriteAllText(path, "{\"metadata\": {}}");
        GgufFileTests.AssertFormat(() => SafetensorsIndex.Read(path), path, "weight_map");
        File.WriteAllText(path, "{\"weight_map\": ");
        GgufFileTests.AssertFormat(() => SafetensorsIndex.Read(path), path, null);
    }

    private sealed class DescriptorComparer : IEqualityComparer<TensorDescriptor>
    {
        public bool Equals(TensorDescriptor? x, TensorDescriptor? y) =>
            x!.Name == y!.Name && x.DType == y.DType && x.Shape.SequenceEqual(y.Shape);

        public int GetHashCode(TensorDescriptor obj) => obj.Name.GetHashCode(StringComparison.Ordinal);
    }
}
