using Petals.Execution;
using Petals.Models;
using Petals.Tensors;

namespace Petals.Backends.Cpu.Tests.Backward;

/// <summary>
/// The executor's backward pass against the independent float64 reference (<see cref="ReferenceBackward"/>) and central
/// finite differences, and its refusals of bad input.
/// </summary>
public sealed class BackwardTests
{
    /// <summary>The bound on the norm-wise relative error of a gradient tensor.</summary>
    private const double Tolerance = 1e-4;

    [Theory]
    [InlineData("gqa", TensorDType.F32, 3, 0, 3, 2, 7)]
    [InlineData("llama3", TensorDType.F32, 3, 1, 3, 2, 9)]
    [InlineData("mha", TensorDType.F16, 2, 0, 2, 1, 5)]
    [InlineData("wide", TensorDType.BF16, 3, 0, 2, 2, 4)]
    [InlineData("odd", TensorDType.F32, 2, 0, 2, 2, 3)]
    [InlineData("gqa", TensorDType.F32, 2, 0, 2, 2, 15)]
    [InlineData("gqa", TensorDType.F16, 1, 0, 1, 1, 1)]
    public void BackwardMatchesTheFloat64Reference(string shape, TensorDType dtype, int layers, int start, int end, int batch, int tokens)
    {
        var config = TestConfigs.Get(shape, layers);
        using var model = new RandomLlama(config, dtype, seed: 7 + layers);
        using var executor = ExecutorChecks.Managed(2).Create(model, new BlockRange(0, layers));
        var sub = new BlockRange(start, end);
        var reference = new ReferenceBackward(config, model.Values);
        AssertMatchesReference(executor, reference, sub, batch, tokens, seed: tokens);
    }

    [Fact]
    public void BackwardOverQuantizedWeightsMatchesTheReferenceOverTheDequantizedWeights()
    {
        var config = TestConfigs.Get("gqa", layers: 2);
        using var model = new RandomLlama(config, TensorDType.F32, seed: 5);
        var factory = new CpuBlockExecutorFactory(new CpuExecutorOptions
        {
            ThreadCount = 2,
            NativeBlas = NativeBlasMode.Never,
            ParallelMinMultiplyAdds = 0,
            Quantization = WeightQuantization.Q8_0,
        });
        using var executor = factory.Create(model, new BlockRange(0, 2));
        Assert.Equal("q8_0", ((ExecutorWeightsInfo)executor.GetService(typeof(ExecutorWeightsInfo))!).Quantization);
        var weights = Dequantized((CpuBlockExecutor)executor, model, 2);
        var reference = new ReferenceBackward(config, name => weights.TryGetValue(name, out var w) ? w : model.Values(name));

        // The quantized weights differ from the stored ones: the reference over the stored ones would not match.
        var stored = model.Values(LlamaTensorNames.Block(0, LlamaTensorNames.UpProj));
        var dequantized = weights[LlamaTensorNames.Block(0, LlamaTensorNames.UpProj)];
        Assert.NotEqual(stored, dequantized);
        // 30 rows: the recomputed forward runs the packed GEMM, which widens the stored weights to fp32 exactly (the fused
        // decode kernels of fewer rows also quantize the activations, an error the fp32 reference does not model).
        AssertMatchesReference(executor, reference, new BlockRange(0, 2), batch: 2, tokens: 15, seed: 3);
    }

    [Fact]
    public void TheReferenceBackwardMatchesCentralFiniteDifferences()
    {
        var config = TestConfigs.Get("llama3", layers: 2) with { IntermediateSize = 24, HiddenSize = 16, NumHeads = 4, NumKeyValueHeads = 2, HeadDim = 4 };
        using var model = new RandomLlama(config, TensorDType.F32, seed: 11);
        var reference = new ReferenceBackward(config, model.Values);
        int batch = 2, tokens = 4;
        var x = Doubles(Accuracy.RandomHidden(batch * tokens * config.HiddenSize, 1));
        var gOut = Doubles(Accuracy.RandomHidden(x.Length, 2));
        var (dx, _, _) = reference.Backward(0, 2, x, gOut, batch, tokens);
        var v = Doubles(Accuracy.RandomHidden(x.Length, 3));
        double Loss(double[] input) => Dot(reference.Forward(0, 2, input, batch, tokens), gOut);
        var eps = 1e-5;
        var numeric = (Loss(Axpy(x, eps, v)) - Loss(Axpy(x, -eps, v))) / (2 * eps);
        Assert.True(Math.Abs(numeric - Dot(dx, v)) <= 1e-7 * Math.Max(1, Math.Abs(numeric)), $"directional derivative: numeric {numeric}, analytic {Dot(dx, v)}");

        // Per element on a few coordinates too.
        foreach (var i in new[] { 0, 17, x.Length - 1 })
        {
            var e = new double[x.Length];
            e[i] = 1;
            var n = (Loss(Axpy(x, eps, e)) - Loss(Axpy(x, -eps, e))) / (2 * eps);
            Assert.True(Math.Abs(n - dx[i]) <= 1e-7 * Math.Max(1, Math.Abs(n)), $"element {i}: numeric {n}, analytic {dx[i]}");
        }
    }

