using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Runtime;
using Petals.Generation;

namespace Petals.ML;

/// <summary>
/// What the Petals transformers share: one text column in, one computed column out (appended to the input's columns),
/// rows sent to a model reached through a <see cref="PetalsModelReference"/> in bounded batches, saved as the reference.
/// </summary>
/// <typeparam name="TValue">The computed value of a row (an embedding, a generated text).</typeparam>
internal abstract class PetalsTransformer<TValue> : ITransformer
{
    private readonly int _batchSize;
    private readonly int _maxConcurrency;

    protected PetalsTransformer(IHostEnvironment env, string outputColumn, string inputColumn, PetalsModelReference reference, int batchSize, int maxConcurrency)
    {
        Env = env;
        OutputColumn = outputColumn;
        InputColumn = inputColumn;
        Reference = reference;
        _batchSize = batchSize;
        _maxConcurrency = maxConcurrency;
    }

    internal IHostEnvironment Env { get; }

    internal string OutputColumn { get; }

    internal string InputColumn { get; }

    internal PetalsModelReference Reference { get; }

    internal int BatchSize => _batchSize;

    internal int MaxConcurrency => _maxConcurrency;

    /// <summary>The type of the output column.</summary>
    internal abstract DataViewType OutputType { get; }

    /// <summary>What the transform does, for messages ("embedding", "generation").</summary>
    protected abstract string Operation { get; }

    /// <inheritdoc />
    public bool IsRowToRowMapper => true;

    /// <summary>Checks that the connected model fits this transformer (e.g. the hidden size it was fitted with).</summary>
    protected abstract void CheckModel(CausalLanguageModel model);

    /// <summary>Computes one row.</summary>
    protected abstract Task<TValue> ComputeAsync(CausalLanguageModel model, string text, CancellationToken cancellationToken);

    /// <summary>A getter of the output column over the value <paramref name="current"/> gives.</summary>
    protected abstract Delegate MakeGetter(Func<TValue> current);

    /// <summary>The saved form.</summary>
    internal abstract SavedTransform ToSaved();

    /// <inheritdoc />
    public DataViewSchema GetOutputSchema(DataViewSchema inputSchema)
    {
        ArgumentNullException.ThrowIfNull(inputSchema);
        PetalsSchema.CheckInput(inputSchema, InputColumn);
        var builder = new DataViewSchema.Builder();
        builder.AddColumns(inputSchema);
        builder.AddColumn(OutputColumn, OutputType);
        return builder.ToSchema();
    }

    /// <inheritdoc />
    public IDataView Transform(IDataView input)
    {
        ArgumentNullException.ThrowIfNull(input);
        return new PetalsDataView<TValue>(this, input, GetOutputSchema(input.Schema));
    }

    /// <inheritdoc />
    public IRowToRowMapper GetRowToRowMapper(DataViewSchema inputSchema)
    {
        ArgumentNullException.ThrowIfNull(inputSchema);
        return new PetalsRowMapper<TValue>(this, inputSchema, GetOutputSchema(inputSchema));
    }

    /// <inheritdoc />
    void ICanSaveModel.Save(ModelSaveContext ctx)
    {
        var saved = ToSaved();
        MLNetInternals.Save(ctx, saved.ModelSignature, saved.LoaderSignature, saved.Serialize());
    }

    /// <summary>The model, connected on first use through the context's registration, and checked.</summary>
    internal CausalLanguageModel GetModel(CancellationToken cancellationToken)
    {
        var registration = PetalsRegistration.Find(Env.ComponentCatalog, Reference);
        // ML.NET's getters and cursors are synchronous; the connection runs on the pool, not on a captured context.
        var model = Task.Run(() => registration.GetModelAsync(Reference, cancellationToken), cancellationToken).GetAwaiter().GetResult();
        CheckModel(model);
        return model;
    }

    /// <summary>Computes <paramref name="texts"/> (rows <paramref name="firstRow"/>.. of the input), at most <see cref="MaxConcurrency"/> at a time.</summary>
    /// <exception cref="InvalidOperationException">When a row fails; the message names the row, the column and the cause.</exception>
    internal TValue[] ComputeBatch(CausalLanguageModel model, IReadOnlyList<string> texts, long firstRow, CancellationToken cancellationToken)
    {
        var results = new TValue[texts.Count];
        var options = new ParallelOptions { MaxDegreeOfParallelism = _maxConcurrency, CancellationToken = cancellationToken };
        var work = Parallel.ForAsync(0, texts.Count, options, async (i, ct) =>
        {
            try
            {
                results[i] = await ComputeAsync(model, texts[i], ct).ConfigureAwait(false);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                throw new InvalidOperationException($"The Petals {Operation} of row {firstRow + i} (column '{InputColumn}') failed: {e.Message}", e);
            }
        });
        // The first failure surfaces (GetResult unwraps it); the other rows of the batch are cancelled with it.
        work.GetAwaiter().GetResult();
        return results;
    }

    /// <summary>The output column's getter over a row's value.</summary>
    internal Delegate CreateGetter(Func<TValue> current) => MakeGetter(current);

    /// <summary>Computes one row (the row-to-row mapper's path, e.g. a prediction engine).</summary>
    internal TValue ComputeOne(string text, long row) => ComputeBatch(GetModel(CancellationToken.None), [text], row, CancellationToken.None)[0];
}
