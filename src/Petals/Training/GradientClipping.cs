namespace Petals.Training;

/// <summary>Gradient clipping by global norm (as PyTorch's <c>clip_grad_norm_</c>).</summary>
public static class GradientClipping
{
    /// <summary>
    /// Computes the L2 norm of all the parameters' gradients together and, when it exceeds <paramref name="maxNorm"/>,
    /// scales every gradient by <c>maxNorm / (norm + 1e-6)</c>.
    /// </summary>
    /// <param name="parameters">The parameters.</param>
    /// <param name="maxNorm">The largest norm, positive.</param>
    /// <returns>The norm before clipping.</returns>
    /// <exception cref="ArgumentException">A gradient is not finite (the message names the parameter).</exception>
    public static double ClipGlobalNorm(IReadOnlyList<TrainableParameter> parameters, double maxNorm)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxNorm);
        var sum = 0.0;
        foreach (var p in parameters)
        {
            foreach (var g in p.Gradient)
            {
                if (!float.IsFinite(g))
                {
                    throw new ArgumentException($"The gradient of '{p.Name}' holds {g}; gradients must be finite.");
                }

                sum += (double)g * g;
            }
        }

        var norm = Math.Sqrt(sum);
        if (norm > maxNorm)
        {
            var scale = (float)(maxNorm / (norm + 1e-6));
            foreach (var p in parameters)
            {
                System.Numerics.Tensors.TensorPrimitives.Multiply(p.Gradient, scale, p.Gradient);
            }
        }

        return norm;
    }
}
