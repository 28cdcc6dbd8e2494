using System.Runtime.InteropServices;
using Petals.Execution;
using Petals.Models;
using Petals.Tensors;
using static Petals.Backends.Cpu.Tests.Backward.BackwardTests;

namespace Petals.Backends.Cpu.Tests.Backward;

/// <summary>
/// Deep prompts and sent LoRA in the executor's forward (stateless and cached) and backward: against the float64
/// reference, finite differences, merged weights, and bad input.
/// </summary>
public sealed class AdaptationTests
{
    private static readonly LoraTarget[] SomeTargets = [LoraTarget.Query, LoraTarget.Value, LoraTarget.Output, LoraTarget.Down];

    [Theory]
    [InlineData("gqa", TensorDType.F32, 3, 0, 3, 2, 6, 2, true)]
    [InlineData("llama3", TensorDType.F16, 3, 1, 3, 2, 5, 5, false)]
    [InlineData("mha", TensorDType.F32, 2, 1, 2, 1, 4, 0, true)]
    [InlineData("gqa", TensorDType.BF16, 2, 0, 2, 2, 13, 3, true)]
    public void BackwardWithPromptsAndLoraMatchesTheFloat64Reference(string shape, TensorDType dtype, int layers, int start, int end, int batch, int tokens, int promptLength, bool allTargets)
    {
        var config = TestConfigs.Get(shape, layers);
        using var model = new RandomLlama(config, dtype, seed: 21);
        using var executor = ExecutorChecks.Managed(2).Create(model, new BlockRange(0, layers));
        var sub = new BlockRange(start, end);
        var lora = RandomLora(config, sub, rank: 3, scale: 0.75f, allTargets ? LoraTargets.All : SomeTargets, seed: 4);
        var prompts = Accuracy.RandomHidden(sub.Count * batch * promptLength * config.HiddenSize, 8);
        var adaptation = new BlockAdaptation { Lora = lora, Prompts = prompts, PromptLength = promptLength };
        var grads = new BlockGradients { Lora = lora.CreateZeros(), Prompts = new float[prompts.Length] };
        grads.Prompts.Span.Fill(float.NaN); // overwritten, not accumulated
        grads.Lora!.Values.Span.Fill(123f);

        var h = config.HiddenSize;
        var x = Accuracy.RandomHidden(batch * tokens * h, 9);
        var gOut = Accuracy.RandomHidden(x.Length, 10);
        var ours = (float[])gOut.Clone();
        executor.Backward(x, ours, batch, tokens, sub, adaptation, grads);

        var reference = new ReferenceBackward(config, model.Values) { Prompts = Doubles(prompts), PromptLength = promptLength };
        reference.UseLora(lora);
        var (dx, dPrompts, dLora) = reference.Backward(sub.Start, sub.Count, Doubles(x), Doubles(gOut), batch, tokens);
        AssertRelative(ours, dx, "dX");
        if (promptLength > 0)
        {
            AssertRelative(grads.Prompts.Span, dPrompts, "dPrompts");
        }

        foreach (var ((block, target), (dA, dB)) in dLora)
        {
            AssertRelative(grads.Lora.A(block, target).Span, dA, $"dA of {target} in block {block}");
            AssertRelative(grads.Lora.B(block, target).Span, dB, $"dB of {target} in block {block}");
        }

        // The forward with the same adaptation matches the reference forward.
        var output = (float[])x.Clone();
        executor.Forward(output, batch, tokens, null, sub, adaptation);
        AssertRelative(output, reference.Forward(sub.Start, sub.Count, Doubles(x), batch, tokens), "adapted forward");
    }

