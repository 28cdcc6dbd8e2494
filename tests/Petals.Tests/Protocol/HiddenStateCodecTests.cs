using FsCheck;
using FsCheck.Fluent;
using Petals.Protocol;

namespace Petals.Tests.Protocol;

[Collection(ProtocolTestGroup.Name)]
public sealed class HiddenStateCodecTests
{
    /// <summary>An independent scalar reference: round to nearest even on the low 16 bits; NaN quieted.</summary>
    private static ushort ReferenceBf16(uint bits)
    {
        if ((bits & 0x7FFFFFFF) > 0x7F800000)
        {
            return (ushort)((bits >> 16) | 0x40);
        }

        var upper = bits >> 16;
        var lower = bits & 0xFFFF;
        if (lower > 0x8000 || (lower == 0x8000 && (upper & 1) == 1))
        {
            upper++;
        }

        return (ushort)upper;
    }

    private static float[] RandomBits(int seed, int length)
    {
        var random = new Random(seed);
        var values = new float[length];
        for (var i = 0; i < values.Length; i++)
        {
            values[i] = random.Next(3) == 0
                ? BitConverter.Int32BitsToSingle(random.Next(int.MinValue, int.MaxValue))
                : (float)((random.NextDouble() - 0.5) * Math.Pow(2, random.Next(-30, 30)));
        }

        return values;
    }

    [Theory]
    [InlineData(WireCodec.Fp32, 4)]
    [InlineData(WireCodec.Fp16, 2)]
    [InlineData(WireCodec.Bf16, 2)]
    public void ElementSizes(WireCodec codec, int size) => Assert.Equal(size, HiddenStateCodec.ElementSize(codec));

    [Fact]
    public void Fp32RoundTripIsBitExact() =>
        Prop.ForAll(Gen.Choose(0, int.MaxValue).ToArbitrary(), Gen.Choose(0, 200).ToArbitrary(), (seed, length) =>
        {
            var values = RandomBits(seed, length);
            var bytes = new byte[length * 4];
            HiddenStateCodec.Encode(values, WireCodec.Fp32, bytes);
            for (var i = 0; i < length; i++)
            {
                Assert.Equal(BitConverter.SingleToInt32Bits(values[i]), BitConverter.ToInt32(bytes, i * 4));
            }

            var back = new float[length];
            HiddenStateCodec.Decode(bytes, WireCodec.Fp32, back);
            Assert.Equal(values.Select(BitConverter.SingleToInt32Bits), back.Select(BitConverter.SingleToInt32Bits));
        }).Check(Config.QuickThrowOnFailure.WithMaxTest(300));

    [Fact]
    public void Fp16MatchesIeeeConversionElementByElement() =>
        Prop.ForAll(Gen.Choose(0, int.MaxValue).ToArbitrary(), Gen.Choose(0, 200).ToArbitrary(), (seed, length) =>
        {
            var values = RandomBits(seed, length);
            var bytes = new byte[length * 2];
            HiddenStateCodec.Encode(values, WireCodec.Fp16, bytes);
            var back = new float[length];
            HiddenStateCodec.Decode(bytes, WireCodec.Fp16, back);
            for (var i = 0; i < length; i++)
            {
                var expected = (Half)values[i];
                Assert.Equal(BitConverter.HalfToUInt16Bits(expected) & (Half.IsNaN(expected) ? 0xFC00 : 0xFFFF), BitConverter.ToUInt16(bytes, i * 2) & (Half.IsNaN(expected) ? 0xFC00 : 0xFFFF));
                Assert.Equal((float)expected, back[i]);
            }
        }).Check(Config.QuickThrowOnFailure.WithMaxTest(300));

    [Fact]
    public void Bf16MatchesScalarRoundToNearestEvenOnEveryLengthAndBitPattern() =>
        Prop.ForAll(Gen.Choose(0, int.MaxValue).ToArbitrary(), Gen.Choose(0, 200).ToArbitrary(), (seed, length) =>
        {
            var values = RandomBits(seed, length);
            var bytes = new byte[length * 2];
            HiddenStateCodec.Encode(values, WireCodec.Bf16, bytes);
            var back = new float[length];
            HiddenStateCodec.Decode(bytes, WireCodec.Bf16, back);
            for (var i = 0; i < length; i++)
            {
                var expected = ReferenceBf16(BitConverter.SingleToUInt32Bits(values[i]));
                Assert.Equal(expected, BitConverter.ToUInt16(bytes, i * 2));
                Assert.Equal((uint)expected << 16, BitConverter.SingleToUInt32Bits(back[i]));
            }
        }).Check(Config.QuickThrowOnFailure.WithMaxTest(300));

    [Theory]
    [InlineData(0x3F808000u, (ushort)0x3F80)] // exact tie, even stays
    [InlineData(0x3F818000u, (ushort)0x3F82)] // exact tie, odd rounds up to even
    [InlineData(0x3F808001u, (ushort)0x3F81)] // above the tie
    [InlineData(0x7F7FFFFFu, (ushort)0x7F80)] // float.MaxValue rounds to infinity
    [InlineData(0xFF800000u, (ushort)0xFF80)] // -infinity
    [InlineData(0x7F800001u, (ushort)0x7FC0)] // signalling NaN becomes a quiet NaN, not infinity
    [InlineData(0x00000001u, (ushort)0x0000)] // smallest subnormal rounds to zero
    public void Bf16KnownValues(uint bits, ushort expected)
    {
        // 16 copies exercise the vector path, one more the scalar tail.
        var values = Enumerable.Repeat(BitConverter.UInt32BitsToSingle(bits), 17).ToArray();
        var bytes = new byte[values.Length * 2];
        HiddenStateCodec.Encode(values, WireCodec.Bf16, bytes);
        for (var i = 0; i < values.Length; i++)
        {
            Assert.Equal(expected, BitConverter.ToUInt16(bytes, i * 2));
        }
    }

    [Theory]
    [InlineData(WireCodec.Fp16, 1.0 / 2048)] // 11 significant bits: half an ulp is 2^-11 relative
    [InlineData(WireCodec.Bf16, 1.0 / 256)] // 8 significant bits: 2^-8 relative
    public void RelativeErrorIsWithinHalfAnUlpInTheNormalRange(WireCodec codec, double bound)
    {
        var random = new Random(7);
        var values = new float[4099];
        for (var i = 0; i < values.Length; i++)
        {
            // fp16 normals span 2^-14..65504; stay inside for both codecs.
            values[i] = (float)((random.Next(2) == 0 ? -1 : 1) * Math.Pow(2, (random.NextDouble() * 28) - 13));
        }

        var bytes = new byte[values.Length * 2];
        HiddenStateCodec.Encode(values, codec, bytes);
        var back = new float[values.Length];
        HiddenStateCodec.Decode(bytes, codec, back);
        var worst = 0.0;
        for (var i = 0; i < values.Length; i++)
        {
            worst = Math.Max(worst, Math.Abs(back[i] - values[i]) / Math.Abs(values[i]));
        }

        Assert.InRange(worst, 0, bound);
        Assert.True(worst > bound / 8, $"The worst relative error {worst} is implausibly small for {codec}: is the codec lossy at all?");
    }

    [Fact]
    public void TooSmallBuffersAreRejected()
    {
        Assert.Throws<ArgumentException>(() => HiddenStateCodec.Encode(new float[4], WireCodec.Fp16, new byte[7]));
        Assert.Throws<ArgumentException>(() => HiddenStateCodec.Decode(new byte[15], WireCodec.Fp32, new float[4]));
    }
}
