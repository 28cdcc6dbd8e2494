using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Runtime;
using Petals.Generation;

namespace Petals.ML;

/// <summary>Estimator of <see cref="PetalsTextCatalogExtensions.PetalsEmbed"/>: fitting connects the model to learn its hidden size.</summary>
internal sealed class PetalsEmbeddingEstimator(IHostEnvironment env, string outputColumn, string inputColumn, PetalsModelReference reference, PetalsEmbeddingOptions options)
    : IEstimator<ITransformer>
{
    public SchemaShape GetOutputSchema(SchemaShape inputSchema)
    {
        ArgumentNullException.ThrowIfNull(inputSchema);
        PetalsSchema.CheckInput(inputSchema, inputColumn);
        return PetalsSchema.WithColumn(inputSchema, MLNetInternals.Column(outputColumn, SchemaShape.Column.VectorKind.Vector, NumberDataViewType.Single));
    }

    public ITransformer Fit(IDataView input)
    {
        ArgumentNullException.ThrowIfNull(input);
        PetalsSchema.CheckInput(input.Schema, inputColumn);
        var registration = PetalsRegistration.Find(env.ComponentCatalog, reference);
        var model = Task.Run(() => registration.GetModelAsync(reference, CancellationToken.None)).GetAwaiter().GetResult();
        return new PetalsEmbeddingTransformer(env, outputColumn, inputColumn, reference, options, model.Config.HiddenSize);
    }
}

/// <summary>Text column to the model's embedding of each text (<see cref="CausalLanguageModel.EmbedAsync"/>).</summary>
internal sealed class PetalsEmbeddingTransformer : PetalsTransformer<float[]>
{
    private readonly PetalsEmbeddingOptions _options;

    public PetalsEmbeddingTransformer(IHostEnvironment env, string outputColumn, string inputColumn, PetalsModelReference reference, PetalsEmbeddingOptions options, int hiddenSize)
        : base(env, outputColumn, inputColumn, reference, options.BatchSize, options.MaxConcurrency)
    {
        _options = options;
        HiddenSize = hiddenSize;
        OutputType = new VectorDataViewType(NumberDataViewType.Single, hiddenSize);
    }

    /// <summary>The length of the vectors: the model's hidden size when fitted.</summary>
    public int HiddenSize { get; }

    internal override DataViewType OutputType { get; }

    protected override string Operation => "embedding";

    protected override void CheckModel(CausalLanguageModel model)
    {
        if (model.Config.HiddenSize != HiddenSize)
        {
            throw new InvalidOperationException($"The model {Reference} has hidden size {model.Config.HiddenSize}, but this transformer was fitted to vectors of {HiddenSize}.");
        }
    }

    protected override async Task<float[]> ComputeAsync(CausalLanguageModel model, string text, CancellationToken cancellationToken)
    {
        var ids = model.EncodePrompt(text);
        if (ids.Length == 0)
        {
            // Text that encodes to no token at all (a tokenizer without BOS, empty text) has no embedding: ML.NET's missing value.
            var missing = new float[HiddenSize];
            Array.Fill(missing, float.NaN);
            return missing;
        }

        return await model.EmbedAsync(ids, _options.Pooling, cancellationToken).ConfigureAwait(false);
    }

    protected override Delegate MakeGetter(Func<float[]> current)
    {
        ValueGetter<VBuffer<float>> getter = (ref VBuffer<float> value) =>
        {
            var vector = current();
            var editor = VBufferEditor.Create(ref value, vector.Length);
            vector.CopyTo(editor.Values);
            value = editor.Commit();
        };
        return getter;
    }

    internal override SavedTransform ToSaved() => new()
    {
        Kind = SavedTransform.EmbedKind,
        InputColumn = InputColumn,
        OutputColumn = OutputColumn,
        Model = Reference,
        BatchSize = BatchSize,
        MaxConcurrency = MaxConcurrency,
        Pooling = _options.Pooling,
        HiddenSize = HiddenSize,
    };
}
