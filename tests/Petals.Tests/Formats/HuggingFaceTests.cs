using System.Text;
using Petals.Formats;
using Petals.Formats.HuggingFace;
using Petals.Formats.Safetensors;
using Petals.Models;
using Petals.Tensors;
using Petals.Testing;

namespace Petals.Tests.Formats;

public sealed class HuggingFaceTests : IDisposable
{
    private readonly TempDirectory _dir = TestData.CreateTempDirectory();

    public void Dispose() => _dir.Dispose();

    private const string Llama3Config = """
        {
          "architectures": ["LlamaForCausalLM"],
          "model_type": "llama",
          "hidden_size": 2048,
          "intermediate_size": 8192,
          "num_hidden_layers": 16,
          "num_attention_heads": 32,
          "num_key_value_heads": 8,
          "head_dim": 64,
          "vocab_size": 128256,
          "max_position_embeddings": 131072,
          "rms_norm_eps": 1e-05,
          "rope_theta": 500000.0,
          "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0, "original_max_position_embeddings": 8192, "rope_type": "llama3"},
          "tie_word_embeddings": true,
          "bos_token_id": 128000,
          "eos_token_id": [128001, 128008, 128009],
          "torch_dtype": "bfloat16"
        }
        """;

    private ModelConfig Parse(string json) => HuggingFaceConfig.Parse(Encoding.UTF8.GetBytes(json), "config.json");

    [Fact]
    public void Llama3ConfigIsRead()
    {
        var c = Parse(Llama3Config);
        Assert.Equal("llama", c.Architecture);
        Assert.Equal(2048, c.HiddenSize);
        Assert.Equal(8192, c.IntermediateSize);
        Assert.Equal(16, c.NumLayers);
        Assert.Equal(32, c.NumHeads);
        Assert.Equal(8, c.NumKeyValueHeads);
        Assert.Equal(64, c.HeadDim);
        Assert.Equal(128256, c.VocabSize);
        Assert.Equal(131072, c.MaxPositionEmbeddings);
        Assert.Equal(1e-5, c.RmsNormEps);
        Assert.Equal(500000.0, c.RopeTheta);
        Assert.Equal(new RopeScaling("llama3", 32, 1, 4, 8192), c.RopeScaling);
        Assert.True(c.TieWordEmbeddings);
        Assert.Equal(128000, c.BosTokenId);
        Assert.Equal([128001, 128008, 128009], c.EosTokenIds);
    }

    [Fact]
    public void DefaultsApply()
    {
        var c = Parse("""{"model_type": "llama", "hidden_size": 64, "intermediate_size": 100, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 10, "eos_token_id": 2, "rope_scaling": {"type": "default"}}""");
        Assert.Equal(4, c.NumKeyValueHeads);
        Assert.Equal(16, c.HeadDim);
        Assert.Equal(10000.0, c.RopeTheta);
        Assert.Equal(1e-6, c.RmsNormEps);
        Assert.Equal(2048, c.MaxPositionEmbeddings);
        Assert.False(c.TieWordEmbeddings);
        Assert.Null(c.BosTokenId);
        Assert.Equal([2], c.EosTokenIds);
        Assert.Null(c.RopeScaling);
        var legacy = Parse("""{"model_type": "llama", "hidden_size": 64, "intermediate_size": 100, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 10, "rope_scaling": {"type": "llama3", "factor": 8}}""");
        Assert.Equal(new RopeScaling("llama3", 8), legacy.RopeScaling);
    }

