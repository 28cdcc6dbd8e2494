using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;
using FsCheck;
using FsCheck.Fluent;
using Petals.Backends.Cpu;
using Petals.Formats;
using Petals.Models;
using Petals.Tensors;

namespace Petals.Benchmarks.Tests;

public sealed class HarnessTests
{
    [Theory]
    [InlineData("decode:128", true, 128, 1)]
    [InlineData("decode:0", true, 0, 1)]
    [InlineData("prefill:128", false, 0, 128)]
    public void CasesParse(string text, bool decode, int position, int tokens)
    {
        var c = BlockCase.Parse(text);
        Assert.Equal(new BlockCase(decode, position, tokens), c);
        Assert.Equal(text, c.ToString());
    }

    [Fact]
    public void BackwardCasesParse()
    {
        var c = BlockCase.Parse("backward:128");
        Assert.Equal(new BlockCase(false, 0, 128, Backward: true), c);
        Assert.Equal("backward", c.Mode);
        Assert.Equal("backward:128", c.ToString());
        Assert.Throws<ArgumentException>(() => BlockCase.Parse("backward:0"));
    }

    [Theory]
    [InlineData("decode")]
    [InlineData("prefill:0")]
    [InlineData("decode:-1")]
    [InlineData("train:3")]
    public void BadCasesAreRejected(string text) => Assert.Throws<ArgumentException>(() => BlockCase.Parse(text));

    [Fact]
    public void ParameterCountsMatchThePublishedShapes()
    {
        // Llama-2-7B: 4 * 4096^2 + 3 * 4096 * 11008 + 2 * 4096; Llama-3-8B with 8 KV heads of 128.
        Assert.Equal(202_383_360, BlockShapes.ParameterCount(BlockShapes.Get("llama2-7b")));
        Assert.Equal(218_112_000, BlockShapes.ParameterCount(BlockShapes.Get("llama3-8b")));
    }

    [Fact]
    public void MetricsCountWeightsCacheAndCausalAttention()
    {
        var c = BlockShapes.Get("llama3-8b");
        var decode = BlockMetrics.For(c, 2, 4, decode: true, position: 1024, tokens: 1);
        Assert.Equal(218_112_000L * 2, decode.WeightBytes);
        Assert.Equal(2L * 1024 * 1025 * 4, decode.KvBytesRead);
        Assert.Equal((2L * 218_112_000) + (4L * 32 * 128 * 1025), decode.Flops);
        var prefill = BlockMetrics.For(c, 4, 4, decode: false, position: 0, tokens: 128);
        Assert.Equal((2L * 218_112_000 * 128) + (4L * 32 * 128 * 128 * 129 / 2), prefill.Flops);
        Assert.Equal(prefill.Flops / 1e9, prefill.GigaflopsPerSecond(1000), 6);
    }

    [Fact]
    public void RandomWeightsAreDeterministicAndAtTheInitialisationScale()
    {
        var c = BlockShapes.Get("tiny");
        using var a = InMemoryBlockWeights.CreateRandom(c, TensorDType.F32, 7);
        using var b = InMemoryBlockWeights.CreateRandom(c, TensorDType.F32, 7);
        using var other = InMemoryBlockWeights.CreateRandom(c, TensorDType.F32, 8);
        var name = LlamaTensorNames.Block(0, LlamaTensorNames.GateProj);
        var w = MemoryMarshal.Cast<byte, float>(a.GetTensor(name).Data.Span);
        Assert.True(a.GetTensor(name).Data.Span.SequenceEqual(b.GetTensor(name).Data.Span));
        Assert.False(a.GetTensor(name).Data.Span.SequenceEqual(other.GetTensor(name).Data.Span));
        double sum = 0, sumSquares = 0;
        foreach (var v in w)
        {
            sum += v;
            sumSquares += v * v;
        }

        var mean = sum / w.Length;
        var std = Math.Sqrt((sumSquares / w.Length) - (mean * mean));
        Assert.InRange(mean, -0.001, 0.001);
        Assert.InRange(std, 0.019, 0.021);
        var norm = MemoryMarshal.Cast<byte, float>(a.GetTensor(LlamaTensorNames.Block(0, LlamaTensorNames.InputNorm)).Data.Span);
        foreach (var v in norm)
        {
            Assert.InRange(v, 0.82f, 1.18f);
        }

        Assert.Equal(BlockShapes.ParameterCount(c) * 4, a.TotalBytes);
    }

    [Fact]
    public void BFloat16RoundsToNearest() =>
        Prop.ForAll(ArbMap.Default.ArbFor<NormalFloat>(), f =>
        {
            var x = (float)f.Get;
            if (!float.IsFinite(x) || Math.Abs(x) > 1e38 || Math.Abs(x) < 1e-37)
            {
                return true;
            }

            var back = BitConverter.UInt32BitsToSingle((uint)InMemoryBlockWeights.ToBFloat16(x) << 16);
            // The two bf16 neighbours of x: truncation, and one unit further from zero; the result is the nearer one.
            var truncated = BitConverter.SingleToUInt32Bits(x) & 0xFFFF0000u;
            var below = BitConverter.UInt32BitsToSingle(truncated);
            var above = BitConverter.UInt32BitsToSingle(truncated + 0x10000u);
            var error = Math.Abs((double)back - x);
            return (back == below || back == above)
                && error <= Math.Min(Math.Abs((double)below - x), Math.Abs((double)above - x))
                && error <= Math.Abs(x) / 256; // 8 significant bits: half a unit in the last place
        }).QuickCheckThrowOnFailure();

