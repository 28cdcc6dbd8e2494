using Petals.Formats.Safetensors;
using Petals.Models;
using Petals.Tensors;

namespace Petals.Formats.HuggingFace;

/// <summary>
/// The weights of a Hugging Face Llama checkpoint: <c>config.json</c> plus <c>model.safetensors</c>, or shards listed
/// in <c>model.safetensors.index.json</c>. Tensor names are already canonical; every tensor is a view of a
/// memory-mapped shard.
/// </summary>
/// <remarks>Thread-safe. Shapes are checked against <c>config.json</c> at open.</remarks>
public sealed class HuggingFaceModelWeights : IModelWeights
{
    /// <summary>The conventional single-file weights name.</summary>
    public const string SingleFileName = "model.safetensors";

    private readonly List<SafetensorsFile> _files;
    private readonly Dictionary<string, SafetensorsFile> _owner;

    private HuggingFaceModelWeights(string source, ModelConfig config, List<SafetensorsFile> files, Dictionary<string, SafetensorsFile> owner, Dictionary<string, TensorDescriptor> tensors)
    {
        Source = source;
        Config = config;
        _files = files;
        _owner = owner;
        Tensors = tensors;
    }

    /// <inheritdoc />
    public ModelConfig Config { get; }

    /// <inheritdoc />
    public string Source { get; }

    /// <inheritdoc />
    public IReadOnlyDictionary<string, TensorDescriptor> Tensors { get; }

    /// <summary>Opens a checkpoint directory, or a single <c>.safetensors</c> file with <c>config.json</c> beside it.</summary>
    /// <param name="path">The directory or file.</param>
    /// <returns>The weights; dispose them to unmap the files.</returns>
    /// <exception cref="ModelFormatException">When a file is missing or malformed, or a tensor the configuration needs is missing or has the wrong shape (the message names it).</exception>
    /// <exception cref="IOException">When a file cannot be read.</exception>
    public static HuggingFaceModelWeights Open(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        string directory;
        List<string> shardPaths;
        SafetensorsIndex? index = null;
        string? indexPath = null;
        if (File.Exists(path))
        {
            directory = Path.GetDirectoryName(Path.GetFullPath(path))!;
            shardPaths = [path];
        }
        else if (Directory.Exists(path))
        {
            directory = path;
            indexPath = Path.Combine(directory, SafetensorsIndex.FileName);
            var single = Path.Combine(directory, SingleFileName);
            if (File.Exists(indexPath))
            {
                index = SafetensorsIndex.Read(indexPath);
                shardPaths = [.. index.Shards.Select(s => Path.Combine(directory, s))];
            }
            else if (File.Exists(single))
            {
                shardPaths = [single];
            }
            else
            {
                throw new ModelFormatException(directory, SingleFileName, $"the directory has neither {SingleFileName} nor {SafetensorsIndex.FileName}.");
            }
        }
        else
        {
            throw new ModelFormatException(path, null, "no such file or directory.");
        }

        var configPath = Path.Combine(directory, HuggingFaceConfig.FileName);
        if (!File.Exists(configPath))
        {
            throw new ModelFormatException(configPath, null, "config.json is missing beside the weights.");
        }

        var config = HuggingFaceConfig.Read(configPath);
        var files = new List<SafetensorsFile>(shardPaths.Count);
        try
        {
            var owner = new Dictionary<string, SafetensorsFile>(StringComparer.Ordinal);
            var tensors = new Dictionary<string, TensorDescriptor>(StringComparer.Ordinal);
            foreach (var shardPath in shardPaths)
            {
                if (!File.Exists(shardPath))
                {
                    throw new ModelFormatException(indexPath ?? shardPath, Path.GetFileName(shardPath), "shard file listed in the index is missing.");
                }

                var file = SafetensorsFile.Open(shardPath);
                files.Add(file);
                foreach (var (name, descriptor) in file.Tensors)
                {
                    if (index is not null && (!index.WeightMap.TryGetValue(name, out var expectedShard) || expectedShard != Path.GetFileName(shardPath)))
                    {
                        // A shard may carry tensors the index maps elsewhere or not at all; only the index's choice is served.
                        continue;
                    }

                    if (!tensors.TryAdd(name, descriptor))
                    {
                        throw new ModelFormatException(shardPath, name, $"tensor also appears in {owner[name].Path}.");
                    }

                    owner[name] = file;
                }
            }

            if (index is not null)
            {
                foreach (var (name, shard) in index.WeightMap)
                {
                    if (!tensors.ContainsKey(name))
                    {
                        throw new ModelFormatException(Path.Combine(directory, shard), name, $"tensor listed in {SafetensorsIndex.FileName} is not in its shard.");
                    }
                }
            }

            LlamaLayout.Check(config, tensors, directory, pathOf: name => owner.TryGetValue(name, out var f) ? f.Path : null);
            return new HuggingFaceModelWeights(directory, config, files, owner, tensors);
        }
        catch
        {
            foreach (var f in files)
            {
                f.Dispose();
            }

            throw;
        }
    }

    /// <inheritdoc />
    public WeightTensor GetTensor(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        if (!_owner.TryGetValue(name, out var file))
        {
            throw new KeyNotFoundException($"{Source}: the model has no tensor '{name}'.");
        }

        return file.GetTensor(name);
    }

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (var f in _files)
        {
            f.Dispose();
        }
    }
}
