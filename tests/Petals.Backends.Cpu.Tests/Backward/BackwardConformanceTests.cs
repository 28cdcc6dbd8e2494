using Petals.Backends.Cpu.Tests.Backward;
using Petals.Execution;
using Petals.Models;
using Petals.Tensors;

namespace Petals.Backends.Cpu.Tests;

/// <content>
/// The backward pass and adaptations under every executor configuration of the suite (one, two and three threads, the
/// native BLAS, default options): the same float64 reference, small (streaming kernels) and large enough for the
/// packed GEMMs.
/// </content>
public abstract partial class BlockExecutorConformanceTests
{
    [Theory]
    [InlineData(3)]
    [InlineData(30)]
    public void BackwardWithPromptsAndLoraMatchesTheFloat64Reference(int tokens)
    {
        var config = TestConfigs.Get("gqa", layers: 3);
        using var model = new RandomLlama(config, TensorDType.F32, seed: 71);
        using var executor = CreateFactory().Create(model, new BlockRange(0, 3));
        var sub = new BlockRange(1, 3);
        const int batch = 2, promptLength = 2;
        var lora = AdaptationTests.RandomLora(config, sub, rank: 2, scale: 0.5f, LoraTargets.All, seed: 3);
        var prompts = Accuracy.RandomHidden(sub.Count * batch * promptLength * config.HiddenSize, 4);
        var adaptation = new BlockAdaptation { Lora = lora, Prompts = prompts, PromptLength = promptLength };
        var grads = new BlockGradients { Lora = lora.CreateZeros(), Prompts = new float[prompts.Length] };
        var x = Accuracy.RandomHidden(batch * tokens * config.HiddenSize, 5);
        var gOut = Accuracy.RandomHidden(x.Length, 6);

        // Plain first, then adapted.
        var plain = (float[])gOut.Clone();
        executor.Backward(x, plain, batch, tokens, sub);
        var reference = new ReferenceBackward(config, model.Values);
        BackwardTests.AssertRelative(plain, reference.Backward(sub.Start, sub.Count, BackwardTests.Doubles(x), BackwardTests.Doubles(gOut), batch, tokens).Input, "plain dX");

        var ours = (float[])gOut.Clone();
        executor.Backward(x, ours, batch, tokens, sub, adaptation, grads);
        reference.Prompts = BackwardTests.Doubles(prompts);
        reference.PromptLength = promptLength;
        reference.UseLora(lora);
        var (dx, dPrompts, dLora) = reference.Backward(sub.Start, sub.Count, BackwardTests.Doubles(x), BackwardTests.Doubles(gOut), batch, tokens);
        BackwardTests.AssertRelative(ours, dx, "adapted dX");
        BackwardTests.AssertRelative(grads.Prompts.Span, dPrompts, "dPrompts");
        foreach (var ((block, target), (dA, dB)) in dLora)
        {
            BackwardTests.AssertRelative(grads.Lora.A(block, target).Span, dA, $"dA of {target} in block {block}");
            BackwardTests.AssertRelative(grads.Lora.B(block, target).Span, dB, $"dB of {target} in block {block}");
        }
    }
}