    [Fact]
    public void TheReferenceGradientsOfPromptsAndLoraMatchCentralFiniteDifferences()
    {
        var config = TestConfigs.Get("gqa", layers: 2) with { HiddenSize = 16, IntermediateSize = 24, NumHeads = 4, NumKeyValueHeads = 2, HeadDim = 4 };
        using var model = new RandomLlama(config, TensorDType.F32, seed: 31);
        int batch = 2, tokens = 4, promptLength = 2;
        var lora = RandomLora(config, new BlockRange(0, 2), rank: 2, scale: 1.5f, LoraTargets.All, seed: 5);
        var prompts = Doubles(Accuracy.RandomHidden(2 * batch * promptLength * config.HiddenSize, 6));
        var reference = new ReferenceBackward(config, model.Values) { Prompts = prompts, PromptLength = promptLength };
        reference.UseLora(lora);
        var x = Doubles(Accuracy.RandomHidden(batch * tokens * config.HiddenSize, 7));
        var gOut = Doubles(Accuracy.RandomHidden(x.Length, 8));
        var (_, dPrompts, dLora) = reference.Backward(0, 2, x, gOut, batch, tokens);
        double Loss() => Dot(reference.Forward(0, 2, x, batch, tokens), gOut);
        const double eps = 1e-5;

        // Prompts: one directional derivative.
        var v = Doubles(Accuracy.RandomHidden(prompts.Length, 9));
        reference.Prompts = Axpy(prompts, eps, v);
        var plus = Loss();
        reference.Prompts = Axpy(prompts, -eps, v);
        var minus = Loss();
        reference.Prompts = prompts;
        AssertNear((plus - minus) / (2 * eps), Dot(dPrompts, v), "prompts");

        // LoRA: A and B of two targets in each block.
        foreach (var key in new[] { (0, LoraTarget.Query), (1, LoraTarget.Down), (1, LoraTarget.Key) })
        {
            var (a, b) = reference.Lora![key];
            foreach (var (values, grad, name) in new[] { (a, dLora[key].A, "A"), (b, dLora[key].B, "B") })
            {
                var saved = (double[])values.Clone();
                var dir = Doubles(Accuracy.RandomHidden(values.Length, values.Length));
                Axpy(saved, eps, dir).CopyTo(values, 0);
                var p = Loss();
                Axpy(saved, -eps, dir).CopyTo(values, 0);
                var m = Loss();
                saved.CopyTo(values, 0);
                AssertNear((p - m) / (2 * eps), Dot(grad, dir), $"{name} of {key}");
            }
        }
    }

    [Fact]
    public void TheExecutorGradientsOfPromptsAndLoraMatchFiniteDifferencesOfItsForward()
    {
        var config = TestConfigs.Get("gqa", layers: 2);
        using var model = new RandomLlama(config, TensorDType.F32, seed: 41);
        using var executor = ExecutorChecks.Managed(2).Create(model, new BlockRange(0, 2));
        int batch = 2, tokens = 5, promptLength = 3;
        var lora = RandomLora(config, executor.Blocks, rank: 4, scale: 0.5f, LoraTargets.All, seed: 6);
        var prompts = Accuracy.RandomHidden(2 * batch * promptLength * config.HiddenSize, 7);
        var x = Accuracy.RandomHidden(batch * tokens * config.HiddenSize, 8);
        var gOut = Accuracy.RandomHidden(x.Length, 9);
        var adaptation = new BlockAdaptation { Lora = lora, Prompts = prompts, PromptLength = promptLength };
        var grads = new BlockGradients { Lora = lora.CreateZeros(), Prompts = new float[prompts.Length] };
        var dx = (float[])gOut.Clone();
        executor.Backward(x, dx, batch, tokens, executor.Blocks, adaptation, grads);

        double Loss(BlockAdaptation a)
        {
            var h = (float[])x.Clone();
            executor.Forward(h, batch, tokens, null, executor.Blocks, a);
            return Dot(Doubles(h), Doubles(gOut));
        }

        const float eps = 1e-2f;
        var v = Accuracy.RandomHidden(prompts.Length, 10);
        var numeric = (Loss(adaptation with { Prompts = Axpy(prompts, eps, v) }) - Loss(adaptation with { Prompts = Axpy(prompts, -eps, v) })) / (2 * eps);
        AssertNear(numeric, Dot(Doubles(grads.Prompts.Span), Doubles(v)), "prompts", 2e-3);

        // Every adapter value moves at once, so the step is smaller: an fp32 central difference balances rounding
        // (the loss is a sum of thousands of fp32 outputs) against the curvature of the many-parameter direction.
        var values = lora.Values.ToArray();
        var dir = Accuracy.RandomHidden(values.Length, 11);
        for (var i = 0; i < dir.Length; i++)
        {
            dir[i] *= 0.25f;
        }

        LoraWeights With(float[] vals) => new(config, lora.Blocks, lora.Rank, lora.Scale, lora.Targets, vals);
        numeric = (Loss(adaptation with { Lora = With(Axpy(values, eps, dir)) }) - Loss(adaptation with { Lora = With(Axpy(values, -eps, dir)) })) / (2 * eps);
        AssertNear(numeric, Dot(Doubles(grads.Lora!.Values.Span), Doubles(dir)), "LoRA", 2e-3);

        var vx = Accuracy.RandomHidden(x.Length, 12);
        double LossX(float[] input)
        {
            var h = (float[])input.Clone();
            executor.Forward(h, batch, tokens, null, executor.Blocks, adaptation);
            return Dot(Doubles(h), Doubles(gOut));
        }

        numeric = (LossX(Axpy(x, eps, vx)) - LossX(Axpy(x, -eps, vx))) / (2 * eps);
        AssertNear(numeric, Dot(Doubles(dx), Doubles(vx)), "dX with adaptation", 2e-3);
    }