    [Fact]
    public void TheExecutorBackwardMatchesCentralFiniteDifferencesOfItsOwnForward()
    {
        var config = TestConfigs.Get("gqa", layers: 2);
        using var model = new RandomLlama(config, TensorDType.F32, seed: 13);
        using var executor = ExecutorChecks.Managed(2).Create(model, new BlockRange(0, 2));
        int batch = 2, tokens = 5;
        var x = Accuracy.RandomHidden(batch * tokens * config.HiddenSize, 4);
        var gOut = Accuracy.RandomHidden(x.Length, 5);
        var dx = (float[])gOut.Clone();
        executor.Backward(x, dx, batch, tokens, executor.Blocks);
        var v = Accuracy.RandomHidden(x.Length, 6);
        double Loss(float[] input)
        {
            var h = (float[])input.Clone();
            executor.Forward(h, batch, tokens, null);
            return Dot(Doubles(h), Doubles(gOut));
        }

        var eps = 1e-2f;
        var numeric = (Loss(Axpy(x, eps, v)) - Loss(Axpy(x, -eps, v))) / (2 * eps);
        var analytic = Dot(Doubles(dx), Doubles(v));
        Assert.True(Math.Abs(numeric - analytic) <= 2e-3 * Math.Abs(analytic), $"numeric {numeric}, analytic {analytic}");
    }

    [Fact]
    public void BackwardKeepsNothingBetweenCalls()
    {
        var config = TestConfigs.Get("gqa", layers: 2);
        using var model = new RandomLlama(config, TensorDType.F32, seed: 3);
        using var executor = ExecutorChecks.Managed(2).Create(model, new BlockRange(0, 2));
        var h = config.HiddenSize;
        var x = Accuracy.RandomHidden(2 * 6 * h, 1);
        var g = Accuracy.RandomHidden(x.Length, 2);
        var first = (float[])g.Clone();
        executor.Backward(x, first, 2, 6, executor.Blocks);

        // A larger call and a forward with a cache in between change nothing.
        var big = Accuracy.RandomHidden(3 * 20 * h, 3);
        executor.Backward(Accuracy.RandomHidden(big.Length, 4), big, 3, 20, new BlockRange(1, 2));
        using var cache = executor.CreateCache(1, 8);
        executor.Forward(Accuracy.RandomHidden(4 * h, 5), 1, 4, cache);
        var second = (float[])g.Clone();
        executor.Backward(x, second, 2, 6, executor.Blocks);
        Assert.Equal(first, second);
        Assert.NotEqual(g, first);
    }

    [Fact]
    public void BadInputIsRefusedPreciselyAndChangesNothing()
    {
        var config = TestConfigs.Get("gqa", layers: 2);
        using var model = new RandomLlama(config, TensorDType.F32, seed: 3);
        using var executor = ExecutorChecks.Managed(1).Create(model, new BlockRange(0, 2));
        var h = config.HiddenSize;
        var x = Accuracy.RandomHidden(2 * 3 * h, 1);
        var g = Accuracy.RandomHidden(x.Length, 2);
        var original = (float[])g.Clone();

        var ex = Assert.Throws<ArgumentException>(() => executor.Backward(x.AsSpan(1), g, 2, 3, executor.Blocks));
        Assert.Equal("inputs", ex.ParamName);
        Assert.Contains("383", ex.Message, StringComparison.Ordinal);
        ex = Assert.Throws<ArgumentException>(() => executor.Backward(x, g.AsSpan(0, h), 2, 3, executor.Blocks));
        Assert.Equal("gradients", ex.ParamName);
        Assert.Throws<ArgumentOutOfRangeException>(() => executor.Backward(x, g, 0, 3, executor.Blocks));
        Assert.Throws<ArgumentOutOfRangeException>(() => executor.Backward(x, g, 2, 3, new BlockRange(1, 3)));

        var badInput = (float[])x.Clone();
        badInput[77] = float.NaN;
        ex = Assert.Throws<ArgumentException>(() => executor.Backward(badInput, g, 2, 3, executor.Blocks));
        Assert.Equal("inputs", ex.ParamName);
        Assert.Contains("NaN at index 77", ex.Message, StringComparison.Ordinal);

        var badGrad = (float[])g.Clone();
        badGrad[300] = float.PositiveInfinity;
        ex = Assert.Throws<ArgumentException>(() => executor.Backward(x, badGrad, 2, 3, executor.Blocks));
        Assert.Equal("gradients", ex.ParamName);
        Assert.Contains("at index 300", ex.Message, StringComparison.Ordinal);
        Assert.Equal(float.PositiveInfinity, badGrad[300]);
        badGrad[300] = g[300];
        Assert.Equal(original, badGrad);
        Assert.Equal(original, g);
    }

