using Petals.Training;

namespace Petals.Tests.Training;

public sealed class GradientClippingTests
{
    [Fact]
    public void GradientsAboveTheNormAreScaledToIt()
    {
        var a = new TrainableParameter("a", [1]);
        var b = new TrainableParameter("b", [2]);
        a.Gradient[0] = 3;
        b.Gradient[0] = 0;
        b.Gradient[1] = 4;

        var norm = GradientClipping.ClipGlobalNorm([a, b], 1.0);

        Assert.Equal(5, norm, 6);
        Assert.Equal(0.6f, a.Gradient[0], 5);
        Assert.Equal(0.8f, b.Gradient[1], 5);
        var after = Math.Sqrt((a.Gradient[0] * a.Gradient[0]) + (b.Gradient[1] * b.Gradient[1]));
        Assert.Equal(1.0, after, 5);
    }

    [Fact]
    public void GradientsBelowTheNormAreUnchanged()
    {
        var a = new TrainableParameter("a", [2]);
        a.Gradient[0] = 0.3f;
        a.Gradient[1] = -0.4f;
        Assert.Equal(0.5, GradientClipping.ClipGlobalNorm([a], 1.0), 6);
        Assert.Equal([0.3f, -0.4f], a.Gradient);
    }

    [Fact]
    public void ANonFiniteGradientIsRefusedNamingTheParameter()
    {
        var a = new TrainableParameter("deep_prompts", [2]);
        a.Gradient[1] = float.NaN;
        var e = Assert.Throws<ArgumentException>(() => GradientClipping.ClipGlobalNorm([a], 1.0));
        Assert.Contains("'deep_prompts'", e.Message, StringComparison.Ordinal);
    }
}
