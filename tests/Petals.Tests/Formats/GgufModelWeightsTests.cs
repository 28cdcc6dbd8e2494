using System.Buffers;
using System.Runtime.InteropServices;
using Petals.Formats;
using Petals.Formats.Gguf;
using Petals.Models;
using Petals.Tensors;
using Petals.Testing;

namespace Petals.Tests.Formats;

public sealed class GgufModelWeightsTests : IDisposable
{
    private readonly TempDirectory _dir = TestData.CreateTempDirectory();

    public void Dispose() => _dir.Dispose();

    private string Write(GgufTestWriter w, string name = "m.gguf") => w.Write(Path.Combine(_dir.Path, name));

    [Theory]
    [InlineData(1, GgufTensorType.F32)]
    [InlineData(2, GgufTensorType.F16)]
    [InlineData(3, GgufTensorType.Q8_0)]
    [InlineData(3, GgufTensorType.BF16)]
    [InlineData(3, GgufTensorType.Q4_0)]
    [InlineData(2, GgufTensorType.Q4_1)]
    [InlineData(3, GgufTensorType.Q5_0)]
    [InlineData(3, GgufTensorType.Q5_1)]
    public void ConfigAndCanonicalTensorsAreServed(int version, GgufTensorType type)
    {
        var expected = GgufModels.SmallConfig();
        var path = Write(GgufModels.Create(expected, version, type, seed: 5));
        using var w = GgufModelWeights.Open(path);
        AssertConfigEqual(expected, w.Config);
        Assert.Equal(path, w.Source);
        var served = GgufTensorTypeInfo.ServedAs(type);
        Assert.Equal(2 + 2 * 9 + 1, w.Tensors.Count);
        Assert.Equal(served, w.Tensors[LlamaTensorNames.Block(1, LlamaTensorNames.UpProj)].DType);
        Assert.Equal(TensorDType.F32, w.Tensors[LlamaTensorNames.FinalNorm].DType);
        Assert.Equal([96L, 64L], w.Tensors[LlamaTensorNames.Block(1, LlamaTensorNames.UpProj)].Shape);
        Assert.Equal([32L, 64L], w.Tensors[LlamaTensorNames.Block(0, LlamaTensorNames.KProj)].Shape);
        Assert.Equal([40L, 64L], w.Tensors[LlamaTensorNames.LmHead].Shape);

        // Non-permuted tensors are the stored bytes (block types too: served natively, not dequantized).
        var up = w.GetTensor(LlamaTensorNames.Block(1, LlamaTensorNames.UpProj));
        Assert.True(w.File.TryGetTensor("blk.1.ffn_up.weight", out var raw));
        Assert.Equal(w.File.GetTensorData(raw).ToArray(), up.Data.ToArray());
        Assert.True(MemoryMarshal.TryGetMemoryManager<byte, MemoryManager<byte>>(up.Data, out _), "a view of the mapping, not a copy");
        Assert.Equal(up.Descriptor.ByteSize, up.Data.Length);

        // Views are cached: the same tensor object comes back. Re-ordered Q/K copies are not (a copy lives as long as its
        // user holds it), but every request gives the same values.
        Assert.Same(up, w.GetTensor(LlamaTensorNames.Block(1, LlamaTensorNames.UpProj)));
        var q1 = w.GetTensor(LlamaTensorNames.Block(0, LlamaTensorNames.QProj));
        var q2 = w.GetTensor(LlamaTensorNames.Block(0, LlamaTensorNames.QProj));
        Assert.NotSame(q1, q2);
        Assert.Equal(q1.Data.ToArray(), q2.Data.ToArray());
        Assert.Throws<KeyNotFoundException>(() => w.GetTensor("model.layers.9.mlp.up_proj.weight"));
    }

