using Petals.Formats;
using Petals.Formats.Gguf;
using Petals.Formats.HuggingFace;
using Petals.Formats.Safetensors;
using Petals.Models;
using Petals.Tensors;
using Petals.Testing;

namespace Petals.Tests.Formats;

public sealed class ModelConverterTests : IDisposable
{
    private readonly TempDirectory _dir = TestData.CreateTempDirectory();

    public void Dispose() => _dir.Dispose();

    [Theory]
    [InlineData(1, GgufTensorType.F32, TensorDType.F32)]
    [InlineData(2, GgufTensorType.F16, TensorDType.F16)]
    [InlineData(3, GgufTensorType.Q8_0, TensorDType.F32)]
    [InlineData(3, GgufTensorType.Q4_1, TensorDType.F32)]
    public void ConvertedTensorsEqualTheServedGgufTensors(int version, GgufTensorType type, TensorDType converted)
    {
        var config = GgufModels.SmallConfig();
        var gguf = GgufModels.Create(config, version, type, seed: 17).Write(Path.Combine(_dir.Path, "m.gguf"));
        var outDir = Path.Combine(_dir.Path, "hf");
        var reports = new List<ModelConversionProgress>();
        var written = ModelConverter.ConvertGgufToHuggingFace(gguf, outDir, new SyncProgress(reports), TestContext.Current.CancellationToken);
        GgufModelWeightsTests.AssertConfigEqual(config, written);

        using var original = GgufModelWeights.Open(gguf);
        using var hf = ModelLoader.Open(outDir);
        Assert.IsType<HuggingFaceModelWeights>(hf);
        GgufModelWeightsTests.AssertConfigEqual(original.Config, hf.Config);
        Assert.Equal(original.Tensors.Keys.Order(), hf.Tensors.Keys.Order());
        foreach (var name in original.Tensors.Keys)
        {
            var a = original.GetFloatTensor(name);
            var b = hf.GetTensor(name);
            Assert.Equal(a.Descriptor.DType, b.Descriptor.DType);
            Assert.Equal(a.Descriptor.Shape, b.Descriptor.Shape);
            Assert.Equal(a.Data.ToArray(), b.Data.ToArray());
        }

        Assert.Equal(converted, hf.Tensors[LlamaTensorNames.Block(0, LlamaTensorNames.QProj)].DType);
        Assert.Equal(TensorDType.F32, hf.Tensors[LlamaTensorNames.FinalNorm].DType);
        Assert.Equal(original.Tensors.Count, reports.Count);
        Assert.Equal(reports[^1].BytesTotal, reports[^1].BytesDone);
        Assert.Equal(Enumerable.Range(1, reports.Count), reports.Select(r => r.TensorsDone));
    }

    [Fact]
    public void AdditionalFilesHookSeesTheGgufFileAndShardingWorks()
    {
        var config = GgufModels.SmallConfig(tied: true);
        var gguf = GgufModels.Create(config, 3, GgufTensorType.F16, seed: 2).Write(Path.Combine(_dir.Path, "m.gguf"));
        var outDir = Path.Combine(_dir.Path, "hf");
        string? seenTokenizerModel = null;
        ModelConverter.ConvertGgufToHuggingFace(gguf, outDir, new GgufConversionOptions
        {
            MaxShardBytes = 20_000,
            WriteAdditionalFiles = (file, dir) =>
            {
                seenTokenizerModel = file.Tokenizer.Model;
                File.WriteAllText(Path.Combine(dir, "tokenizer.txt"), string.Join('\n', file.Tokenizer.Tokens!));
            },
        }, TestContext.Current.CancellationToken);
        Assert.Equal("llama", seenTokenizerModel);
        Assert.Equal(config.VocabSize, File.ReadAllLines(Path.Combine(outDir, "tokenizer.txt")).Length);
        Assert.True(File.Exists(Path.Combine(outDir, SafetensorsIndex.FileName)));
        using var hf = ModelLoader.Open(outDir);
        Assert.True(hf.Config.TieWordEmbeddings);
        Assert.False(hf.Tensors.ContainsKey(LlamaTensorNames.LmHead));
    }

    [Fact]
    public void CancellationStopsTheConversionAndLeavesNoPartialShard()
    {
        var config = GgufModels.SmallConfig();
        var gguf = GgufModels.Create(config, 3, GgufTensorType.F32, seed: 2).Write(Path.Combine(_dir.Path, "m.gguf"));
        var outDir = Path.Combine(_dir.Path, "hf");
        using var cts = new CancellationTokenSource();
        var progress = new SyncProgress([], r =>
        {
            if (r.TensorsDone == 3)
            {
                cts.Cancel();
            }
        });
        Assert.ThrowsAny<OperationCanceledException>(() => ModelConverter.ConvertGgufToHuggingFace(gguf, outDir, progress, cts.Token));
        Assert.False(File.Exists(Path.Combine(outDir, HuggingFaceModelWeights.SingleFileName)));
    }

    [Fact]
    public void RealStories260KConvertsLosslessly()
    {
        if (!TestData.SharedAvailable)
        {
            Assert.Skip(TestData.MissingMessage);
        }

        var outDir = Path.Combine(_dir.Path, "stories");
        ModelConverter.ConvertGgufToHuggingFace(TestData.Stories260KGguf, outDir, progress: null, TestContext.Current.CancellationToken);
        using var original = GgufModelWeights.Open(TestData.Stories260KGguf);
        using var hf = HuggingFaceModelWeights.Open(outDir);
        GgufModelWeightsTests.AssertConfigEqual(original.Config, hf.Config);
        foreach (var name in original.Tensors.Keys)
        {
            Assert.Equal(original.GetTensor(name).Data.ToArray(), hf.GetTensor(name).Data.ToArray());
        }
    }

    /// <summary>Reports synchronously (Progress&lt;T&gt; would post to the thread pool).</summary>
    private sealed class SyncProgress(List<ModelConversionProgress> reports, Action<ModelConversionProgress>? onReport = null) : IProgress<ModelConversionProgress>
    {
        public void Report(ModelConversionProgress value)
        {
            reports.Add(value);
            onReport?.Invoke(value);
        }
    }
}
