using Petals.Formats.Gguf;
using Petals.Formats.HuggingFace;
using Petals.Models;
using Petals.Tensors;

namespace Petals.Formats;

/// <summary>Converts model files between formats.</summary>
public static class ModelConverter
{
    /// <summary>
    /// Converts a Llama GGUF file into a Hugging Face checkpoint directory: <c>config.json</c> and
    /// <c>model.safetensors</c> under canonical names, Q/K rows in the Hugging Face layout, F32 and F16 (and BF16)
    /// kept, block-quantized types (Q8_0, Q4_0, …, the k-quants) dequantized to F32. Tensors are read and written one at a time.
    /// </summary>
    /// <param name="ggufPath">The GGUF file.</param>
    /// <param name="outputDirectory">The output directory (created if needed).</param>
    /// <param name="progress">Receives a report after each tensor.</param>
    /// <param name="cancellationToken">Cancels between tensors.</param>
    /// <returns>The configuration written.</returns>
    /// <exception cref="ModelFormatException">When the GGUF file is malformed or not a Llama model.</exception>
    public static ModelConfig ConvertGgufToHuggingFace(string ggufPath, string outputDirectory, IProgress<ModelConversionProgress>? progress = null, CancellationToken cancellationToken = default) =>
        ConvertGgufToHuggingFace(ggufPath, outputDirectory, new GgufConversionOptions { Progress = progress }, cancellationToken);

    /// <summary>As <see cref="ConvertGgufToHuggingFace(string, string, IProgress{ModelConversionProgress}, CancellationToken)"/>, with options (shard size, extra files such as a tokenizer).</summary>
    /// <param name="ggufPath">The GGUF file.</param>
    /// <param name="outputDirectory">The output directory (created if needed).</param>
    /// <param name="options">Conversion options.</param>
    /// <param name="cancellationToken">Cancels between tensors.</param>
    /// <returns>The configuration written.</returns>
    /// <exception cref="ModelFormatException">When the GGUF file is malformed or not a Llama model.</exception>
    public static ModelConfig ConvertGgufToHuggingFace(string ggufPath, string outputDirectory, GgufConversionOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(ggufPath);
        ArgumentException.ThrowIfNullOrEmpty(outputDirectory);
        ArgumentNullException.ThrowIfNull(options);
        using var weights = GgufModelWeights.Open(ggufPath);
        var config = weights.Config;
        var ordered = new List<TensorDescriptor>(weights.Tensors.Count);
        foreach (var expected in LlamaLayout.Tensors(config))
        {
            if (weights.Tensors.TryGetValue(expected.Name, out var d))
            {
                ordered.Add(d.DType.IsBlockQuantized() ? d with { DType = TensorDType.F32 } : d);
            }
        }

        HuggingFaceModelWriter.Write(outputDirectory, config, ordered, d => ReadFloats(weights, d.Name), options.MaxShardBytes, options.Progress, cancellationToken);
        options.WriteAdditionalFiles?.Invoke(weights.File, outputDirectory);
        return config;
    }

    /// <summary>A tensor in a float dtype (block types dequantized to F32 as <see cref="ModelWeightsExtensions.GetFloatTensor"/> does), read without caching.</summary>
    private static ReadOnlyMemory<byte> ReadFloats(GgufModelWeights weights, string name)
    {
        return ModelWeightsExtensions.ToFloatTensor(weights.Read(name), weights.Source).Data;
    }
}