    [Theory]
    [InlineData("""{"model_type": "gpt2", "hidden_size": 64}""", "model_type")]
    [InlineData("""{"hidden_size": 64}""", "model_type")]
    [InlineData("""{"model_type": "llama", "hidden_size": "64", "intermediate_size": 100, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 10}""", "hidden_size")]
    [InlineData("""{"model_type": "llama", "intermediate_size": 100, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 10}""", "hidden_size")]
    [InlineData("""{"model_type": "llama", "hidden_size": 64, "intermediate_size": 100, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 10, "rope_scaling": {"rope_type": "yarn", "factor": 4}}""", "rope_scaling.rope_type")]
    [InlineData("""{"model_type": "llama", "hidden_size": 64, "intermediate_size": 100, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 10, "rope_scaling": {"type": "linear", "factor": 4}}""", "rope_scaling.type")]
    [InlineData("""{"model_type": "llama", "hidden_size": 64, "intermediate_size": 100, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 10, "rope_scaling": {"rope_type": "llama3"}}""", "rope_scaling.factor")]
    [InlineData("""{"model_type": "llama", "hidden_size": 64, "intermediate_size": 100, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 10, "rope_scaling": 3}""", "rope_scaling")]
    [InlineData("""{"model_type": "llama", "hidden_size": 64, "intermediate_size": 100, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 3, "vocab_size": 10}""", "num_key_value_heads")]
    [InlineData("""{"model_type": "llama", "hidden_size": 64, "intermediate_size": 100, "num_hidden_layers": 2, "num_attention_heads": 5, "vocab_size": 10}""", "num_attention_heads")]
    [InlineData("""{"model_type": "llama", "hidden_size": 64, "intermediate_size": -1, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 10}""", "intermediate_size")]
    [InlineData("""{"model_type": "llama", "hidden_size": 64, "intermediate_size": 100, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 10, "eos_token_id": "x"}""", "eos_token_id")]
    [InlineData("""{"model_type": "llama", "hidden_size": 64, "intermediate_size": 100, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 10, "eos_token_id": [1, 2.5]}""", "eos_token_id")]
    [InlineData("""{"model_type": "llama", "hidden_size": 64, "intermediate_size": 100, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 10, "tie_word_embeddings": 1}""", "tie_word_embeddings")]
    [InlineData("""{"model_type": "llama", "hidden_size": 64, "intermediate_size": 100, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 10, "rms_norm_eps": 0}""", "rms_norm_eps")]
    [InlineData("""{"model_type": "mistral", "hidden_size": 64, "intermediate_size": 100, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 10, "sliding_window": 16}""", "sliding_window")]
    [InlineData("""{"model_type": "llama", "hidden_size": 99999999999, "intermediate_size": 100, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 10}""", "hidden_size")]
    public void BadConfigsAreRejectedNamingTheField(string json, string field)
    {
        var ex = Assert.Throws<ModelFormatException>(() => Parse(json));
        Assert.Equal("config.json", ex.FilePath);
        Assert.Equal(field, ex.Field);
        Assert.Contains(field, ex.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("{")]
    [InlineData("[]")]
    [InlineData("")]
    public void InvalidJsonIsRejected(string json)
    {
        var ex = Assert.Throws<ModelFormatException>(() => Parse(json));
        Assert.Equal("config.json", ex.FilePath);
    }

    [Fact]
    public void OversizedConfigIsRejectedWithoutReadingIt()
    {
        var path = Path.Combine(_dir.Path, "config.json");
        using (var f = File.Create(path))
        {
            f.SetLength(HuggingFaceConfig.MaxFileLength + 1);
        }

        GgufFileTests.AssertFormat(() => HuggingFaceConfig.Read(path), path, null);
    }

    [Fact]
    public void WrittenConfigReadsBackIdentically()
    {
        ModelConfig[] configs =
        [
            Parse(Llama3Config),
            GgufModels.SmallConfig(),
            GgufModels.SmallConfig(tied: true) with { BosTokenId = null, EosTokenIds = [], RmsNormEps = 1.234567890123e-7, RopeTheta = 12345.678 },
            GgufModels.SmallConfig() with { Architecture = "mistral", HeadDim = 32, MaxPositionEmbeddings = 32768 },
        ];
        foreach (var c in configs)
        {
            var path = Path.Combine(_dir.Path, "config.json");
            HuggingFaceConfigWriter.Write(c, path);
            GgufModelWeightsTests.AssertConfigEqual(c, HuggingFaceConfig.Read(path));
        }
    }

    [Theory]
    [InlineData(TensorDType.F32, false)]
    [InlineData(TensorDType.F16, true)]
    [InlineData(TensorDType.BF16, false)]
    public void RandomModelsRoundTripBitwise(TensorDType dtype, bool tied)
    {
        var config = GgufModels.SmallConfig(tied);
        var dir = Path.Combine(_dir.Path, "m");
        var tensors = RandomModels.Write(dir, config, dtype, seed: 4);
        Assert.True(File.Exists(Path.Combine(dir, HuggingFaceModelWeights.SingleFileName)));
        Assert.False(File.Exists(Path.Combine(dir, SafetensorsIndex.FileName)));
        using var w = HuggingFaceModelWeights.Open(dir);
        GgufModelWeightsTests.AssertConfigEqual(config, w.Config);
        Assert.Equal(tensors.Count, w.Tensors.Count);
        foreach (var t in tensors)
        {
            var read = w.GetTensor(t.Descriptor.Name);
            Assert.Equal(t.Descriptor.DType, read.Descriptor.DType);
            Assert.Equal(t.Descriptor.Shape, read.Descriptor.Shape);
            Assert.Equal(t.Data.ToArray(), read.Data.ToArray());
        }

        Assert.Equal(tied, !w.Tensors.ContainsKey(LlamaTensorNames.LmHead));
        Assert.Throws<KeyNotFoundException>(() => w.GetTensor("nope"));

        // The same file opened directly, and through the loader in every accepted form.
        using var single = HuggingFaceModelWeights.Open(Path.Combine(dir, HuggingFaceModelWeights.SingleFileName));
        Assert.Equal(tensors.Count, single.Tensors.Count);
        using var viaDir = ModelLoader.Open(dir);
        Assert.IsType<HuggingFaceModelWeights>(viaDir);
        using var viaFile = ModelLoader.Open(Path.Combine(dir, HuggingFaceModelWeights.SingleFileName));
        Assert.Equal(tensors[0].Data.ToArray(), viaFile.GetTensor(tensors[0].Descriptor.Name).Data.ToArray());
    }

    [Fact]
    public void ShardedCheckpointsRoundTrip()
    {
        var config = GgufModels.SmallConfig();
        var dir = Path.Combine(_dir.Path, "sharded");
        var tensors = RandomModels.Write(dir, config, TensorDType.F32, seed: 8, maxShardBytes: 40_000);
        var index = SafetensorsIndex.Read(Path.Combine(dir, SafetensorsIndex.FileName));
        Assert.True(index.Shards.Count > 2);
        Assert.False(File.Exists(Path.Combine(dir, HuggingFaceModelWeights.SingleFileName)));
        Assert.Equal(tensors.Sum(t => t.Data.Length).ToString(System.Globalization.CultureInfo.InvariantCulture), index.Metadata["total_size"]);
        using var w = ModelLoader.Open(dir);
        foreach (var t in tensors)
        {
            Assert.Equal(t.Data.ToArray(), w.GetTensor(t.Descriptor.Name).Data.ToArray());
        }
    }

    [Fact]
    public void ShapeDisagreeingWithConfigIsReportedNamingTheTensor()
    {
        var config = GgufModels.SmallConfig();
        var dir = Path.Combine(_dir.Path, "shape");
        var tensors = RandomModels.CreateTensors(config, TensorDType.F32, 1);
        var i = tensors.FindIndex(t => t.Descriptor.Name == LlamaTensorNames.Block(1, LlamaTensorNames.VProj));
        tensors[i] = new WeightTensor(tensors[i].Descriptor with { Shape = [16, 64] }, tensors[i].Data[..(16 * 64 * 4)]);
        Directory.CreateDirectory(dir);
        HuggingFaceConfigWriter.Write(config, Path.Combine(dir, "config.json"));
        var file = Path.Combine(dir, HuggingFaceModelWeights.SingleFileName);
        SafetensorsWriter.Write(file, tensors);
        var ex = GgufFileTests.AssertFormat(() => HuggingFaceModelWeights.Open(dir), file, LlamaTensorNames.Block(1, LlamaTensorNames.VProj));
        Assert.Contains("[16, 64]", ex.Message, StringComparison.Ordinal);

        // The writer refuses the same tensors up front.
        Assert.Throws<ArgumentException>(() => HuggingFaceModelWriter.Write(Path.Combine(_dir.Path, "w"), config, tensors));

        // A missing tensor.
        tensors.RemoveAt(i);
        SafetensorsWriter.Write(file, tensors);
        ex = GgufFileTests.AssertFormat(() => HuggingFaceModelWeights.Open(dir), dir, LlamaTensorNames.Block(1, LlamaTensorNames.VProj));
        Assert.Contains("missing", ex.Message, StringComparison.Ordinal);

        // A non-float weight.
        tensors.Insert(i, new WeightTensor(new TensorDescriptor(LlamaTensorNames.Block(1, LlamaTensorNames.VProj), TensorDType.I32, [32, 64]), new byte[32 * 64 * 4]));
        SafetensorsWriter.Write(file, tensors);
        GgufFileTests.AssertFormat(() => HuggingFaceModelWeights.Open(dir), file, LlamaTensorNames.Block(1, LlamaTensorNames.VProj));
    }

    [Fact]
    public void BrokenShardIndexesAreReported()
    {
        var config = GgufModels.SmallConfig();
        var dir = Path.Combine(_dir.Path, "broken");
        RandomModels.Write(dir, config, TensorDType.F16, seed: 3, maxShardBytes: 30_000);
        var indexPath = Path.Combine(dir, SafetensorsIndex.FileName);
        var index = SafetensorsIndex.Read(indexPath);

        // The index sends a tensor to the wrong shard.
        var name = LlamaTensorNames.Embeddings;
        var map = index.WeightMap.ToDictionary();
        var wrongShard = index.Shards.First(s => s != map[name]);
        map[name] = wrongShard;
        new SafetensorsIndex(map, index.Metadata).Write(indexPath, 0);
        GgufFileTests.AssertFormat(() => HuggingFaceModelWeights.Open(dir), Path.Combine(dir, wrongShard), name);

        // The index names a shard that does not exist.
        map = index.WeightMap.ToDictionary();
        map[name] = "model-99999-of-99999.safetensors";
        new SafetensorsIndex(map, index.Metadata).Write(indexPath, 0);
        GgufFileTests.AssertFormat(() => HuggingFaceModelWeights.Open(dir), indexPath, "model-99999-of-99999.safetensors");
    }

    [Fact]
    public void LoaderRejectsWhatItCannotOpen()
    {
        var missing = Path.Combine(_dir.Path, "nothing-here");
        GgufFileTests.AssertFormat(() => ModelLoader.Open(missing), missing, null);
        var empty = Path.Combine(_dir.Path, "empty");
        Directory.CreateDirectory(empty);
        GgufFileTests.AssertFormat(() => ModelLoader.Open(empty), empty, null);
        var txt = Path.Combine(_dir.Path, "model.bin");
        File.WriteAllText(txt, "x");
        GgufFileTests.AssertFormat(() => ModelLoader.Open(txt), txt, null);
        var lone = Path.Combine(empty, "lone.safetensors");
        SafetensorsWriter.Write(lone, SafetensorsTests.SampleTensors(1));
        GgufFileTests.AssertFormat(() => ModelLoader.Open(lone), lone, null);
        File.WriteAllText(Path.Combine(empty, "config.json"), "{}");
        GgufFileTests.AssertFormat(() => ModelLoader.Open(empty), empty, HuggingFaceModelWeights.SingleFileName);
    }
}