    [Fact]
    public void RunnerTimesEveryCaseAndKeepsThePositionFixed()
    {
        var c = BlockShapes.Get("tiny");
        using var weights = InMemoryBlockWeights.CreateRandom(c, TensorDType.BF16, 3);
        using var executor = new CpuBlockExecutorFactory(new CpuExecutorOptions { ThreadCount = 2 }).Create(weights, new BlockRange(0, 1));
        var options = BlockOptions.Parse(["--shape", "tiny", "--dtype", "bf16", "--cases", "decode:8,prefill:4,decode:32", "--warmup", "1", "--iterations", "3"]);
        var results = BlockRunner.Run(executor, options, options.Cases);
        Assert.Equal(["decode:8", "prefill:4", "decode:32"], results.Select(r => r.Case.ToString()));
        foreach (var r in results)
        {
            Assert.Equal(3, r.TimesMs.Length);
            Assert.True(r.MinMs > 0 && r.MinMs <= r.MedianMs);
            Assert.True(r.Metrics.GigabytesPerSecond(r.MedianMs) > 0);
        }
    }

    [Fact]
    public void CrossCheckFileRoundTripsAndNamesBadFields()
    {
        var c = BlockShapes.Get("tiny");
        using var weights = InMemoryBlockWeights.CreateRandom(c, TensorDType.BF16, 11);
        var dir = Directory.CreateTempSubdirectory("petals-bench-");
        try
        {
            var path = Path.Combine(dir.FullName, "block.safetensors");
            var inputs = new float[3 * c.HiddenSize];
            InMemoryBlockWeights.FillUniform(inputs, 1, 0, 1);
            WriteSafetensors(path, c, weights, inputs, prefill: 2, decodeSteps: 1);
            var file = CrossCheckFile.Read(path);
            Assert.Equal(2, file.Prefill);
            Assert.Equal(1, file.DecodeSteps);
            Assert.Equal(inputs, file.Inputs);
            var q = LlamaTensorNames.Block(0, LlamaTensorNames.QProj);
            Assert.True(file.Weights.GetTensor(q).Data.Span.SequenceEqual(weights.GetTensor(q).Data.Span));
            Assert.Equal(c.NumKeyValueHeads, file.Weights.Config.NumKeyValueHeads);

            WriteSafetensors(path, c, weights, inputs, prefill: 5, decodeSteps: 1);
            var e = Assert.Throws<ModelFormatException>(() => CrossCheckFile.Read(path));
            Assert.Equal(path, e.FilePath);
            Assert.Equal("__metadata__.prefill", e.Field);

            File.WriteAllBytes(path, [255, 255, 255, 255, 0, 0, 0, 0, 1]);
            e = Assert.Throws<ModelFormatException>(() => CrossCheckFile.Read(path));
            Assert.Equal("header length", e.Field);
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    private static void WriteSafetensors(string path, ModelConfig c, InMemoryBlockWeights weights, float[] inputs, int prefill, int decodeSteps)
    {
        var header = new StringBuilder("{\"__metadata__\":{");
        header.Append(System.Globalization.CultureInfo.InvariantCulture,
            $"\"hidden\":\"{c.HiddenSize}\",\"intermediate\":\"{c.IntermediateSize}\",\"heads\":\"{c.NumHeads}\",\"kv_heads\":\"{c.NumKeyValueHeads}\",\"head_dim\":\"{c.HeadDim}\",\"eps\":\"1e-05\",\"theta\":\"10000.0\",\"prefill\":\"{prefill}\",\"decode_steps\":\"{decodeSteps}\"}}");
        var blobs = new List<byte[]>();
        long offset = 0;
        void Add(string name, string dtype, long[] shape, byte[] data)
        {
            header.Append(System.Globalization.CultureInfo.InvariantCulture, $",\"{name}\":{{\"dtype\":\"{dtype}\",\"shape\":[{string.Join(",", shape)}],\"data_offsets\":[{offset},{offset + data.Length}]}}");
            offset += data.Length;
            blobs.Add(data);
        }

        foreach (var suffix in LlamaTensorNames.BlockTensors)
        {
            var t = weights.GetTensor(LlamaTensorNames.Block(0, suffix));
            Add(t.Descriptor.Name, "BF16", [.. t.Descriptor.Shape], t.Data.ToArray());
        }

        Add("inputs", "F32", [inputs.Length / c.HiddenSize, c.HiddenSize], MemoryMarshal.AsBytes(inputs.AsSpan()).ToArray());
        header.Append('}');
        var headerBytes = Encoding.UTF8.GetBytes(header.ToString());
        using var stream = File.Create(path);
        Span<byte> length = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)headerBytes.Length);
        stream.Write(length);
        stream.Write(headerBytes);
        foreach (var blob in blobs)
        {
            stream.Write(blob);
        }
    }
}
