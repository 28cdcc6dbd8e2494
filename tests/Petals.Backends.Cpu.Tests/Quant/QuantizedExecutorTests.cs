using Petals.Backends.Cpu.Linear;
using Petals.Execution;
using Petals.Models;
using Petals.Tensors;

namespace Petals.Backends.Cpu.Tests.Quant;

/// <summary>The executor over quantized weights: quantized at load, or served in their stored block type.</summary>
public sealed class QuantizedExecutorTests
{
    private static readonly ModelConfig Shape = TestConfigs.Get("deep", layers: 2) with { IntermediateSize = 512 };

    [Theory]
    [InlineData("int8", "int8", 0.01)]
    [InlineData("q8_0", "q8_0", 0.01)]
    // RandomLlama draws uniform weights; NF4 places its levels for normally distributed ones, so it loses more here than q4_k.
    [InlineData("nf4", "nf4", 0.2)]
    [InlineData("q4_k", "q4_k", 0.12)]
    public void QuantizedAtLoadStaysCloseToFp32(string quant, string announced, double maxRelativeError)
    {
        using var model = new RandomLlama(Shape);
        var (reference, _) = Run(model, WeightQuantization.None);
        var (actual, info) = Run(model, WeightQuantization.Parse(quant));
        Assert.Equal(announced, info.Quantization);
        var error = RelativeError(actual, reference);
        Assert.True(error < maxRelativeError, $"{quant}: relative error {error:G3} of the block outputs, above {maxRelativeError}.");
        Assert.True(error > 1e-6, $"{quant}: the outputs equal fp32's exactly, so nothing was quantized.");
    }

    [Fact]
    public void WeightBytesAreThePackedSizes()
    {
        using var model = new RandomLlama(Shape);
        var c = Shape;
        var elements = c.NumLayers * (((long)c.NumHeads * c.HeadDim * c.HiddenSize * 2) + ((long)c.NumKeyValueHeads * c.HeadDim * c.HiddenSize * 2) + (3L * c.IntermediateSize * c.HiddenSize));
        Assert.Equal(elements * 4, Run(model, WeightQuantization.None).Info.WeightBytes);
        Assert.Equal(elements / 256 * 144, Run(model, WeightQuantization.Q4_K).Info.BytesByDType[TensorDType.Q4_K]);
        Assert.Equal(elements / 64 * 34, Run(model, WeightQuantization.Nf4).Info.BytesByDType[TensorDType.NF4]);
        Assert.Equal(elements / 32 * 34, Run(model, WeightQuantization.Q8_0).Info.BytesByDType[TensorDType.Q8_0]);
        var rows = c.NumLayers * ((2L * c.NumHeads * c.HeadDim) + (2L * c.NumKeyValueHeads * c.HeadDim) + (2L * c.IntermediateSize) + c.HiddenSize);
        Assert.Equal(elements + (rows * 4), Run(model, WeightQuantization.PerChannelInt8).Info.BytesByDType[TensorDType.I8]);
    }

    [Fact]
    public void RowsABlockDoesNotDivideFallBackAsDocumented()
    {
        // hidden 64, intermediate 160: Q4_K (256) divides no row, so every tensor is Q8_0; NF4 (64) divides all but the
        // down projection's 160-wide rows, which fall back to Q8_0.
        using var model = new RandomLlama(TestConfigs.Get("mha"));
        var q4k = Run(model, WeightQuantization.Q4_K).Info;
        Assert.Equal("q8_0", q4k.Quantization);
        var nf4 = Run(model, WeightQuantization.Nf4).Info;
        Assert.Equal("q8_0+nf4", nf4.Quantization);
        Assert.Equal([TensorDType.Q8_0, TensorDType.NF4], nf4.BytesByDType.Keys.Order().ToArray());

        // 37 and 53 wide rows: no block fits, the stored type stays; int8 rows fit any width.
        using var odd = new RandomLlama(TestConfigs.Get("odd"));
        Assert.Equal("none", Run(odd, WeightQuantization.Q8_0).Info.Quantization);
        Assert.Equal("int8", Run(odd, WeightQuantization.PerChannelInt8).Info.Quantization);
    }

