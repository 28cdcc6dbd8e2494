namespace Petals.Training;

/// <summary>One trainable tensor of a <see cref="TrainableModel"/>: its values and the gradient of the last step.</summary>
/// <remarks>Not thread-safe: the model and the optimizer update it in place.</remarks>
public sealed class TrainableParameter
{
    /// <summary>Creates a parameter of zeros.</summary>
    /// <param name="name">The tensor's name in checkpoints.</param>
    /// <param name="shape">Its shape (row-major).</param>
    /// <param name="weightDecay">Whether AdamW decays it (biases are not decayed).</param>
    public TrainableParameter(string name, IReadOnlyList<int> shape, bool weightDecay = true)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        ArgumentNullException.ThrowIfNull(shape);
        long count = 1;
        foreach (var d in shape)
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(d, 1, nameof(shape));
            count *= d;
        }

        Name = name;
        Shape = [.. shape];
        WeightDecay = weightDecay;
        Values = new float[checked((int)count)];
        Gradient = new float[Values.Length];
    }

    /// <summary>The tensor's name in checkpoints.</summary>
    public string Name { get; }

    /// <summary>Its shape.</summary>
    public IReadOnlyList<int> Shape { get; }

    /// <summary>Whether AdamW's decoupled weight decay applies to it.</summary>
    public bool WeightDecay { get; }

    /// <summary>The values (fp32).</summary>
    public float[] Values { get; }

    /// <summary>dLoss/dValues of the last computed step.</summary>
    public float[] Gradient { get; }
}
