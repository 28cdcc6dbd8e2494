using System.Buffers.Binary;
using FsCheck;
using FsCheck.Fluent;
using Petals.Protocol;

namespace Petals.Tests.Protocol;

/// <summary>The 8-bit blockwise wire codec (docs/wire-protocol.md §3.1): layout, error bound, non-finite values, bad scales.</summary>
[Collection(ProtocolTestGroup.Name)]
public sealed class Int8BlockwiseCodecTests
{
    private const int Block = HiddenStateCodec.Int8BlockSize;

    /// <summary>The stated relative slack of the bound: <c>a / 254 · (1 + 2^-14) + 2^-140</c>.</summary>
    private static readonly double Epsilon = Math.Pow(2, -14);

    private static readonly double Additive = Math.Pow(2, -140);

    private static readonly ProtocolLimits Limits = new() { MaxFrameSize = 1 << 16, MaxMessageSize = 1 << 20 };

    /// <summary>Values of every kind: wide magnitudes, zeros, tiny subnormals, outliers, and (when asked) NaN and infinities.</summary>
    private static float[] Values(int seed, int length, bool nonFinite)
    {
        var random = new Random(seed);
        var values = new float[length];
        var blockExponent = 0;
        for (var i = 0; i < length; i++)
        {
            if (i % Block == 0)
            {
                blockExponent = random.Next(-150, 120);
            }

            values[i] = random.Next(20) switch
            {
                0 => 0f,
                1 => BitConverter.Int32BitsToSingle(random.Next(int.MinValue, int.MaxValue)) is var f && (nonFinite || float.IsFinite(f)) ? f : 1f,
                2 when nonFinite => random.Next(3) switch { 0 => float.NaN, 1 => float.PositiveInfinity, _ => float.NegativeInfinity },
                3 => (float)((random.NextDouble() - 0.5) * Math.Pow(2, Math.Min(blockExponent + 7, 127))), // an outlier
                _ => (float)((random.NextDouble() - 0.5) * Math.Pow(2, blockExponent)),
            };
        }

        return values;
    }

    /// <summary>An independent scalar reference of the layout: fp32 scales first, then the codes.</summary>
    private static byte[] Reference(float[] values)
    {
        var blocks = (values.Length + Block - 1) / Block;
        var bytes = new byte[(blocks * 4) + values.Length];
        for (var b = 0; b < blocks; b++)
        {
            var block = values.AsSpan(b * Block, Math.Min(Block, values.Length - (b * Block)));
            var absmax = 0f;
            foreach (var v in block)
            {
                if (float.IsFinite(v))
                {
                    absmax = Math.Max(absmax, Math.Abs(v));
                }
            }

            var scale = absmax / 127f;
            BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(b * 4), scale);
            for (var i = 0; i < block.Length; i++)
            {
                var code = !float.IsFinite(block[i]) ? -128 : scale == 0 ? 0 : Math.Clamp((int)Math.Round(block[i] / scale, MidpointRounding.ToEven), -127, 127);
                bytes[(blocks * 4) + (b * Block) + i] = (byte)(sbyte)code;
            }
        }

