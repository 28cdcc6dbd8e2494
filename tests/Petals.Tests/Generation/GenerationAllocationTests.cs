using Petals.Backends.Cpu;
using Petals.Formats;
using Petals.Generation;
using Petals.Inference;
using Petals.Models;
using Petals.Tensors;
using Petals.Testing;
using Petals.Tests.Formats;

namespace Petals.Tests.Generation;

/// <summary>Runs alone, after the parallel tests: it counts allocations of every thread (the LM head and the
/// executor use pool and worker threads), which other tests running at the same time would inflate.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class ProcessWideAllocationGroup
{
    public const string Name = "Process-wide allocation measurements";
}

[Collection(ProcessWideAllocationGroup.Name)]
public sealed class GenerationAllocationTests
{
    [Fact]
    public async Task DecodeStepsAllocateNothingPerTokenWithAParallelLmHead()
    {
        using var dir = TestData.CreateTempDirectory();
        var config = new ModelConfig
        {
            HiddenSize = 256, IntermediateSize = 512, NumLayers = 2, NumHeads = 4, NumKeyValueHeads = 2, HeadDim = 64,
            VocabSize = 8192, MaxPositionEmbeddings = 1024, RmsNormEps = 1e-5,
        };
        RandomModels.Write(dir.Path, config, TensorDType.BF16, 3);
        using var weights = ModelLoader.Open(dir.Path);
        using var blocks = new LocalTransformerBlocks([new CpuBlockExecutorFactory(new CpuExecutorOptions { ThreadCount = 2 }).Create(weights, new BlockRange(0, 2))]);
        using var model = new CausalLanguageModel(LanguageModelHead.Load(weights), blocks);

        // Measured inside one generation, between its 20th and 220th token: session set-up (caches sized by the
        // maximum length) is excluded, every decode step (embed, blocks, norm, LM head, sampling) is included.
        async Task<double> BytesPerDecodeStep()
        {
            long at20 = 0, at220 = 0;
            var count = 0;
            await foreach (var _ in model.GenerateAsync([1, 2, 3], new GenerationOptions { MaxNewTokens = 240, StopTokenIds = [] }, TestContext.Current.CancellationToken))
            {
                count++;
                if (count == 20)
                {
                    at20 = GC.GetTotalAllocatedBytes(precise: true);
                }
                else if (count == 220)
                {
                    at220 = GC.GetTotalAllocatedBytes(precise: true);
                }
            }

            return (at220 - at20) / 200.0;
        }

        await BytesPerDecodeStep(); // warm up (JIT, pools)
        var perToken = await BytesPerDecodeStep();
        TestContext.Current.SendDiagnosticMessage($"bytes per generated token: {perToken:F1}");
        Assert.True(perToken < 64, $"{perToken:F1} bytes allocated per generated token");
    }
}
