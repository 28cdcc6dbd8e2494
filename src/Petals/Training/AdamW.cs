namespace Petals.Training;

/// <summary>
/// AdamW (Loshchilov and Hutter): Adam with bias-corrected moments and decoupled weight decay. For each parameter
/// value, at step t: <c>p ← p (1 − lr·wd)</c>, <c>m ← β1 m + (1−β1) g</c>, <c>v ← β2 v + (1−β2) g²</c>,
/// <c>p ← p − lr · (m / (1−β1ᵗ)) / (√(v / (1−β2ᵗ)) + ε)</c>. Moments are stored in fp32 (the update is computed in fp64), exactly as checkpoints hold them, so a resumed run continues bit for bit.
/// </summary>
/// <remarks>Not thread-safe.</remarks>
public sealed class AdamW
{
    private readonly IReadOnlyList<TrainableParameter> _parameters;
    private readonly float[][] _m;
    private readonly float[][] _v;

    /// <summary>Creates an optimizer over <paramref name="parameters"/> with zero moments.</summary>
    /// <param name="parameters">The parameters it updates.</param>
    /// <param name="options">The hyper-parameters.</param>
    public AdamW(IReadOnlyList<TrainableParameter> parameters, AdamWOptions options)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _parameters = parameters;
        Options = options;
        _m = [.. parameters.Select(p => new float[p.Values.Length])];
        _v = [.. parameters.Select(p => new float[p.Values.Length])];
    }

    /// <summary>The hyper-parameters.</summary>
    public AdamWOptions Options { get; }

    /// <summary>Steps taken (t of the last step).</summary>
    public long StepCount { get; private set; }

    /// <summary>The first moments, one array per parameter (for checkpoints).</summary>
    public IReadOnlyList<float[]> FirstMoments => _m;

    /// <summary>The second moments, one array per parameter (for checkpoints).</summary>
    public IReadOnlyList<float[]> SecondMoments => _v;

    /// <summary>Applies one step with the parameters' current gradients.</summary>
    public void Step()
    {
        StepCount++;
        var o = Options;
        var correction1 = 1 - Math.Pow(o.Beta1, StepCount);
        var correction2 = 1 - Math.Pow(o.Beta2, StepCount);
        for (var i = 0; i < _parameters.Count; i++)
        {
            var p = _parameters[i];
            var m = _m[i];
            var v = _v[i];
            var decay = p.WeightDecay ? 1 - (o.LearningRate * o.WeightDecay) : 1;
            for (var j = 0; j < p.Values.Length; j++)
            {
                double g = p.Gradient[j];
                var mj = (o.Beta1 * m[j]) + ((1 - o.Beta1) * g);
                var vj = (o.Beta2 * v[j]) + ((1 - o.Beta2) * g * g);
                m[j] = (float)mj;
                v[j] = (float)vj;
                var update = (mj / correction1) / (Math.Sqrt(vj / correction2) + o.Epsilon);
                p.Values[j] = (float)((p.Values[j] * decay) - (o.LearningRate * update));
            }
        }
    }

    /// <summary>Restores a state saved from <see cref="FirstMoments"/>, <see cref="SecondMoments"/> and <see cref="StepCount"/>.</summary>
    /// <param name="step">The step count.</param>
    /// <param name="first">First moments per parameter.</param>
    /// <param name="second">Second moments per parameter.</param>
    /// <exception cref="ArgumentException">The arrays do not match the parameters.</exception>
    public void Restore(long step, IReadOnlyList<float[]> first, IReadOnlyList<float[]> second)
    {
        ArgumentNullException.ThrowIfNull(first);
        ArgumentNullException.ThrowIfNull(second);
        ArgumentOutOfRangeException.ThrowIfNegative(step);
        if (first.Count != _m.Length || second.Count != _v.Length)
        {
            throw new ArgumentException($"The saved state has {first.Count} and {second.Count} moment arrays; the optimizer has {_m.Length} parameters.");
        }

        for (var i = 0; i < _m.Length; i++)
        {
            if (first[i].Length != _m[i].Length || second[i].Length != _v[i].Length)
            {
                throw new ArgumentException($"The saved moments of '{_parameters[i].Name}' hold {first[i].Length} and {second[i].Length} values; the parameter holds {_m[i].Length}.");
            }

            first[i].CopyTo(_m[i], 0);
            second[i].CopyTo(_v[i], 0);
        }

        StepCount = step;
    }
}
