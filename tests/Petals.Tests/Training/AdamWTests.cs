using Petals.Training;

namespace Petals.Tests.Training;

public sealed class AdamWTests
{
    [Fact]
    public void TwoStepsEqualTheHandComputedValues()
    {
        // p = 1, lr 0.1, wd 0.01, β = (0.9, 0.999), ε = 1e-8; g = 0.5 then −0.25.
        // Step 1: p = 1·0.999 − 0.1·(0.05/0.1)/(√(0.00025/0.001)+1e-8) = 0.899000002.
        // Step 2: m = 0.02, v = 0.00031225; p = 0.899000002·0.999 − 0.1·(0.02/0.19)/(√(0.00031225/0.001999)+1e-8) = 0.87146729870…
        var p = new TrainableParameter("w", [1]);
        var bias = new TrainableParameter("b", [1], weightDecay: false);
        p.Values[0] = 1;
        bias.Values[0] = 1;
        var adam = new AdamW([p, bias], new AdamWOptions { LearningRate = 0.1, WeightDecay = 0.01 });

        p.Gradient[0] = bias.Gradient[0] = 0.5f;
        adam.Step();
        Assert.Equal(0.899000002f, p.Values[0]);
        Assert.Equal(0.9f, bias.Values[0], 6);

        p.Gradient[0] = bias.Gradient[0] = -0.25f;
        adam.Step();
        Assert.Equal(0.8714672987058463, p.Values[0], 6);
        Assert.Equal(2, adam.StepCount);
        Assert.Equal(0.02f, adam.FirstMoments[0][0], 6);
        Assert.Equal(0.00031225f, adam.SecondMoments[0][0], 8);
    }

    [Fact]
    public void BadHyperParametersAreRefusedByName()
    {
        var e = Assert.Throws<ArgumentException>(() => new AdamW([], new AdamWOptions { Beta2 = 1 }));
        Assert.Contains("Beta2", e.Message, StringComparison.Ordinal);
        e = Assert.Throws<ArgumentException>(() => new AdamW([], new AdamWOptions { LearningRate = 0 }));
        Assert.Contains("LearningRate", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void RestoreRefusesMomentsOfAnotherShape()
    {
        var adam = new AdamW([new TrainableParameter("w", [2])], new AdamWOptions());
        var e = Assert.Throws<ArgumentException>(() => adam.Restore(3, [new float[3]], [new float[3]]));
        Assert.Contains("'w'", e.Message, StringComparison.Ordinal);
    }
}
