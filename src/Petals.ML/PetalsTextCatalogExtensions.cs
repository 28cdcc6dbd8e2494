using Microsoft.ML;
using Microsoft.ML.Runtime;

namespace Petals.ML;

/// <summary>The Petals transforms of <c>mlContext.Transforms.Text</c>.</summary>
public static class PetalsTextCatalogExtensions
{
    /// <summary>
    /// Maps a text column to a <c>Single</c> vector column of the model's hidden size: the final-norm hidden states of each
    /// text's tokens (BOS included when the tokenizer adds it), pooled as <see cref="PetalsEmbeddingOptions.Pooling"/> says.
    /// Fitting connects the model (through the connector of <see cref="PetalsMLContextExtensions.UsePetals"/>) to learn
    /// the vector length; the output is computed lazily, a batch of rows at a time.
    /// </summary>
    /// <param name="catalog">The text transforms of an <see cref="MLContext"/>.</param>
    /// <param name="outputColumnName">The vector column to add.</param>
    /// <param name="inputColumnName">The text column to read; <paramref name="outputColumnName"/> when null.</param>
    /// <param name="model">Where the model is; saved with the ML.NET model in place of its weights.</param>
    /// <param name="options">Pooling and batching; defaults when null.</param>
    /// <returns>The estimator.</returns>
    /// <exception cref="ArgumentException">When a column name is empty or the reference or options are invalid.</exception>
    public static IEstimator<ITransformer> PetalsEmbed(
        this TransformsCatalog.TextTransforms catalog,
        string outputColumnName,
        string? inputColumnName,
        PetalsModelReference model,
        PetalsEmbeddingOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(catalog);
        ArgumentException.ThrowIfNullOrWhiteSpace(outputColumnName);
        ArgumentNullException.ThrowIfNull(model);
        model.Validate();
        options ??= new PetalsEmbeddingOptions();
        options.Validate();
        return new PetalsEmbeddingEstimator(MLNetInternals.GetEnvironment(catalog), outputColumnName, ColumnOrOutput(inputColumnName, outputColumnName), model, options);
    }

    /// <summary>
    /// Maps a text column to the text the model generates after each row's text (greedy by default; the stop token is not
    /// printed). Fitting checks that the model is reachable; the output is computed lazily, a batch of rows at a time.
    /// </summary>
    /// <param name="catalog">The text transforms of an <see cref="MLContext"/>.</param>
    /// <param name="outputColumnName">The text column to add.</param>
    /// <param name="inputColumnName">The prompt column to read; <paramref name="outputColumnName"/> when null.</param>
    /// <param name="model">Where the model is; saved with the ML.NET model in place of its weights.</param>
    /// <param name="options">Generation and batching; defaults when null.</param>
    /// <returns>The estimator.</returns>
    /// <exception cref="ArgumentException">When a column name is empty or the reference or options are invalid.</exception>
    public static IEstimator<ITransformer> PetalsGenerate(
        this TransformsCatalog.TextTransforms catalog,
        string outputColumnName,
        string? inputColumnName,
        PetalsModelReference model,
        PetalsGenerationOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(catalog);
        ArgumentException.ThrowIfNullOrWhiteSpace(outputColumnName);
        ArgumentNullException.ThrowIfNull(model);
        model.Validate();
        options ??= new PetalsGenerationOptions();
        options.Validate();
        return new PetalsGenerationEstimator(MLNetInternals.GetEnvironment(catalog), outputColumnName, ColumnOrOutput(inputColumnName, outputColumnName), model, options);
    }

    private static string ColumnOrOutput(string? input, string output)
    {
        if (input is not null)
        {
            ArgumentException.ThrowIfNullOrWhiteSpace(input, "inputColumnName");
        }

        return input ?? output;
    }

    /// <summary>Reads a saved Petals entry (the JSON after ML.NET's header) back into its transformer.</summary>
    internal static ITransformer LoadTransformer(IHostEnvironment env, BinaryReader reader)
    {
        var saved = SavedTransform.Deserialize(reader.ReadString());
        if (saved.Kind == SavedTransform.EmbedKind)
        {
            var options = new PetalsEmbeddingOptions { Pooling = saved.Pooling, BatchSize = saved.BatchSize, MaxConcurrency = saved.MaxConcurrency };
            options.Validate();
            return new PetalsEmbeddingTransformer(env, saved.OutputColumn, saved.InputColumn, saved.Model, options, saved.HiddenSize);
        }

        var generation = new PetalsGenerationOptions
        {
            MaxNewTokens = saved.MaxNewTokens,
            Sampling = saved.Sampling ?? Petals.Generation.SamplingOptions.Greedy,
            StopTokenIds = saved.StopTokenIds,
            BatchSize = saved.BatchSize,
            MaxConcurrency = saved.MaxConcurrency,
        };
        generation.Validate();
        return new PetalsGenerationTransformer(env, saved.OutputColumn, saved.InputColumn, saved.Model, generation);
    }
}