    [Fact]
    public void PromptsInCachedStepsEqualTheStatelessForward()
    {
        var config = TestConfigs.Get("llama3", layers: 3);
        using var model = new RandomLlama(config, TensorDType.F32, seed: 51);
        using var executor = ExecutorChecks.Managed(2).Create(model, new BlockRange(0, 3));
        var sub = new BlockRange(1, 3);
        int batch = 2, tokens = 7, promptLength = 4, h = config.HiddenSize;
        var lora = RandomLora(config, sub, rank: 2, scale: 1f, SomeTargets, seed: 7);
        var adaptation = new BlockAdaptation
        {
            Prompts = Accuracy.RandomHidden(sub.Count * batch * promptLength * h, 3),
            PromptLength = promptLength,
            Lora = lora,
        };
        var x = Accuracy.RandomHidden(batch * tokens * h, 4);
        var stateless = (float[])x.Clone();
        executor.Forward(stateless, batch, tokens, null, sub, adaptation);

        // Steps of 3, 1 (prompt positions 3) and 3 tokens (past the prompts); decode with LoRA included.
        using var cache = executor.CreateCache(batch, 10, sub);
        var start = 0;
        foreach (var step in new[] { 3, 1, 1, 2 })
        {
            var part = new float[batch * step * h];
            for (var b = 0; b < batch; b++)
            {
                x.AsSpan(((b * tokens) + start) * h, step * h).CopyTo(part.AsSpan(b * step * h));
            }

            executor.Forward(part, batch, step, cache, sub, adaptation);
            for (var b = 0; b < batch; b++)
            {
                var expected = stateless.AsSpan(((b * tokens) + start) * h, step * h);
                var actual = part.AsSpan(b * step * h, step * h);
                AssertRelative(actual, Doubles(expected), $"sequence {b}, positions {start}..{start + step - 1}", 1e-5);
            }

            start += step;
        }

        // Prompts change the outputs (they were applied).
        var plain = (float[])x.Clone();
        executor.Forward(plain, batch, tokens, null, sub);
        Assert.NotEqual(plain, stateless);
    }