    internal static void AssertMatchesReference(IBlockExecutor executor, ReferenceBackward reference, BlockRange sub, int batch, int tokens, int seed)
    {
        var h = executor.Config.HiddenSize;
        var x = Accuracy.RandomHidden(batch * tokens * h, seed);
        var gOut = Accuracy.RandomHidden(x.Length, seed + 100);
        var ours = (float[])gOut.Clone();
        executor.Backward(x, ours, batch, tokens, sub);
        var (expected, _, _) = reference.Backward(sub.Start, sub.Count, Doubles(x), Doubles(gOut), batch, tokens);
        AssertRelative(ours, expected, $"dX of blocks {sub}");
    }

    internal static void AssertRelative(ReadOnlySpan<float> ours, double[] reference, string what, double tolerance = Tolerance)
    {
        Assert.Equal(reference.Length, ours.Length);
        double err = 0, norm = 0;
        for (var i = 0; i < reference.Length; i++)
        {
            Assert.True(float.IsFinite(ours[i]), $"{what}: element {i} is {ours[i]}");
            err += (ours[i] - reference[i]) * (ours[i] - reference[i]);
            norm += reference[i] * reference[i];
        }

        Assert.True(norm > 0, $"{what}: the reference is all zeros");
        var rel = Math.Sqrt(err / norm);
        Assert.True(rel <= tolerance, $"{what}: |ours - ref| / |ref| = {rel:E3} > {tolerance:E0}");
    }

    internal static Dictionary<string, double[]> Dequantized(CpuBlockExecutor executor, RandomLlama model, int layers)
    {
        var result = new Dictionary<string, double[]>(StringComparer.Ordinal);
        for (var b = 0; b < layers; b++)
        {
            var w = executor.WeightsOf(b);
            foreach (var (suffix, layer) in new[]
            {
                (LlamaTensorNames.QProj, w.Q), (LlamaTensorNames.KProj, w.K), (LlamaTensorNames.VProj, w.V), (LlamaTensorNames.OProj, w.O),
                (LlamaTensorNames.GateProj, w.Gate), (LlamaTensorNames.UpProj, w.Up), (LlamaTensorNames.DownProj, w.Down),
            })
            {
                var values = new double[layer.OutFeatures * layer.InFeatures];
                var row = new float[layer.InFeatures];
                for (var r = 0; r < layer.OutFeatures; r++)
                {
                    unsafe
                    {
                        fixed (float* p = row)
                        {
                            layer.DequantizeRow(r, p);
                        }
                    }

                    for (var i = 0; i < row.Length; i++)
                    {
                        values[(r * row.Length) + i] = row[i];
                    }
                }

                result[LlamaTensorNames.Block(b, suffix)] = values;
            }
        }

        _ = model;
        return result;
    }

    internal static double[] Doubles(ReadOnlySpan<float> x) => ReferenceBackward.ToDouble(x);

    internal static double Dot(double[] a, double[] b)
    {
        double s = 0;
        for (var i = 0; i < a.Length; i++)
        {
            s += a[i] * b[i];
        }

        return s;
    }

    internal static double[] Axpy(double[] x, double a, double[] v)
    {
        var r = new double[x.Length];
        for (var i = 0; i < x.Length; i++)
        {
            r[i] = x[i] + (a * v[i]);
        }

        return r;
    }

    internal static float[] Axpy(float[] x, float a, float[] v)
    {
        var r = new float[x.Length];
        for (var i = 0; i < x.Length; i++)
        {
            r[i] = x[i] + (a * v[i]);
        }

        return r;
    }
}