    [Fact]
    public void ConcurrentRequestsMaterializeEachViewOnceAndEveryCopyAlike()
    {
        var path = Write(GgufModels.Create(GgufModels.SmallConfig(), 3, GgufTensorType.Q8_0, seed: 11));
        using var w = GgufModelWeights.Open(path);
        var names = w.Tensors.Keys.ToArray();
        var seen = new Petals.Tensors.WeightTensor[64 * names.Length];
        Parallel.For(0, seen.Length, i => seen[i] = w.GetTensor(names[i % names.Length]));
        for (var i = 0; i < seen.Length; i++)
        {
            var first = seen[i % names.Length];
            if (first.Descriptor.Name.EndsWith(LlamaTensorNames.QProj, StringComparison.Ordinal) || first.Descriptor.Name.EndsWith(LlamaTensorNames.KProj, StringComparison.Ordinal))
            {
                Assert.Equal(first.Data.ToArray(), seen[i].Data.ToArray());
            }
            else
            {
                Assert.Same(first, seen[i]);
            }
        }
    }

    [Fact]
    public void DefaultsApplyWhenOptionalKeysAreAbsent()
    {
        var c = GgufModels.SmallConfig(tied: true) with { NumKeyValueHeads = 4 };
        var path = Write(GgufModels.Create(c, 3, GgufTensorType.F32, seed: 1, writeKvHeads: false));
        using var w = GgufModelWeights.Open(path);
        Assert.Equal(4, w.Config.NumKeyValueHeads);
        Assert.True(w.Config.TieWordEmbeddings);
        Assert.False(w.Tensors.ContainsKey(LlamaTensorNames.LmHead));
    }

    [Fact]
    public void QAndKRowsAreUnpermutedToHuggingFaceOrder()
    {
        var c = GgufModels.SmallConfig();
        var path = Write(GgufModels.Create(c, 3, GgufTensorType.F32, seed: 9));
        using var w = GgufModelWeights.Open(path);
        var d = c.HeadDim;
        foreach (var (suffix, stored, heads) in new[] { (LlamaTensorNames.QProj, "attn_q", c.NumHeads), (LlamaTensorNames.KProj, "attn_k", c.NumKeyValueHeads) })
        {
            Assert.True(w.File.TryGetTensor($"blk.1.{stored}.weight", out var info));
            var meta = MemoryMarshal.Cast<byte, float>(w.File.GetTensorData(info).Span).ToArray();
            var hf = MemoryMarshal.Cast<byte, float>(w.GetTensor(LlamaTensorNames.Block(1, suffix)).Data.Span).ToArray();
            var cols = c.HiddenSize;
            for (var h = 0; h < heads; h++)
            {
                for (var j = 0; j < d / 2; j++)
                {
                    Assert.Equal(meta.AsSpan(((h * d) + (2 * j)) * cols, cols).ToArray(), hf.AsSpan(((h * d) + j) * cols, cols).ToArray());
                    Assert.Equal(meta.AsSpan(((h * d) + (2 * j) + 1) * cols, cols).ToArray(), hf.AsSpan(((h * d) + (d / 2) + j) * cols, cols).ToArray());
                }
            }
        }

        // V is served unchanged.
        Assert.True(w.File.TryGetTensor("blk.1.attn_v.weight", out var v));
        Assert.Equal(w.File.GetTensorData(v).ToArray(), w.GetTensor(LlamaTensorNames.Block(1, LlamaTensorNames.VProj)).Data.ToArray());
    }

