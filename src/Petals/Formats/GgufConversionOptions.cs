using Petals.Formats.Gguf;

namespace Petals.Formats;

/// <summary>Options of <see cref="ModelConverter.ConvertGgufToHuggingFace(string, string, GgufConversionOptions, CancellationToken)"/>.</summary>
public sealed class GgufConversionOptions
{
    /// <summary>Receives a report after each tensor; default none.</summary>
    public IProgress<ModelConversionProgress>? Progress { get; init; }

    /// <summary>The most tensor bytes per safetensors shard; default unlimited (one <c>model.safetensors</c>).</summary>
    public long MaxShardBytes { get; init; } = long.MaxValue;

    /// <summary>
    /// Called after the weights are written, with the open GGUF file and the output directory, to write further
    /// files from the GGUF metadata (e.g. <c>tokenizer.json</c> from <see cref="GgufFile.Tokenizer"/>); default none.
    /// </summary>
    public Action<GgufFile, string>? WriteAdditionalFiles { get; init; }
}
