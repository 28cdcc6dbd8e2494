using System.Buffers.Binary;
using Petals.Formats;
using Petals.Formats.Gguf;
using Petals.Testing;

namespace Petals.Tests.Formats;

public sealed class GgufFileTests
{
    private static GgufTestWriter AllTypes(int version, int alignment = 32)
    {
        var w = new GgufTestWriter(version, alignment)
            .Add("u8", GgufValueType.UInt8, (byte)200)
            .Add("i8", GgufValueType.Int8, (sbyte)-5)
            .Add("u16", GgufValueType.UInt16, (ushort)60000)
            .Add("i16", GgufValueType.Int16, (short)-30000)
            .Add("u32", GgufValueType.UInt32, 4000000000u)
            .Add("i32", GgufValueType.Int32, -2000000000)
            .Add("f32", GgufValueType.Float32, 1.5f)
            .Add("bool", GgufValueType.Bool, true)
            .Add("str", GgufValueType.String, "héllo ✓")
            .Add("u64", GgufValueType.UInt64, ulong.MaxValue)
            .Add("i64", GgufValueType.Int64, long.MinValue)
            .Add("f64", GgufValueType.Float64, Math.PI)
            .Add("arr.str", GgufValueType.Array, new GgufArray(GgufValueType.String, new[] { "a", "", "ccc" }))
            .Add("arr.f32", GgufValueType.Array, new GgufArray(GgufValueType.Float32, new[] { 1f, -2.5f }))
            .Add("arr.i32", GgufValueType.Array, new GgufArray(GgufValueType.Int32, new[] { 7, -8, 9 }))
            .Add("arr.u8", GgufValueType.Array, new GgufArray(GgufValueType.UInt8, new byte[] { 1, 2, 3 }))
            .Add("arr.bool", GgufValueType.Array, new GgufArray(GgufValueType.Bool, new[] { true, false }))
            .Add("arr.nested", GgufValueType.Array, new GgufArray(GgufValueType.Array, new[]
            {
                new GgufArray(GgufValueType.Int64, new[] { 1L, 2L }),
                new GgufArray(GgufValueType.Int64, Array.Empty<long>()),
            }));
        return w;
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void MetadataOfEveryTypeRoundTrips(int version)
    {
        using var dir = TestData.CreateTempDirectory();
        var path = AllTypes(version).Write(Path.Combine(dir.Path, "m.gguf"));
        using var f = GgufFile.Open(path);
        Assert.Equal(version, f.Version);
        Assert.Equal(32, f.Alignment);
        Assert.Equal((byte)200, f.Metadata["u8"].Value);
        Assert.Equal((sbyte)-5, f.Metadata["i8"].Value);
        Assert.Equal((ushort)60000, f.Metadata["u16"].Value);
        Assert.Equal((short)-30000, f.Metadata["i16"].Value);
        Assert.Equal(4000000000u, f.Metadata["u32"].Value);
        Assert.Equal(GgufValueType.UInt32, f.Metadata["u32"].Type);
        Assert.Equal(-2000000000, f.GetInt32("i32"));
        Assert.Equal(4000000000L, f.GetInt64("u32"));
        Assert.Equal(1.5f, f.GetSingle("f32"));
        Assert.Equal(true, f.GetBoolean("bool"));
        Assert.Equal("héllo ✓", f.GetString("str"));
        Assert.Equal(ulong.MaxValue, f.Metadata["u64"].Value);
        Assert.Equal(long.MinValue, f.GetInt64("i64"));
        Assert.Equal(Math.PI, f.GetDouble("f64"));
        Assert.Equal(["a", "", "ccc"], f.GetStringArray("arr.str")!);
        Assert.Equal([1f, -2.5f], f.GetSingleArray("arr.f32")!);
        Assert.Equal([7, -8, 9], f.GetInt32Array("arr.i32")!);
        Assert.Equal([1, 2, 3], f.GetInt32Array("arr.u8")!);
        Assert.Equal(new[] { true, false }, (bool[])f.Metadata["arr.bool"].Value);
        var nested = (GgufMetadataValue[])f.Metadata["arr.nested"].Value;
        Assert.Equal(GgufValueType.Array, f.Metadata["arr.nested"].ElementType);
        Assert.Equal(2, nested.Length);
        Assert.Equal(new[] { 1L, 2L }, (long[])nested[0].Value);
        Assert.Empty((long[])nested[1].Value);
        Assert.Null(f.GetString("absent"));
        Assert.Null(f.GetInt32("absent"));
    }

    [Fact]
    public void TypedAccessorsRejectWrongTypesNamingTheKey()
    {
        using var dir = TestData.CreateTempDirectory();
        var path = AllTypes(3).Write(Path.Combine(dir.Path, "m.gguf"));
        using var f = GgufFile.Open(path);
        AssertFormat(() => f.GetString("u32"), path, "u32");
        AssertFormat(() => f.GetInt64("str"), path, "str");
        AssertFormat(() => f.GetInt64("u64"), path, "u64");
        AssertFormat(() => f.GetInt32("u32"), path, "u32");
        AssertFormat(() => f.GetDouble("bool"), path, "bool");
        AssertFormat(() => f.GetBoolean("f32"), path, "f32");
        AssertFormat(() => f.GetStringArray("arr.f32"), path, "arr.f32");
        AssertFormat(() => f.GetSingleArray("arr.str"), path, "arr.str");
        AssertFormat(() => f.GetInt32Array("arr.nested"), path, "arr.nested");
    }

    [Theory]
    [InlineData(1, 32)]
    [InlineData(2, 64)]
    [InlineData(3, 32)]
    [InlineData(3, 256)]
    public void TensorsRoundTripBitwiseWithRowMajorShapes(int version, int alignment)
    {
        using var dir = TestData.CreateTempDirectory();
        var rng = new Random(version * 1000 + alignment);
        var f32 = TestEncodings.F32(TestEncodings.Random(rng, 3 * 5));
        var f16 = TestEncodings.F16(TestEncodings.Random(rng, 2 * 3 * 4));
        var q8 = TestEncodings.Q8_0(TestEncodings.Random(rng, 4 * 64));
        var path = AllTypes(version, alignment)
            .AddTensor("a", GgufTensorType.F32, [3, 5], f32)
            .AddTensor("b", GgufTensorType.F16, [2, 3, 4], f16)
            .AddTensor("c", GgufTensorType.Q8_0, [4, 64], q8)
            .Write(Path.Combine(dir.Path, "t.gguf"));
        using var f = GgufFile.Open(path);
        Assert.Equal(alignment, f.Alignment);
        Assert.Equal(0, f.DataOffset % alignment);
        Assert.Equal(["a", "b", "c"], f.Tensors.Select(t => t.Name));
        Assert.True(f.TryGetTensor("b", out var b));
        Assert.Equal([2L, 3L, 4L], b.Shape);
        Assert.Equal(24, b.ElementCount);
        Assert.Equal(GgufTensorType.F16, b.Type);
        Assert.Equal(f32, f.GetTensorData(f.Tensors[0]).ToArray());
        Assert.Equal(f16, f.GetTensorData(b).ToArray());
        Assert.Equal(q8, f.GetTensorData(f.Tensors[2]).ToArray());
        Assert.Equal(4 * 2 * 34, f.Tensors[2].ByteSize);
        Assert.Equal([4L, 64L], f.Tensors[2].Shape);

        var singles = f.ReadSingles(b);
        for (var i = 0; i < singles.Length; i++)
        {
            Assert.Equal((float)BinaryPrimitives.ReadHalfLittleEndian(f16.AsSpan(i * 2)), singles[i]);
        }

        Assert.Equal(TestEncodings.DequantizeQ8_0(q8), f.ReadSingles(f.Tensors[2]));
    }

    [Fact]
    public void Q8_0DequantizesToExactValues()
    {
        // One block: scale 0.5 (fp16 0x3800); q = -128, -1, 0, 1, 127, then i - 16 for the rest.
        var block = new byte[34];
        BinaryPrimitives.WriteUInt16LittleEndian(block, 0x3800);
        var q = new sbyte[32];
        for (var i = 0; i < 32; i++)
        {
            q[i] = (sbyte)(i - 16);
        }

        q[0] = -128;
        q[1] = -1;
        q[2] = 0;
        q[3] = 1;
        q[4] = 127;
        for (var i = 0; i < 32; i++)
        {
            block[2 + i] = (byte)q[i];
        }

        // Second block: scale -0.25 (fp16 0xB400), all q = 3.
        var block2 = new byte[34];
        BinaryPrimitives.WriteUInt16LittleEndian(block2, 0xB400);
        block2.AsSpan(2).Fill(3);
        using var dir = TestData.CreateTempDirectory();
        var path = new GgufTestWriter(3).AddTensor("q", GgufTensorType.Q8_0, [64], [.. block, .. block2]).Write(Path.Combine(dir.Path, "q.gguf"));
        using var f = GgufFile.Open(path);
        var values = f.ReadSingles(f.Tensors[0]);
        Assert.Equal(-64f, values[0]);
        Assert.Equal(-0.5f, values[1]);
        Assert.Equal(0f, values[2]);
        Assert.Equal(0.5f, values[3]);
        Assert.Equal(63.5f, values[4]);
        for (var i = 5; i < 32; i++)
        {
            Assert.Equal((i - 16) * 0.5f, values[i]);
        }

        for (var i = 32; i < 64; i++)
        {
            Assert.Equal(-0.75f, values[i]);
        }
    }

    [Fact]
    public void UnsupportedTensorTypeIsReportedWithTensorAndType()
    {
        using var dir = TestData.CreateTempDirectory();
        var path = new GgufTestWriter(3).AddTensor("blk.0.attn_q.weight", GgufTensorType.IQ4_XS, [256], new byte[136]).Write(Path.Combine(dir.Path, "k.gguf"));
        using var f = GgufFile.Open(path);
        Assert.Equal(136, f.Tensors[0].ByteSize);
        var ex = AssertFormat(() => f.ReadSingles(f.Tensors[0]), path, "blk.0.attn_q.weight");
        Assert.Contains("IQ4_XS is not supported", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void TokenizerMetadataIsExposed()
    {
        using var dir = TestData.CreateTempDirectory();
        var w = new GgufTestWriter(3)
            .AddString("tokenizer.ggml.model", "gpt2")
            .AddString("tokenizer.ggml.pre", "llama-bpe")
            .Add("tokenizer.ggml.tokens", GgufValueType.Array, new GgufArray(GgufValueType.String, new[] { "a", "b", "ab", "<pad>" }))
            .Add("tokenizer.ggml.scores", GgufValueType.Array, new GgufArray(GgufValueType.Float32, new[] { 0f, -1f, -2f, 0f }))
            .Add("tokenizer.ggml.token_type", GgufValueType.Array, new GgufArray(GgufValueType.Int32, new[] { 1, 1, 1, 3 }))
            .Add("tokenizer.ggml.merges", GgufValueType.Array, new GgufArray(GgufValueType.String, new[] { "a b" }))
            .AddU32("tokenizer.ggml.bos_token_id", 0)
            .AddU32("tokenizer.ggml.eos_token_id", 1)
            .AddU32("tokenizer.ggml.unknown_token_id", 2)
            .AddU32("tokenizer.ggml.padding_token_id", 3)
            .Add("tokenizer.ggml.add_bos_token", GgufValueType.Bool, true)
            .Add("tokenizer.ggml.add_space_prefix", GgufValueType.Bool, false);
        var path = w.Write(Path.Combine(dir.Path, "tok.gguf"));
        using var f = GgufFile.Open(path);
        var t = f.Tokenizer;
        Assert.Equal("gpt2", t.Model);
        Assert.Equal("llama-bpe", t.PreTokenizer);
        Assert.Equal(["a", "b", "ab", "<pad>"], t.Tokens!);
        Assert.Equal([0f, -1f, -2f, 0f], t.Scores!);
        Assert.Equal([1, 1, 1, 3], t.TokenTypes!);
        Assert.Equal(["a b"], t.Merges!);
        Assert.Equal(0, t.BosTokenId);
        Assert.Equal(1, t.EosTokenId);
        Assert.Equal(2, t.UnknownTokenId);
        Assert.Equal(3, t.PaddingTokenId);
        Assert.True(t.AddBosToken);
        Assert.False(t.AddSpacePrefix);
        Assert.Null(t.AddEosToken);
    }

    [Fact]
    public void TokenizerArraysOfDifferentLengthsAreRejected()
    {
        using var dir = TestData.CreateTempDirectory();
        var path = new GgufTestWriter(3)
            .Add("tokenizer.ggml.tokens", GgufValueType.Array, new GgufArray(GgufValueType.String, new[] { "a", "b" }))
            .Add("tokenizer.ggml.scores", GgufValueType.Array, new GgufArray(GgufValueType.Float32, new[] { 0f }))
            .Write(Path.Combine(dir.Path, "tok.gguf"));
        using var f = GgufFile.Open(path);
        AssertFormat(() => f.Tokenizer, path, "tokenizer.ggml.scores");

        var path2 = new GgufTestWriter(3)
            .Add("tokenizer.ggml.tokens", GgufValueType.Array, new GgufArray(GgufValueType.String, new[] { "a", "b" }))
            .AddU32("tokenizer.ggml.eos_token_id", 2)
            .Write(Path.Combine(dir.Path, "tok2.gguf"));
        using var f2 = GgufFile.Open(path2);
        AssertFormat(() => f2.Tokenizer, path2, "tokenizer.ggml.eos_token_id");
    }

    internal static ModelFormatException AssertFormat(Func<object?> action, string path, string? field)
    {
        var ex = Assert.Throws<ModelFormatException>(action);
        Assert.Equal(path, ex.FilePath);
        Assert.Contains(path, ex.Message, StringComparison.Ordinal);
        if (field is not null)
        {
            Assert.Equal(field, ex.Field);
            Assert.Contains(field, ex.Message, StringComparison.Ordinal);
        }

        return ex;
    }
}