    [Fact]
    public void SentLoraEqualsMergedWeights()
    {
        var config = TestConfigs.Get("gqa", layers: 3);
        using var model = new RandomLlama(config, TensorDType.F32, seed: 61);
        var blocks = new BlockRange(1, 3);
        var lora = RandomLora(config, blocks, rank: 4, scale: 0.5f, LoraTargets.All, seed: 8);
        using var merged = new MergedLlama(model, lora);
        using var executor = ExecutorChecks.Managed(2).Create(model, new BlockRange(0, 3));
        using var mergedExecutor = ExecutorChecks.Managed(2).Create(merged, blocks);
        var adaptation = new BlockAdaptation { Lora = lora };
        int batch = 2, h = config.HiddenSize;
        foreach (var tokens in new[] { 3, 20 })
        {
            var x = Accuracy.RandomHidden(batch * tokens * h, tokens);
            var ours = (float[])x.Clone();
            var theirs = (float[])x.Clone();
            executor.Forward(ours, batch, tokens, null, blocks, adaptation);
            mergedExecutor.Forward(theirs, batch, tokens, null);
            AssertRelative(ours, Doubles(theirs), $"stateless, {tokens} tokens", 1e-5);
        }

        // Prefill then decode through caches.
        using var ourCache = executor.CreateCache(batch, 8, blocks);
        using var theirCache = mergedExecutor.CreateCache(batch, 8);
        foreach (var step in new[] { 5, 1, 1 })
        {
            var x = Accuracy.RandomHidden(batch * step * h, 100 + step);
            var ours = (float[])x.Clone();
            executor.Forward(ours, batch, step, ourCache, blocks, adaptation);
            mergedExecutor.Forward(x, batch, step, theirCache);
            AssertRelative(ours, Doubles(x), $"cached step of {step}", 1e-5);
        }

        // The merged weights differ from the frozen ones, so LoRA did something.
        var frozen = Accuracy.RandomHidden(batch * 3 * h, 3);
        var adapted = (float[])frozen.Clone();
        executor.Forward(frozen, batch, 3, null, blocks);
        executor.Forward(adapted, batch, 3, null, blocks, adaptation);
        Assert.NotEqual(frozen, adapted);
    }

    [Fact]
    public void BadAdaptationsAreRefusedAndChangeNothing()
    {
        var config = TestConfigs.Get("gqa", layers: 2);
        using var model = new RandomLlama(config, TensorDType.F32, seed: 3);
        using var executor = ExecutorChecks.Managed(1).Create(model, new BlockRange(0, 2));
        int batch = 2, tokens = 3, h = config.HiddenSize;
        var x = Accuracy.RandomHidden(batch * tokens * h, 1);
        var g = Accuracy.RandomHidden(x.Length, 2);
        var original = (float[])g.Clone();
        var all = executor.Blocks;

        var named = new BlockAdaptation { Adapter = "style" };
        var ex = Assert.Throws<ArgumentException>(() => executor.Backward(x, g, batch, tokens, all, named));
        Assert.Contains("'style'", ex.Message, StringComparison.Ordinal);
        var hidden = (float[])x.Clone();
        ex = Assert.Throws<ArgumentException>(() => executor.Forward(hidden, batch, tokens, null, all, named));
        Assert.Contains("'style'", ex.Message, StringComparison.Ordinal);
        Assert.Equal(x, hidden);

        // Prompts of the wrong size, longer than the pass, or not finite.
        var shortPrompts = new BlockAdaptation { Prompts = new float[(2 * batch * 2 * h) - 1], PromptLength = 2 };
        ex = Assert.Throws<ArgumentException>(() => executor.Backward(x, g, batch, tokens, all, shortPrompts));
        Assert.Contains("Deep prompts hold", ex.Message, StringComparison.Ordinal);
        var tooLong = new BlockAdaptation { Prompts = new float[2 * batch * 4 * h], PromptLength = 4 };
        Assert.Throws<ArgumentException>(() => executor.Backward(x, g, batch, tokens, all, tooLong));
        Assert.Throws<ArgumentException>(() => executor.Forward(hidden, batch, tokens, null, all, tooLong));
        var nan = new float[2 * batch * 2 * h];
        nan[5] = float.NaN;
        ex = Assert.Throws<ArgumentException>(() => executor.Backward(x, g, batch, tokens, all, new BlockAdaptation { Prompts = nan, PromptLength = 2 }));
        Assert.Contains("index 5", ex.Message, StringComparison.Ordinal);

        // LoRA for other blocks; gradients that do not fit the pass.
        var lora = RandomLora(config, new BlockRange(0, 1), rank: 2, scale: 1, SomeTargets, seed: 1);
        ex = Assert.Throws<ArgumentException>(() => executor.Backward(x, g, batch, tokens, all, new BlockAdaptation { Lora = lora }));
        Assert.Contains("0:1", ex.Message, StringComparison.Ordinal);
        var fitting = RandomLora(config, all, rank: 2, scale: 1, SomeTargets, seed: 1);
        var otherRank = RandomLora(config, all, rank: 3, scale: 1, SomeTargets, seed: 1);
        Assert.Throws<ArgumentException>(() => executor.Backward(x, g, batch, tokens, all, new BlockAdaptation { Lora = fitting }, new BlockGradients { Lora = otherRank }));
        Assert.Throws<ArgumentException>(() => executor.Backward(x, g, batch, tokens, all, new BlockAdaptation { Lora = fitting }, new BlockGradients { Prompts = new float[4] }));
        Assert.Equal(original, g);
        Assert.Equal(x, hidden);
    }