    [Fact]
    public void AQuantizedTensorIsNotRequantized()
    {
        Assert.Equal(TensorDType.Q4_K, LoadQuantizer.Choose("m.gguf", "model.layers.0.mlp.up_proj.weight", TensorDType.Q4_K, 256, WeightQuantization.Q4_K));
        Assert.Equal(TensorDType.Q6_K, LoadQuantizer.Choose("m.gguf", "t", TensorDType.Q6_K, 256, WeightQuantization.None));
        var ex = Assert.Throws<InvalidDataException>(() => LoadQuantizer.Choose("m.gguf", "model.layers.0.mlp.up_proj.weight", TensorDType.Q6_K, 256, WeightQuantization.Nf4));
        Assert.Contains("model.layers.0.mlp.up_proj.weight", ex.Message, StringComparison.Ordinal);
        Assert.Contains("Q6_K", ex.Message, StringComparison.Ordinal);
        Assert.Contains("'nf4'", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void AnExecutorRefusesToRequantizeAStoredBlockType()
    {
        using var dense = new RandomLlama(Shape);
        using var packed = new PackedModel(dense, TensorDType.Q4_K);
        var factory = new CpuBlockExecutorFactory(new CpuExecutorOptions { ThreadCount = 1, Quantization = WeightQuantization.Nf4 });
        var ex = Assert.Throws<InvalidDataException>(() => factory.Create(packed, new BlockRange(0, 1)));
        Assert.Contains("memory://packed", ex.Message, StringComparison.Ordinal);
        Assert.Contains("model.layers.0.self_attn.q_proj.weight", ex.Message, StringComparison.Ordinal);
        Assert.Contains("stored as Q4_K", ex.Message, StringComparison.Ordinal);

        // The same quantization as stored is no re-quantization.
        using var same = new CpuBlockExecutorFactory(new CpuExecutorOptions { ThreadCount = 1, Quantization = WeightQuantization.Q4_K }).Create(packed, new BlockRange(0, 1));
        Assert.Equal("q4_k", ((ExecutorWeightsInfo)same.GetService(typeof(ExecutorWeightsInfo))!).Quantization);
    }

    [Theory]
    [InlineData("none")]
    [InlineData("q4_k")]
    [InlineData("int8")]
    public void HugePageCopiesGiveBitIdenticalOutputs(string quant)
    {
        using var model = new RandomLlama(Shape);
        var (copied, _) = Run(model, WeightQuantization.Parse(quant), hugePages: true);
        var (inPlace, _) = Run(model, WeightQuantization.Parse(quant), hugePages: false);
        Assert.Equal(inPlace, copied);
    }

    [Fact]
    public void OptionsRejectAnUnknownQuantization()
    {
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => new CpuBlockExecutorFactory(new CpuExecutorOptions { Quantization = new WeightQuantization("fp8") }));
        Assert.Contains("fp8", ex.Message, StringComparison.Ordinal);
        Assert.Contains("nf4", ex.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(TensorDType.Q8_0)]
    [InlineData(TensorDType.Q4_0)]
    [InlineData(TensorDType.Q4_1)]
    [InlineData(TensorDType.Q5_0)]
    [InlineData(TensorDType.Q5_1)]
    [InlineData(TensorDType.Q4_K)]
    [InlineData(TensorDType.Q6_K)]
    [InlineData(TensorDType.NF4)]
    public void StoredBlockTypesAreServedAsStoredAndMatchTheirDequantizedValues(TensorDType dtype)
    {
        using var dense = new RandomLlama(Shape);
        using var packed = new PackedModel(dense, dtype);
        using var dequantized = packed.Dequantized();
        var (expected, _) = Run(dequantized, WeightQuantization.None);
        var (actual, info) = Run(packed, WeightQuantization.None);
        Assert.Equal(dtype.ToString().ToLowerInvariant(), info.Quantization);
        Assert.Equal([dtype], info.BytesByDType.Keys.ToArray());
        // Prefill runs the packed GEMM over exactly the dequantized values; decode steps quantize their inputs to int8
        // where a fused kernel exists, which bounds the difference at about 1e-2 of the outputs.
        var error = RelativeError(actual, expected);
        Assert.True(error < 0.02, $"{dtype}: relative error {error:G3} against the same weights dequantized.");
    }

    /// <summary>Prefill of 32 tokens (packed GEMM) then 6 decode steps (GEMV) over a 2-block span; all outputs concatenated.</summary>
    private static (float[] Outputs, ExecutorWeightsInfo Info) Run(IModelWeights model, WeightQuantization quantization, bool hugePages = true)
    {
        var factory = new CpuBlockExecutorFactory(new CpuExecutorOptions { ThreadCount = 2, Quantization = quantization, HugePageWeights = hugePages });
        using var executor = factory.Create(model, new BlockRange(0, model.Config.NumLayers));
        var info = (ExecutorWeightsInfo)executor.GetService(typeof(ExecutorWeightsInfo))!;
        var h = model.Config.HiddenSize;
        var random = new Random(3);
        var outputs = new List<float>();
        using var cache = executor.CreateCache(1, 64);
        var prefill = new float[32 * h];
        for (var i = 0; i < prefill.Length; i++)
        {
            prefill[i] = (float)((random.NextDouble() * 2) - 1);
        }

        executor.Forward(prefill, 1, 32, cache);
        outputs.AddRange(prefill);
        for (var s = 0; s < 6; s++)
        {
            var step = new float[h];
            for (var i = 0; i < h; i++)
            {
                step[i] = (float)((random.NextDouble() * 2) - 1);
            }

            executor.Forward(step, 1, 1, cache);
            outputs.AddRange(step);
        }

        return (outputs.ToArray(), info);
    }

    private static double RelativeError(float[] actual, float[] expected)
    {
        double num = 0, den = 0;
        for (var i = 0; i < actual.Length; i++)
        {
            num += (actual[i] - (double)expected[i]) * (actual[i] - (double)expected[i]);
            den += (double)expected[i] * expected[i];
        }

        return Math.Sqrt(num / den);
    }

    /// <summary>A model whose linear weights are stored block-quantized (like a quantized GGUF), norms as given.</summary>
    private sealed class PackedModel : IModelWeights
    {
        private readonly Dictionary<string, WeightTensor> _tensors = new(StringComparer.Ordinal);

        public PackedModel(RandomLlama source, TensorDType dtype)
        {
            Config = source.Config;
            foreach (var (name, descriptor) in source.Tensors)
            {
                var tensor = source.GetTensor(name);
                if (descriptor.Shape.Count == 2)
                {
                    var values = source.Values(name).Select(v => (float)v).ToArray();
                    var bytes = new byte[dtype.ByteSize(values.Length)];
                    BlockQuantization.Quantize(dtype, values, bytes);
                    tensor = new WeightTensor(descriptor with { DType = dtype }, bytes);
                }

                _tensors[name] = tensor;
            }
        }

        private PackedModel(ModelConfig config, Dictionary<string, WeightTensor> tensors)
        {
            Config = config;
            _tensors = tensors;
        }

        public ModelConfig Config { get; }

        public string Source => "memory://packed";

        public IReadOnlyDictionary<string, TensorDescriptor> Tensors => _tensors.ToDictionary(p => p.Key, p => p.Value.Descriptor);

        public WeightTensor GetTensor(string name) => _tensors[name];

        /// <summary>The same model with its packed weights dequantized to F32 by the reference codec.</summary>
        public PackedModel Dequantized()
        {
            var tensors = new Dictionary<string, WeightTensor>(StringComparer.Ordinal);
            foreach (var (name, t) in _tensors)
            {
                if (t.Descriptor.DType.IsBlockQuantized())
                {
                    var values = new float[t.Descriptor.ElementCount];
                    BlockQuantization.Dequantize(t.Descriptor.DType, t.Data.Span, values);
                    var bytes = new byte[values.Length * 4];
                    Buffer.BlockCopy(values, 0, bytes, 0, bytes.Length);
                    tensors[name] = new WeightTensor(t.Descriptor with { DType = TensorDType.F32 }, bytes);
                }
                else
                {
                    tensors[name] = t;
                }
            }

            return new PackedModel(Config, tensors);
        }

        public void Dispose()
        {
        }
    }
}
