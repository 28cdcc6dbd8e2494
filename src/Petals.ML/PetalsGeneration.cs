using System.Text;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Runtime;
using Petals.Generation;

namespace Petals.ML;

/// <summary>Estimator of <see cref="PetalsTextCatalogExtensions.PetalsGenerate"/>: fitting checks the schema and that the model is reachable.</summary>
internal sealed class PetalsGenerationEstimator(IHostEnvironment env, string outputColumn, string inputColumn, PetalsModelReference reference, PetalsGenerationOptions options)
    : IEstimator<ITransformer>
{
    public SchemaShape GetOutputSchema(SchemaShape inputSchema)
    {
        ArgumentNullException.ThrowIfNull(inputSchema);
        PetalsSchema.CheckInput(inputSchema, inputColumn);
        return PetalsSchema.WithColumn(inputSchema, MLNetInternals.Column(outputColumn, SchemaShape.Column.VectorKind.Scalar, TextDataViewType.Instance));
    }

    public ITransformer Fit(IDataView input)
    {
        ArgumentNullException.ThrowIfNull(input);
        PetalsSchema.CheckInput(input.Schema, inputColumn);
        var transformer = new PetalsGenerationTransformer(env, outputColumn, inputColumn, reference, options);
        transformer.GetModel(CancellationToken.None);
        return transformer;
    }
}

/// <summary>Text column to the text the model generates after each row's text (special tokens not printed).</summary>
internal sealed class PetalsGenerationTransformer(IHostEnvironment env, string outputColumn, string inputColumn, PetalsModelReference reference, PetalsGenerationOptions options)
    : PetalsTransformer<string>(env, outputColumn, inputColumn, reference, options.BatchSize, options.MaxConcurrency)
{
    private readonly GenerationOptions _generation = options.ToGenerationOptions();

    internal override DataViewType OutputType => TextDataViewType.Instance;

    protected override string Operation => "generation";

    protected override void CheckModel(CausalLanguageModel model)
    {
    }

    protected override async Task<string> ComputeAsync(CausalLanguageModel model, string text, CancellationToken cancellationToken)
    {
        var result = new StringBuilder();
        await foreach (var piece in model.GenerateTextAsync(text, _generation, cancellationToken).ConfigureAwait(false))
        {
            result.Append(piece);
        }

        return result.ToString();
    }

    protected override Delegate MakeGetter(Func<string> current)
    {
        ValueGetter<ReadOnlyMemory<char>> getter = (ref ReadOnlyMemory<char> value) => value = current().AsMemory();
        return getter;
    }

    internal override SavedTransform ToSaved() => new()
    {
        Kind = SavedTransform.GenerateKind,
        InputColumn = InputColumn,
        OutputColumn = OutputColumn,
        Model = Reference,
        BatchSize = BatchSize,
        MaxConcurrency = MaxConcurrency,
        MaxNewTokens = options.MaxNewTokens,
        Sampling = options.Sampling,
        StopTokenIds = options.StopTokenIds,
    };
}
