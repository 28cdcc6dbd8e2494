using BenchmarkDotNet.Attributes;
using Petals.Backends.Cpu;
using Petals.Execution;
using Petals.Models;
using Petals.Tensors;

namespace Petals.Benchmarks;

/// <summary>
/// BenchmarkDotNet micro-benchmark of one decode step through the CPU executor (<c>micro --filter *DecodeStep*</c>).
/// The side-by-side comparison with PyTorch is the <c>block</c> command (bench/compare-block.sh), not this.
/// </summary>
[MemoryDiagnoser]
public class DecodeStepBenchmarks
{
    private InMemoryBlockWeights? _weights;
    private IBlockExecutor? _executor;
    private IKvCache? _cache;
    private float[] _input = [];
    private float[] _hidden = [];

    [Params("tiny", "llama2-7b")]
    public string Shape { get; set; } = "tiny";

    [Params(TensorDType.F32, TensorDType.BF16)]
    public TensorDType DType { get; set; } = TensorDType.F32;

    [Params(128)]
    public int Position { get; set; } = 128;

    [GlobalSetup]
    public void Setup()
    {
        var config = BlockShapes.Get(Shape);
        _weights = InMemoryBlockWeights.CreateRandom(config, DType, 1234);
        _executor = new CpuBlockExecutorFactory(new CpuExecutorOptions { ThreadCount = Environment.ProcessorCount })
            .Create(_weights, new BlockRange(0, 1));
        _cache = _executor.CreateCache(1, Position + 1);
        var history = new float[Position * config.HiddenSize];
        InMemoryBlockWeights.FillUniform(history, 1, 0f, 1.7f);
        _executor.Forward(history, 1, Position, _cache);
        _input = new float[config.HiddenSize];
        InMemoryBlockWeights.FillUniform(_input, 2, 0f, 1.7f);
        _hidden = new float[config.HiddenSize];
    }

    [Benchmark]
    public float DecodeStep()
    {
        _cache!.Truncate(Position);
        _input.CopyTo(_hidden, 0);
        _executor!.Forward(_hidden, 1, 1, _cache);
        return _hidden[0];
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _cache?.Dispose();
        _executor?.Dispose();
        _weights?.Dispose();
    }
}