    /// <summary>
    /// The direction of the un-permutation: interleaved rotation (pairs 2i, 2i+1) applied to the projections of the Meta
    /// rows must equal rotate-half rotation (pairs i, i + D/2) applied to the projections of the served rows, up to the
    /// same re-ordering; hence attention scores q.k agree exactly.
    /// </summary>
    [Fact]
    public void InterleavedRotaryOnMetaRowsEqualsRotateHalfOnServedRows()
    {
        var c = GgufModels.SmallConfig();
        var path = Write(GgufModels.Create(c, 3, GgufTensorType.F32, seed: 21));
        using var w = GgufModelWeights.Open(path);
        var rng = new Random(3);
        var x = TestEncodings.Random(rng, c.HiddenSize, 1f);
        var y = TestEncodings.Random(rng, c.HiddenSize, 1f);
        Assert.True(w.File.TryGetTensor("blk.0.attn_q.weight", out var qInfo));
        Assert.True(w.File.TryGetTensor("blk.0.attn_k.weight", out var kInfo));
        var qMeta = Project(MemoryMarshal.Cast<byte, float>(w.File.GetTensorData(qInfo).Span), x, c.HiddenSize);
        var kMeta = Project(MemoryMarshal.Cast<byte, float>(w.File.GetTensorData(kInfo).Span), y, c.HiddenSize);
        var qHf = Project(MemoryMarshal.Cast<byte, float>(w.GetTensor(LlamaTensorNames.Block(0, LlamaTensorNames.QProj)).Data.Span), x, c.HiddenSize);
        var kHf = Project(MemoryMarshal.Cast<byte, float>(w.GetTensor(LlamaTensorNames.Block(0, LlamaTensorNames.KProj)).Data.Span), y, c.HiddenSize);
        var d = c.HeadDim;
        foreach (var (qPos, kPos) in new[] { (0, 0), (5, 2), (17, 16), (100, 3) })
        {
            var qm = (double[])qMeta.Clone();
            var km = (double[])kMeta.Clone();
            var qh = (double[])qHf.Clone();
            var kh = (double[])kHf.Clone();
            RotateInterleaved(qm, d, qPos, c.RopeTheta);
            RotateInterleaved(km, d, kPos, c.RopeTheta);
            RotateHalf(qh, d, qPos, c.RopeTheta);
            RotateHalf(kh, d, kPos, c.RopeTheta);
            for (var h = 0; h < c.NumHeads; h++)
            {
                for (var j = 0; j < d / 2; j++)
                {
                    Assert.Equal(qm[(h * d) + (2 * j)], qh[(h * d) + j], 12);
                    Assert.Equal(qm[(h * d) + (2 * j) + 1], qh[(h * d) + (d / 2) + j], 12);
                }

                var kvHead = h / c.GroupSize;
                double scoreMeta = 0, scoreHf = 0;
                for (var i = 0; i < d; i++)
                {
                    scoreMeta += qm[(h * d) + i] * km[(kvHead * d) + i];
                    scoreHf += qh[(h * d) + i] * kh[(kvHead * d) + i];
                }

                Assert.Equal(scoreMeta, scoreHf, 9);
            }
        }

        // And the wrong direction (treating the served rows as interleaved) would not match.
        var wrong = (double[])qHf.Clone();
        var right = (double[])qMeta.Clone();
        RotateInterleaved(wrong, d, 7, c.RopeTheta);
        RotateInterleaved(right, d, 7, c.RopeTheta);
        Assert.NotEqual(right[1], wrong[d / 2], 6);
    }

    private static double[] Project(ReadOnlySpan<float> weight, float[] x, int cols)
    {
        var rows = weight.Length / cols;
        var result = new double[rows];
        for (var r = 0; r < rows; r++)
        {
            double s = 0;
            for (var i = 0; i < cols; i++)
            {
                s += (double)weight[(r * cols) + i] * x[i];
            }

            result[r] = s;
        }

        return result;
    }

    private static void RotateInterleaved(double[] v, int d, int pos, double theta)
    {
        for (var h = 0; h < v.Length / d; h++)
        {
            for (var i = 0; i < d / 2; i++)
            {
                var angle = pos * Math.Pow(theta, -2.0 * i / d);
                var (a, b) = (v[(h * d) + (2 * i)], v[(h * d) + (2 * i) + 1]);
                v[(h * d) + (2 * i)] = (a * Math.Cos(angle)) - (b * Math.Sin(angle));
                v[(h * d) + (2 * i) + 1] = (a * Math.Sin(angle)) + (b * Math.Cos(angle));
            }
        }
    }

    private static void RotateHalf(double[] v, int d, int pos, double theta)
    {
        for (var h = 0; h < v.Length / d; h++)
        {
            for (var i = 0; i < d / 2; i++)
            {
                var angle = pos * Math.Pow(theta, -2.0 * i / d);
                var (a, b) = (v[(h * d) + i], v[(h * d) + (d / 2) + i]);
                v[(h * d) + i] = (a * Math.Cos(angle)) - (b * Math.Sin(angle));
                v[(h * d) + (d / 2) + i] = (a * Math.Sin(angle)) + (b * Math.Cos(angle));
            }
        }
    }

