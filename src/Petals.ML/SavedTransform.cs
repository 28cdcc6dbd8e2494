using System.Text.Json;
using System.Text.Json.Serialization;
using Petals.Generation;

namespace Petals.ML;

/// <summary>What an ML.NET model file records of a Petals transformer: columns, the model reference and the options, not weights.</summary>
internal sealed record SavedTransform
{
    internal const int CurrentFormat = 1;

    public int Format { get; init; } = CurrentFormat;

    public required string Kind { get; init; }

    public required string InputColumn { get; init; }

    public required string OutputColumn { get; init; }

    public required PetalsModelReference Model { get; init; }

    public int BatchSize { get; init; }

    public int MaxConcurrency { get; init; }

    public EmbeddingPooling Pooling { get; init; }

    public int HiddenSize { get; init; }

    public int MaxNewTokens { get; init; }

    public SamplingOptions? Sampling { get; init; }

    public IReadOnlyList<int>? StopTokenIds { get; init; }

    [JsonIgnore]
    public string ModelSignature => Kind == EmbedKind ? MLNetInternals.EmbedModelSignature : MLNetInternals.GenerateModelSignature;

    [JsonIgnore]
    public string LoaderSignature => Kind == EmbedKind ? MLNetInternals.EmbedLoaderSignature : MLNetInternals.GenerateLoaderSignature;

    internal const string EmbedKind = "embed";
    internal const string GenerateKind = "generate";

    public string Serialize() => JsonSerializer.Serialize(this, SavedTransformJson.Default.SavedTransform);

    /// <exception cref="InvalidOperationException">When the entry is not a Petals transform this version reads.</exception>
    public static SavedTransform Deserialize(string json)
    {
        SavedTransform? saved;
        try
        {
            saved = JsonSerializer.Deserialize(json, SavedTransformJson.Default.SavedTransform);
        }
        catch (JsonException e)
        {
            throw new InvalidOperationException($"The saved Petals transform is malformed: {e.Message}", e);
        }

        if (saved is null || saved.Format != CurrentFormat || saved.Kind is not (EmbedKind or GenerateKind))
        {
            throw new InvalidOperationException($"The saved Petals transform has format {saved?.Format} and kind '{saved?.Kind}'; this version reads format {CurrentFormat} ('{EmbedKind}', '{GenerateKind}').");
        }

        saved.Model.Validate();
        return saved;
    }
}

[JsonSourceGenerationOptions(UseStringEnumConverter = true)]
[JsonSerializable(typeof(SavedTransform))]
internal sealed partial class SavedTransformJson : JsonSerializerContext;
