using System.Numerics.Tensors;

namespace Petals.Numerics;

/// <summary>RMSNorm as in Llama: <c>y = x / sqrt(mean(x^2) + eps) * w</c>, accumulated in fp32.</summary>
internal static class RmsNorm
{
    public static void Apply(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, float eps, Span<float> y)
    {
        var sumSquares = TensorPrimitives.SumOfSquares(x);
        var scale = 1f / MathF.Sqrt((sumSquares / x.Length) + eps);
        TensorPrimitives.Multiply(x, scale, y);
        TensorPrimitives.Multiply(y, weight, y);
    }
}