    /// <summary>Hugging Face's <c>_compute_llama3_parameters</c>, as the divisors llama.cpp's converter stores in rope_freqs.weight.</summary>
    private static float[] Llama3Divisors(double theta, int headDim, double factor, double low = 1, double high = 4, double context = 8192)
    {
        var result = new float[headDim / 2];
        for (var j = 0; j < result.Length; j++)
        {
            var wavelength = 2 * Math.PI / Math.Pow(theta, -2.0 * j / headDim);
            if (wavelength < context / high)
            {
                result[j] = 1;
            }
            else if (wavelength > context / low)
            {
                result[j] = (float)factor;
            }
            else
            {
                var smooth = ((context / wavelength) - low) / (high - low);
                result[j] = (float)(1 / (((1 - smooth) / factor) + smooth));
            }
        }

        return result;
    }

    [Fact]
    public void Llama3RopeFrequencyFactorsBecomeRopeScaling()
    {
        var c = GgufModels.SmallConfig();
        var divisors = Llama3Divisors(c.RopeTheta, c.HeadDim, factor: 8);

        // The small head (16) still spans the three regions: unscaled, smoothed and fully scaled.
        Assert.Contains(1f, divisors);
        Assert.Contains(8f, divisors);
        Assert.Contains(divisors, d => d is > 1 and < 8);
        var w = GgufModels.Create(c, 3, GgufTensorType.F16, seed: 3);
        w.AddTensor(GgufModelWeights.RopeFrequencyFactorsTensor, GgufTensorType.F32, [c.HeadDim / 2], TestEncodings.F32(divisors));
        using var weights = GgufModelWeights.Open(Write(w));
        Assert.Equal(new RopeScaling(RopeScaling.Llama3, 8), weights.Config.RopeScaling);
        Assert.False(weights.Tensors.ContainsKey(GgufModelWeights.RopeFrequencyFactorsTensor));

        // All ones means no scaling.
        var ones = GgufModels.Create(c, 3, GgufTensorType.F16, seed: 3);
        ones.AddTensor(GgufModelWeights.RopeFrequencyFactorsTensor, GgufTensorType.F32, [c.HeadDim / 2], TestEncodings.F32(Enumerable.Repeat(1f, c.HeadDim / 2).ToArray()));
        using var plain = GgufModelWeights.Open(Write(ones, "ones.gguf"));
        Assert.Null(plain.Config.RopeScaling);
    }

    [Theory]
    [InlineData("other-parameters")]
    [InlineData("perturbed")]
    [InlineData("shape")]
    [InlineData("negative")]
    public void RopeFrequencyFactorsThatAreNotLlama3AreRejected(string variant)
    {
        var c = GgufModels.SmallConfig();
        var divisors = variant == "other-parameters"
            ? Llama3Divisors(c.RopeTheta, c.HeadDim, factor: 8, low: 2, high: 8)
            : Llama3Divisors(c.RopeTheta, c.HeadDim, factor: 8);
        long length = c.HeadDim / 2;
        switch (variant)
        {
            case "perturbed":
                divisors[4] *= 1.01f;
                break;
            case "shape":
                divisors = [.. divisors, 8f];
                length++;
                break;
            case "negative":
                divisors[0] = -1;
                break;
        }

        var w = GgufModels.Create(c, 3, GgufTensorType.F16, seed: 3);
        w.AddTensor(GgufModelWeights.RopeFrequencyFactorsTensor, GgufTensorType.F32, [length], TestEncodings.F32(divisors));
        var path = Write(w);
        GgufFileTests.AssertFormat(() => GgufModelWeights.Open(path), path, GgufModelWeights.RopeFrequencyFactorsTensor);
    }

