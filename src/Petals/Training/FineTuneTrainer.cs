namespace Petals.Training;

/// <summary>
/// The training loop of a <see cref="TrainableModel"/>: each step takes the loader's batch for that step, computes the
/// gradients through the blocks, clips them by global norm and applies AdamW.
/// </summary>
/// <remarks>Not thread-safe.</remarks>
public sealed class FineTuneTrainer
{
    /// <summary>Creates a trainer at step 0.</summary>
    /// <param name="model">The model.</param>
    /// <param name="loader">The batches.</param>
    /// <param name="options">The optimizer's hyper-parameters.</param>
    public FineTuneTrainer(TrainableModel model, DataLoader loader, AdamWOptions options)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(loader);
        Model = model;
        Loader = loader;
        Optimizer = new AdamW(model.Parameters, options);
    }

    /// <summary>The model.</summary>
    public TrainableModel Model { get; }

    /// <summary>The batches.</summary>
    public DataLoader Loader { get; }

    /// <summary>The optimizer.</summary>
    public AdamW Optimizer { get; }

    /// <summary>Steps done.</summary>
    public long Step => Optimizer.StepCount;

    /// <summary>Runs one step.</summary>
    /// <param name="cancellationToken">Cancels the step (the parameters are unchanged if it is cancelled before the update).</param>
    /// <returns>What the step did.</returns>
    public async Task<TrainingStep> StepAsync(CancellationToken cancellationToken = default)
    {
        var batch = Loader.GetBatch(Step);
        var loss = await Model.ComputeGradientsAsync(batch, cancellationToken).ConfigureAwait(false);
        var norm = Optimizer.Options.MaxGradientNorm > 0
            ? GradientClipping.ClipGlobalNorm(Model.Parameters, Optimizer.Options.MaxGradientNorm)
            : double.NaN;
        Optimizer.Step();
        return new TrainingStep(Step, loss, norm, batch.TokenCount);
    }

    /// <summary>Saves a checkpoint (parameters, optimizer state, <c>finetune.json</c>) into <paramref name="directory"/>.</summary>
    /// <param name="directory">The directory.</param>
    /// <param name="extra">More properties for <c>finetune.json</c>.</param>
    public void Save(string directory, IReadOnlyDictionary<string, object>? extra = null) => FineTuneCheckpoint.Save(directory, Model, Optimizer, extra);

    /// <summary>Restores parameters and optimizer state from a checkpoint of the same options.</summary>
    /// <param name="directory">The directory.</param>
    /// <returns>The step it resumes at.</returns>
    public long Resume(string directory) => FineTuneCheckpoint.LoadParameters(directory, Model, Optimizer);
}
