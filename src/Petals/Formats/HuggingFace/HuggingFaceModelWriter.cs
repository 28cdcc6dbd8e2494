using System.Globalization;
using Petals.Formats.Safetensors;
using Petals.Models;
using Petals.Tensors;

namespace Petals.Formats.HuggingFace;

/// <summary>
/// Writes a complete Hugging Face Llama checkpoint directory: <c>config.json</c> and <c>model.safetensors</c>, or
/// several shards plus <c>model.safetensors.index.json</c> when the data exceed the shard size.
/// </summary>
public static class HuggingFaceModelWriter
{
    /// <summary>Writes a checkpoint from in-memory tensors.</summary>
    /// <param name="directory">The output directory (created if needed).</param>
    /// <param name="config">The configuration, written as <c>config.json</c>.</param>
    /// <param name="tensors">The tensors under canonical names; every tensor the configuration needs must be present with its shape.</param>
    /// <param name="maxShardBytes">The most tensor bytes per shard file (a larger single tensor gets a shard of its own).</param>
    /// <exception cref="ArgumentException">When the tensors do not match the configuration.</exception>
    public static void Write(string directory, ModelConfig config, IReadOnlyList<WeightTensor> tensors, long maxShardBytes = long.MaxValue)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        var byName = new Dictionary<string, WeightTensor>(StringComparer.Ordinal);
        var descriptors = new List<TensorDescriptor>(tensors.Count);
        foreach (var t in tensors)
        {
            byName[t.Descriptor.Name] = t;
            descriptors.Add(t.Descriptor);
        }

        Write(directory, config, descriptors, d => byName[d.Name].Data, maxShardBytes, progress: null, CancellationToken.None);
    }

    /// <summary>Writes a checkpoint, asking <paramref name="readTensor"/> for each tensor's data one at a time (streaming).</summary>
    /// <param name="directory">The output directory (created if needed).</param>
    /// <param name="config">The configuration, written as <c>config.json</c>.</param>
    /// <param name="tensors">The descriptors of the tensors to write, in file order.</param>
    /// <param name="readTensor">Returns the little-endian bytes of a tensor; called once per tensor, in order.</param>
    /// <param name="maxShardBytes">The most tensor bytes per shard file.</param>
    /// <param name="progress">Receives a report after each tensor.</param>
    /// <param name="cancellationToken">Cancels between tensors; partial files are deleted.</param>
    /// <exception cref="ArgumentException">When the tensors do not match the configuration.</exception>
    /// <exception cref="OperationCanceledException">When cancelled.</exception>
    public static void Write(
        string directory,
        ModelConfig config,
        IReadOnlyList<TensorDescriptor> tensors,
        Func<TensorDescriptor, ReadOnlyMemory<byte>> readTensor,
        long maxShardBytes,
        IProgress<ModelConversionProgress>? progress,
        CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(tensors);
        ArgumentNullException.ThrowIfNull(readTensor);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxShardBytes);
        var byName = new Dictionary<string, TensorDescriptor>(StringComparer.Ordinal);
        foreach (var d in tensors)
        {
            if (!byName.TryAdd(d.Name, d))
            {
                throw new ArgumentException($"Tensor '{d.Name}' is given twice.", nameof(tensors));
            }
        }

        try
        {
            LlamaLayout.Validate(config, directory);
            LlamaLayout.Check(config, byName, directory);
        }
        catch (ModelFormatException ex)
        {
            throw new ArgumentException(ex.Message, nameof(tensors), ex);
        }

        Directory.CreateDirectory(directory);
        var shards = new List<List<TensorDescriptor>>();
        long current = 0;
        long total = 0;
        foreach (var d in tensors)
        {
            var size = d.ByteSize;
            if (shards.Count == 0 || (current > 0 && current + size > maxShardBytes))
            {
                shards.Add([]);
                current = 0;
            }

            shards[^1].Add(d);
            current += size;
            total += size;
        }

        HuggingFaceConfigWriter.Write(config, Path.Combine(directory, HuggingFaceConfig.FileName));
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal) { ["format"] = "pt" };
        var weightMap = new Dictionary<string, string>(StringComparer.Ordinal);
        var done = 0;
        long bytesDone = 0;
        for (var s = 0; s < shards.Count; s++)
        {
            var fileName = shards.Count == 1
                ? HuggingFaceModelWeights.SingleFileName
                : string.Create(CultureInfo.InvariantCulture, $"model-{s + 1:D5}-of-{shards.Count:D5}.safetensors");
            using var writer = SafetensorsWriter.Create(Path.Combine(directory, fileName), shards[s], metadata);
            foreach (var d in shards[s])
            {
                cancellationToken.ThrowIfCancellationRequested();
                var data = readTensor(d);
                writer.WriteTensor(d.Name, data.Span);
                weightMap[d.Name] = fileName;
                done++;
                bytesDone += d.ByteSize;
                progress?.Report(new ModelConversionProgress(d.Name, done, tensors.Count, bytesDone, total));
            }

            writer.Complete();
        }

        var indexPath = Path.Combine(directory, SafetensorsIndex.FileName);
        if (shards.Count > 1)
        {
            new SafetensorsIndex(weightMap, new Dictionary<string, string>()).Write(indexPath, total);
        }
        else if (File.Exists(indexPath))
        {
            File.Delete(indexPath);
        }
    }
}