    [Fact]
    public void MissingTensorIsReportedByItsGgufName()
    {
        var c = GgufModels.SmallConfig();
        var full = GgufModels.Create(c, 3, GgufTensorType.F32, seed: 2);
        var bytes = full.ToBytes();
        var path = Path.Combine(_dir.Path, "missing.gguf");

        // Rename blk.1.ffn_up.weight to blk.1.ffn_xx.weight: the model then lacks it.
        var at = bytes.AsSpan().IndexOf("blk.1.ffn_up.weight"u8);
        "blk.1.ffn_xx.weight"u8.CopyTo(bytes.AsSpan(at));
        File.WriteAllBytes(path, bytes);
        var ex = GgufFileTests.AssertFormat(() => GgufModelWeights.Open(path), path, "blk.1.ffn_up.weight");
        Assert.Contains("missing", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void ShapeDisagreeingWithMetadataIsReported()
    {
        var c = GgufModels.SmallConfig();
        var w = GgufModels.Create(c with { IntermediateSize = 128 }, 3, GgufTensorType.F32, seed: 2);
        var bytes = w.ToBytes();

        // Claim a feed-forward length of 96 while the tensors have 128.
        var key = bytes.AsSpan().IndexOf("llama.feed_forward_length"u8) + "llama.feed_forward_length".Length + 4;
        BitConverter.TryWriteBytes(bytes.AsSpan(key), 96u);
        var path = Path.Combine(_dir.Path, "shape.gguf");
        File.WriteAllBytes(path, bytes);
        var ex = GgufFileTests.AssertFormat(() => GgufModelWeights.Open(path), path, "blk.0.ffn_gate.weight");
        Assert.Contains("shape", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void UnsupportedMatrixTypeIsReportedWithTensorAndType()
    {
        var c = GgufModels.SmallConfig();
        var w = GgufModels.Create(c, 3, GgufTensorType.F32, seed: 2);
        w.AddTensor("blk.0.attn_extra.weight", GgufTensorType.Q4_0, [32], new byte[18]);
        var bytes = w.ToBytes();
        var path = Path.Combine(_dir.Path, "ok-extra.gguf");
        File.WriteAllBytes(path, bytes);
        using (var ok = GgufModelWeights.Open(path))
        {
            Assert.False(ok.Tensors.ContainsKey("blk.0.attn_extra.weight"));
        }

        var all = GgufModels.Create(c, 3, GgufTensorType.Q8_0, seed: 2).ToBytes();
        var name = all.AsSpan().IndexOf("blk.0.attn_q.weight"u8) + "blk.0.attn_q.weight".Length;

        // Type field after n_dims (4) and two dims (16): Q8_0 -> IQ4_NL (same block size 32, smaller blocks: still in range).
        Assert.Equal((uint)GgufTensorType.Q8_0, BitConverter.ToUInt32(all, name + 20));
        BitConverter.TryWriteBytes(all.AsSpan(name + 20), (uint)GgufTensorType.IQ4_NL);
        path = Path.Combine(_dir.Path, "iq4.gguf");
        File.WriteAllBytes(path, all);
        var ex = GgufFileTests.AssertFormat(() => GgufModelWeights.Open(path), path, "blk.0.attn_q.weight");
        Assert.Contains("IQ4_NL is not supported", ex.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("general.architecture")]
    [InlineData("llama.attention.head_count")]
    public void BadMetadataIsReportedNamingTheKey(string key)
    {
        var c = GgufModels.SmallConfig();
        var bytes = GgufModels.Create(c, 3, GgufTensorType.F32, seed: 2).ToBytes();
        var path = Path.Combine(_dir.Path, "meta.gguf");
        if (key == "general.architecture")
        {
            var at = bytes.AsSpan().IndexOf("llama"u8.ToArray().Prepend((byte)0).ToArray()) + 1;
            Encoding("gpt2x").CopyTo(bytes.AsSpan(at));
        }
        else
        {
            var at = bytes.AsSpan().IndexOf(Encoding(key)) + key.Length;
            BitConverter.TryWriteBytes(bytes.AsSpan(at), (uint)GgufValueType.Int32);
            BitConverter.TryWriteBytes(bytes.AsSpan(at + 4), -4);
        }

        File.WriteAllBytes(path, bytes);
        GgufFileTests.AssertFormat(() => GgufModelWeights.Open(path), path, key);
    }

    private static byte[] Encoding(string s) => System.Text.Encoding.UTF8.GetBytes(s);

    internal static void AssertConfigEqual(ModelConfig expected, ModelConfig actual)
    {
        Assert.Equal(expected with { EosTokenIds = [] }, actual with { EosTokenIds = [] });
        Assert.Equal(expected.EosTokenIds, actual.EosTokenIds);
    }
}
