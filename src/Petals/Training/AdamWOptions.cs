using System.Globalization;

namespace Petals.Training;

/// <summary>Hyper-parameters of <see cref="AdamW"/>.</summary>
public sealed record AdamWOptions
{
    /// <summary>The learning rate. Default 1e-3.</summary>
    public double LearningRate { get; init; } = 1e-3;

    /// <summary>The first-moment decay β1. Default 0.9.</summary>
    public double Beta1 { get; init; } = 0.9;

    /// <summary>The second-moment decay β2. Default 0.999.</summary>
    public double Beta2 { get; init; } = 0.999;

    /// <summary>The denominator's ε. Default 1e-8.</summary>
    public double Epsilon { get; init; } = 1e-8;

    /// <summary>Decoupled weight decay (applied as <c>p ← p (1 − lr·wd)</c> to the parameters that take it). Default 0.01.</summary>
    public double WeightDecay { get; init; } = 0.01;

    /// <summary>The largest global gradient norm; larger gradients are scaled down to it before the step. 0 disables. Default 1.</summary>
    public double MaxGradientNorm { get; init; } = 1.0;

    /// <summary>Checks the values.</summary>
    /// <exception cref="ArgumentException">A value is out of range; the message names it.</exception>
    public void Validate()
    {
        Check(LearningRate > 0 && double.IsFinite(LearningRate), nameof(LearningRate), LearningRate, "positive");
        Check(Beta1 is >= 0 and < 1, nameof(Beta1), Beta1, "in [0, 1)");
        Check(Beta2 is >= 0 and < 1, nameof(Beta2), Beta2, "in [0, 1)");
        Check(Epsilon > 0 && double.IsFinite(Epsilon), nameof(Epsilon), Epsilon, "positive");
        Check(WeightDecay >= 0 && double.IsFinite(WeightDecay), nameof(WeightDecay), WeightDecay, "0 or more");
        Check(MaxGradientNorm >= 0 && double.IsFinite(MaxGradientNorm), nameof(MaxGradientNorm), MaxGradientNorm, "0 or more");
    }

    private static void Check(bool ok, string name, double value, string what)
    {
        if (!ok)
        {
            throw new ArgumentException(string.Create(CultureInfo.InvariantCulture, $"{name} is {value}; it must be {what}."));
        }
    }
}