        return bytes;
    }

    [Fact]
    public void EveryFiniteElementIsWithinAbsmaxOver254AndNonFiniteOnesArriveAsNaN() =>
        Prop.ForAll(Gen.Choose(0, int.MaxValue).ToArbitrary(), Gen.Choose(0, 300).ToArbitrary(), Gen.Elements(false, true).ToArbitrary(), (seed, length, nonFinite) =>
        {
            var values = Values(seed, length, nonFinite);
            var bytes = new byte[HiddenStateCodec.PayloadBytes(WireCodec.Int8Blockwise, length)];
            HiddenStateCodec.Encode(values, WireCodec.Int8Blockwise, bytes);
            var back = new float[length];
            HiddenStateCodec.Decode(bytes, WireCodec.Int8Blockwise, back);
            for (var b = 0; b * Block < length; b++)
            {
                var start = b * Block;
                var end = Math.Min(length, start + Block);
                var absmax = 0.0;
                for (var i = start; i < end; i++)
                {
                    if (float.IsFinite(values[i]))
                    {
                        absmax = Math.Max(absmax, Math.Abs((double)values[i]));
                    }
                }

                var bound = (absmax / 254 * (1 + Epsilon)) + Additive;
                for (var i = start; i < end; i++)
                {
                    if (!float.IsFinite(values[i]))
                    {
                        Assert.True(float.IsNaN(back[i]), $"seed {seed} length {length}: element {i} was {values[i]} and decoded to {back[i]}, not NaN.");
                        continue;
                    }

                    var error = Math.Abs((double)values[i] - back[i]);
                    Assert.True(error <= bound, $"seed {seed} length {length}: element {i} {values[i]:R} decoded to {back[i]:R}, error {error:R} above {bound:R} (block absmax {absmax:R}).");
                    Assert.True(float.IsFinite(back[i]));
                }
            }
        }).Check(Config.QuickThrowOnFailure.WithMaxTest(400));

    [Fact]
    public void TheVectorEncodingMatchesTheScalarReferenceByteForByte() =>
        Prop.ForAll(Gen.Choose(0, int.MaxValue).ToArbitrary(), Gen.Choose(0, 300).ToArbitrary(), (seed, length) =>
        {
            var values = Values(seed, length, nonFinite: seed % 2 == 0);
            var bytes = new byte[HiddenStateCodec.PayloadBytes(WireCodec.Int8Blockwise, length)];
            HiddenStateCodec.Encode(values, WireCodec.Int8Blockwise, bytes);
            Assert.Equal(Reference(values), bytes);
        }).Check(Config.QuickThrowOnFailure.WithMaxTest(300));

    [Fact]
    public void TheBoundIsTightForValuesHalfwayBetweenCodes()
    {
        // Block absmax 127 gives scale 1: 0.49 is 0.49 away from its code 0, so the error reaches ~a/254 · 0.98.
        var values = new float[Block];
        values[0] = 127f;
        for (var i = 1; i < Block; i++)
        {
            values[i] = i + 0.49f - 64;
        }

        var bytes = new byte[HiddenStateCodec.PayloadBytes(WireCodec.Int8Blockwise, Block)];
        HiddenStateCodec.Encode(values, WireCodec.Int8Blockwise, bytes);
        var back = new float[Block];
        HiddenStateCodec.Decode(bytes, WireCodec.Int8Blockwise, back);
        Assert.Equal(1f, BinaryPrimitives.ReadSingleLittleEndian(bytes));
        Assert.Equal(127f, back[0]);
        var worst = values.Zip(back).Max(p => Math.Abs(p.First - p.Second));
        Assert.InRange(worst, 0.489, 0.5 * (1 + Epsilon));
    }

    [Theory]
    [InlineData(0, 0)]
    [InlineData(1, 5)]
    [InlineData(64, 68)]
    [InlineData(65, 73)]
    [InlineData(4096, 4096 + 256)]
    public void PayloadIsOneByteAnElementPlusAScalePerBlock(int count, long bytes)
    {
        Assert.Equal(bytes, HiddenStateCodec.PayloadBytes(WireCodec.Int8Blockwise, count));
        Assert.Equal(count * 2L, HiddenStateCodec.PayloadBytes(WireCodec.Fp16, count));
        Assert.Throws<ArgumentException>(() => HiddenStateCodec.ElementSize(WireCodec.Int8Blockwise));
    }

    [Fact]
    public void NonFiniteValuesGetTheMarkerAndTheScaleComesFromTheFiniteOnes()
    {
        float[] values = [float.NaN, 2f, float.PositiveInfinity, -1f, float.NegativeInfinity];
        var bytes = new byte[HiddenStateCodec.PayloadBytes(WireCodec.Int8Blockwise, values.Length)];
        HiddenStateCodec.Encode(values, WireCodec.Int8Blockwise, bytes);
        Assert.Equal(2f / 127f, BinaryPrimitives.ReadSingleLittleEndian(bytes));
        Assert.Equal(new byte[] { 0x80, 127, 0x80, unchecked((byte)-64), 0x80 }, bytes[4..]);
        var back = new float[values.Length];
        HiddenStateCodec.Decode(bytes, WireCodec.Int8Blockwise, back);
        Assert.True(float.IsNaN(back[0]) && float.IsNaN(back[2]) && float.IsNaN(back[4]));
        Assert.Equal(2f, back[1], 1e-6f);
        Assert.Equal(-64 * (2f / 127f), back[3]);

        // A whole block of NaN: scale 0, every code the marker; a full vector-width block takes the same path.
        var all = Enumerable.Repeat(float.NaN, Block).ToArray();
        var allBytes = new byte[HiddenStateCodec.PayloadBytes(WireCodec.Int8Blockwise, Block)];
        HiddenStateCodec.Encode(all, WireCodec.Int8Blockwise, allBytes);
        Assert.Equal(0f, BinaryPrimitives.ReadSingleLittleEndian(allBytes));
        Assert.All(allBytes[4..], b => Assert.Equal(0x80, b));
        var allBack = new float[Block];
        HiddenStateCodec.Decode(allBytes, WireCodec.Int8Blockwise, allBack);
        Assert.All(allBack, v => Assert.True(float.IsNaN(v)));
    }

    [Fact]
    public void AZeroBlockHasScaleZeroAndDecodesToZeros()
    {
        var values = new float[Block + 3];
        values[Block + 1] = -0f;
        var bytes = new byte[HiddenStateCodec.PayloadBytes(WireCodec.Int8Blockwise, values.Length)];
        HiddenStateCodec.Encode(values, WireCodec.Int8Blockwise, bytes);
        Assert.All(bytes, b => Assert.Equal(0, b));
        var back = Enumerable.Repeat(9f, values.Length).ToArray();
        HiddenStateCodec.Decode(bytes, WireCodec.Int8Blockwise, back);
        Assert.All(back, v => Assert.Equal(0f, v));
    }

    [Theory]
    [InlineData(float.NaN)]
    [InlineData(float.PositiveInfinity)]
    [InlineData(-1f)]
    [InlineData(float.MaxValue)] // above float.MaxValue / 127: finite codes could decode to infinity
    public void DecodeRefusesABadScale(float scale)
    {
        var bytes = new byte[HiddenStateCodec.PayloadBytes(WireCodec.Int8Blockwise, Block + 1)];
        BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(4), scale);
        var ex = Assert.Throws<ArgumentException>(() => HiddenStateCodec.Decode(bytes, WireCodec.Int8Blockwise, new float[Block + 1]));
        Assert.Contains("Block 1 has scale", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void TooSmallBuffersAreRejected()
    {
        Assert.Throws<ArgumentException>(() => HiddenStateCodec.Encode(new float[65], WireCodec.Int8Blockwise, new byte[72]));
        Assert.Throws<ArgumentException>(() => HiddenStateCodec.Decode(new byte[72], WireCodec.Int8Blockwise, new float[65]));
    }

    [Fact]
    public void EncodeAndDecodeAllocateNothing()
    {
        var values = Values(3, 4096, nonFinite: false);
        var bytes = new byte[HiddenStateCodec.PayloadBytes(WireCodec.Int8Blockwise, values.Length)];
        var back = new float[values.Length];
        HiddenStateCodec.Encode(values, WireCodec.Int8Blockwise, bytes);
        HiddenStateCodec.Decode(bytes, WireCodec.Int8Blockwise, back);
        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 10; i++)
        {
            HiddenStateCodec.Encode(values, WireCodec.Int8Blockwise, bytes);
            HiddenStateCodec.Decode(bytes, WireCodec.Int8Blockwise, back);
        }

        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }

    [Fact]
    public void NamesRoundTrip()
    {
        Assert.True(HiddenStateCodec.TryParse("int8", out var codec));
        Assert.Equal(WireCodec.Int8Blockwise, codec);
        Assert.Equal("int8", HiddenStateCodec.Name(codec));
        foreach (var c in Enum.GetValues<WireCodec>())
        {
            Assert.True(HiddenStateCodec.TryParse(HiddenStateCodec.Name(c), out var back));
            Assert.Equal(c, back);
        }

        Assert.False(HiddenStateCodec.TryParse("INT8", out _));
        Assert.False(HiddenStateCodec.TryParse("q8", out _));
    }

    /// <summary>A ForwardResponse frame holding a [1, 1, 70] int8 tensor: two blocks, the second of 6 elements.</summary>
    private static byte[] Frame(out int payloadOffset)
    {
        var values = Enumerable.Range(0, 70).Select(i => (float)Math.Sin(i)).ToArray();
        var tensor = WireTensor.FromValues(new TensorShape(1, 1, 70), values, WireCodec.Int8Blockwise);
        payloadOffset = FrameHeader.Size + 1 + 1 + (3 * 4);
        return ProtocolTestKit.Encode(Limits, (1, new ForwardResponse(tensor)));
    }

    private static ProtocolException ReadFails(byte[] bytes, ProtocolErrorCode code, string fragment)
    {
        using var reader = new ProtocolReader(ProtocolTestKit.Filled(bytes), Limits);
        var ex = Assert.Throws<ProtocolException>(() =>
        {
            while (ProtocolTestKit.ReadNow(reader) is not null)
            {
            }
        });
        Assert.Equal(code, ex.Code);
        Assert.Contains(fragment, ex.Message, StringComparison.Ordinal);
        return ex;
    }

    [Fact]
    public void AWellFormedFrameDecodesWithinTheBound()
    {
        var bytes = Frame(out _);
        Assert.Equal(FrameHeader.Size + 14 + 8 + 70, bytes.Length);
        using var reader = new ProtocolReader(ProtocolTestKit.Filled(bytes), Limits);
        var message = Assert.IsType<ForwardResponse>(ProtocolTestKit.ReadNow(reader)!.Value.Message);
        Assert.Equal(WireCodec.Int8Blockwise, message.Hidden.Codec);
        var back = message.Hidden.ToArray();
        for (var i = 0; i < back.Length; i++)
        {
            Assert.True(Math.Abs(back[i] - Math.Sin(i)) <= (1.0 / 254 * (1 + Epsilon)) + 1e-7, $"element {i}");
        }
    }

    [Theory]
    [InlineData(0, float.NaN, "block 0")]
    [InlineData(1, float.PositiveInfinity, "block 1 (elements 64 on)")]
    [InlineData(1, float.NegativeInfinity, "block 1")]
    [InlineData(0, -0.5f, "block 0")]
    [InlineData(1, float.MaxValue, "block 1")]
    public void ABadScaleOnTheWireIsAMalformedFrameNamingFieldAndBlock(int block, float scale, string fragment)
    {
        var bytes = Frame(out var payload);
        BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(payload + (4 * block)), scale);
        var ex = ReadFails(bytes, ProtocolErrorCode.MalformedFrame, fragment);
        Assert.Contains("field 'hidden'", ex.Message, StringComparison.Ordinal);
        Assert.Contains("scale", ex.Message, StringComparison.Ordinal);
        Assert.False(ex.IsConnectionFatal);
    }

    [Fact]
    public void AShortOrLongPayloadIsTruncatedOrTrailing()
    {
        // One code byte fewer than 70 elements need (the frame length says so): truncated, naming the field.
        var bytes = Frame(out _);
        var shorter = bytes[..^1];
        BinaryPrimitives.WriteUInt32LittleEndian(shorter, (uint)(shorter.Length - FrameHeader.Size));
        var ex = ReadFails(shorter, ProtocolErrorCode.Truncated, "field 'hidden' needs 78 bytes");
        Assert.Contains("hidden", ex.Message, StringComparison.Ordinal);

        // One byte more than the shape's payload: trailing bytes.
        var longer = bytes.Concat(new byte[] { 0 }).ToArray();
        BinaryPrimitives.WriteUInt32LittleEndian(longer, (uint)(longer.Length - FrameHeader.Size));
        ReadFails(longer, ProtocolErrorCode.TrailingBytes, "1 bytes are left");

        // The stream ending inside the frame.
        ReadFails(bytes[..^5], ProtocolErrorCode.Truncated, string.Empty);
    }

    [Fact]
    public void AnUnknownCodecByteNamesTheInt8Codec()
    {
        var bytes = Frame(out var payload);
        bytes[payload - 14] = 4;
        ReadFails(bytes, ProtocolErrorCode.BadDType, "3 (int8 blockwise)");
    }
}