    internal static LoraWeights RandomLora(ModelConfig config, BlockRange blocks, int rank, float scale, IReadOnlyList<LoraTarget> targets, int seed)
    {
        var lora = new LoraWeights(config, blocks, rank, scale, targets);
        var random = new Random(seed);
        var span = lora.Values.Span;
        for (var i = 0; i < span.Length; i++)
        {
            span[i] = (float)(0.3 * ((2 * random.NextDouble()) - 1));
        }

        return lora;
    }

    private static void AssertNear(double numeric, double analytic, string what, double tolerance = 1e-7) =>
        Assert.True(Math.Abs(numeric - analytic) <= tolerance * Math.Max(1, Math.Abs(analytic)), $"{what}: numeric {numeric:R}, analytic {analytic:R}");

    /// <summary>A model whose adapted weights are merged: <c>W + Scale · B A</c> (fp32), the other tensors as in the base.</summary>
    private sealed class MergedLlama(RandomLlama inner, LoraWeights lora) : IModelWeights
    {
        public ModelConfig Config => inner.Config;

        public string Source => "memory://merged";

        public IReadOnlyDictionary<string, TensorDescriptor> Tensors => inner.Tensors;

        public WeightTensor GetTensor(string name)
        {
            foreach (var target in lora.Targets)
            {
                for (var b = lora.Blocks.Start; b < lora.Blocks.End; b++)
                {
                    if (name == LlamaTensorNames.Block(b, Suffix(target)))
                    {
                        return Merge(name, b, target);
                    }
                }
            }

            return inner.GetTensor(name);
        }

        public void Dispose()
        {
        }

        private WeightTensor Merge(string name, int block, LoraTarget target)
        {
            var w = inner.Values(name);
            var a = lora.A(block, target).Span;
            var bm = lora.B(block, target).Span;
            int inF = LoraTargets.InFeatures(Config, target), outF = LoraTargets.OutFeatures(Config, target), r = lora.Rank;
            var merged = new float[w.Length];
            for (var o = 0; o < outF; o++)
            {
                for (var i = 0; i < inF; i++)
                {
                    double s = 0;
                    for (var j = 0; j < r; j++)
                    {
                        s += (double)bm[(o * r) + j] * a[(j * inF) + i];
                    }

                    merged[(o * inF) + i] = (float)(w[(o * inF) + i] + (lora.Scale * s));
                }
            }

            return new WeightTensor(new TensorDescriptor(name, TensorDType.F32, [outF, inF]), MemoryMarshal.AsBytes(merged.AsSpan()).ToArray());
        }

        private static string Suffix(LoraTarget t) => t switch
        {
            LoraTarget.Query => LlamaTensorNames.QProj,
            LoraTarget.Key => LlamaTensorNames.KProj,
            LoraTarget.Value => LlamaTensorNames.VProj,
            LoraTarget.Output => LlamaTensorNames.OProj,
            LoraTarget.Gate => LlamaTensorNames.GateProj,
            LoraTarget.Up => LlamaTensorNames.UpProj,
            _ => LlamaTensorNames.DownProj,
        };
    }
}
