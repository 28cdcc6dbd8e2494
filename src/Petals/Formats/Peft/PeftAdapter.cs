using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.RegularExpressions;
using Petals.Execution;
using Petals.Formats.Safetensors;
using Petals.Models;
using Petals.Tensors;

namespace Petals.Formats.Peft;

/// <summary>
/// Reads and writes LoRA adapters in the PEFT (Hugging Face <c>peft</c>) directory format: <c>adapter_config.json</c>
/// (see <see cref="PeftAdapterConfig"/>) and <c>adapter_model.safetensors</c> holding, for each adapted module,
/// <c>base_model.model.model.layers.{i}.{self_attn|mlp}.{q_proj…down_proj}.lora_A.weight</c> <c>[r, in]</c> and
/// <c>….lora_B.weight</c> <c>[out, r]</c> (F32, F16 or BF16; the <c>lora_A.default.weight</c> spelling of some PEFT
/// versions is accepted too).
/// </summary>
/// <remarks>
/// <see cref="Load(string, ModelConfig, BlockRange)"/> reads only the blocks asked for (a server loads its span), but
/// checks every tensor name in the file. Every bad input raises <see cref="ModelFormatException"/> naming the file and
/// the key or field. Thread-safe (no shared state).
/// </remarks>
public static partial class PeftAdapter
{
    /// <summary>The config file of a PEFT adapter directory.</summary>
    public const string ConfigFileName = "adapter_config.json";

    /// <summary>The weights file of a PEFT adapter directory.</summary>
    public const string WeightsFileName = "adapter_model.safetensors";

    private const string KeyPrefix = "base_model.model.";

    /// <summary>Loads the adapters of every block of the model from the PEFT directory <paramref name="directory"/>.</summary>
    /// <param name="directory">The adapter directory.</param>
    /// <param name="config">The model the adapter is for (shapes are checked against it).</param>
    /// <returns>The adapters for blocks <c>0..NumLayers</c>.</returns>
    /// <exception cref="ModelFormatException">See <see cref="Load(string, ModelConfig, BlockRange)"/>.</exception>
    public static LoraWeights Load(string directory, ModelConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        return Load(directory, config, new BlockRange(0, config.NumLayers));
    }

    /// <summary>Loads the adapters of <paramref name="blocks"/> from the PEFT directory <paramref name="directory"/>.</summary>
    /// <param name="directory">The adapter directory.</param>
    /// <param name="config">The model the adapter is for (shapes are checked against it).</param>
    /// <param name="blocks">The blocks to load, within the model.</param>
    /// <returns>
    /// The adapters of <paramref name="blocks"/>: rank <c>r</c>, scale <see cref="PeftAdapterConfig.Scale"/>, targets every
    /// module the config adapts in some block of the model (in <see cref="LoraTargets.All"/> order); a module the config
    /// leaves unadapted in a block (<c>layers_to_transform</c>, a regular expression) has zero factors there, which adds
    /// nothing, as in PEFT.
    /// </returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="blocks"/> is empty or outside the model.</exception>
    /// <exception cref="ModelFormatException">
    /// A file is missing or malformed; the config is unsupported (<see cref="PeftAdapterConfig.Read"/>); a tensor names an
    /// unknown module (<c>lm_head</c>, <c>foo_proj</c>), a block outside the model or a module the config does not target;
    /// a tensor of a targeted module of <paramref name="blocks"/> is missing; ranks differ between A, B and <c>r</c>; a
    /// shape does not fit the model; a dtype is not F32/F16/BF16; a value is NaN or infinite.
    /// </exception>
    /// <exception cref="IOException">A file cannot be read.</exception>
    public static LoraWeights Load(string directory, ModelConfig config, BlockRange blocks)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        ArgumentNullException.ThrowIfNull(config);
        if (blocks.Count <= 0 || blocks.Start < 0 || blocks.End > config.NumLayers)
        {
            throw new ArgumentOutOfRangeException(nameof(blocks), blocks, string.Create(CultureInfo.InvariantCulture, $"Blocks {blocks} are not a non-empty range of the model's {config.NumLayers} blocks."));
        }

        if (!Directory.Exists(directory))
        {
            throw new ModelFormatException(directory, null, "the PEFT adapter directory does not exist.");
        }

        var peft = PeftAdapterConfig.Read(Path.Combine(directory, ConfigFileName));
        var weightsPath = Path.Combine(directory, WeightsFileName);
        if (!File.Exists(weightsPath))
        {
            var pickle = File.Exists(Path.Combine(directory, "adapter_model.bin")) ? " (adapter_model.bin, PyTorch's pickle format, is not read: save the adapter with safe_serialization=True)" : string.Empty;
            throw new ModelFormatException(weightsPath, null, $"the PEFT adapter weights are missing{pickle}.");
        }

        var targets = new List<LoraTarget>();
        foreach (var t in LoraTargets.All)
        {
            for (var b = 0; b < config.NumLayers; b++)
            {
                if (Targets(peft, weightsPath, b, t))
                {
                    targets.Add(t);
                    break;
                }
            }
        }

        if (targets.Count == 0)
        {
            throw new ModelFormatException(Path.Combine(directory, ConfigFileName), "target_modules", string.Create(CultureInfo.InvariantCulture, $"matches no module of the model's {config.NumLayers} blocks."));
        }

        long floats = 0;
        foreach (var t in targets)
        {
            floats += (long)peft.Rank * (LoraTargets.InFeatures(config, t) + LoraTargets.OutFeatures(config, t));
        }

        if (floats * blocks.Count > Array.MaxLength)
        {
            throw new ModelFormatException(Path.Combine(directory, ConfigFileName), "r", string.Create(CultureInfo.InvariantCulture, $"rank {peft.Rank} over {targets.Count} modules and {blocks.Count} blocks needs {floats * blocks.Count} floats, more than one buffer holds."));
        }

        using var file = SafetensorsFile.Open(weightsPath);
        var keys = IndexKeys(file, peft, config, weightsPath);
        var result = new LoraWeights(config, blocks, peft.Rank, peft.Scale, targets);
        for (var b = blocks.Start; b < blocks.End; b++)
        {
            foreach (var t in targets)
            {
                if (!Targets(peft, weightsPath, b, t))
                {
                    continue;
                }

                var a = Factor(file, keys, b, t, isB: false);
                var bKey = Factor(file, keys, b, t, isB: true);
                var da = file.Tensors[a];
                var db = file.Tensors[bKey];
                var inFeatures = LoraTargets.InFeatures(config, t);
                var outFeatures = LoraTargets.OutFeatures(config, t);
                if (da.Shape.Count != 2 || db.Shape.Count != 2)
                {
                    var (key, d) = da.Shape.Count != 2 ? (a, da) : (bKey, db);
                    throw new ModelFormatException(weightsPath, key, $"has shape [{string.Join(", ", d.Shape)}]; LoRA factors are matrices.");
                }

                if (da.Shape[0] != db.Shape[1])
                {
                    throw new ModelFormatException(weightsPath, bKey, string.Create(CultureInfo.InvariantCulture, $"has rank {db.Shape[1]} (shape [{db.Shape[0]}, {db.Shape[1]}]) but its lora_A '{a}' has rank {da.Shape[0]}."));
                }

                if (da.Shape[0] != peft.Rank)
                {
                    throw new ModelFormatException(weightsPath, a, string.Create(CultureInfo.InvariantCulture, $"has rank {da.Shape[0]} but adapter_config.json says r = {peft.Rank}."));
                }

                if (da.Shape[1] != inFeatures)
                {
                    throw new ModelFormatException(weightsPath, a, string.Create(CultureInfo.InvariantCulture, $"has shape [{da.Shape[0]}, {da.Shape[1]}]; {LoraTargets.ModuleName(t)} of this model takes {inFeatures} inputs, so lora_A must be [{peft.Rank}, {inFeatures}]."));
                }

                if (db.Shape[0] != outFeatures)
                {
                    throw new ModelFormatException(weightsPath, bKey, string.Create(CultureInfo.InvariantCulture, $"has shape [{db.Shape[0]}, {db.Shape[1]}]; {LoraTargets.ModuleName(t)} of this model has {outFeatures} outputs, so lora_B must be [{outFeatures}, {peft.Rank}]."));
                }

                ReadFloats(file, weightsPath, a, da, result.A(b, t).Span);
                ReadFloats(file, weightsPath, bKey, db, result.B(b, t).Span);
            }
        }

        return result;
    }

    /// <summary>
    /// Writes <paramref name="adapters"/> as a PEFT adapter directory (F32 tensors under PEFT's key names; a config with
    /// <c>r</c>, <c>lora_alpha = Scale · r</c>, the target modules, <c>bias: none</c>, and <c>layers_to_transform</c>
    /// when the adapters do not cover every block of the model), readable by PEFT and by <see cref="Load(string, ModelConfig, BlockRange)"/>.
    /// </summary>
    /// <param name="directory">The directory, created if needed; existing adapter files are overwritten.</param>
    /// <param name="adapters">The adapters.</param>
    /// <param name="baseModel">The <c>base_model_name_or_path</c> to record, if any.</param>
    /// <exception cref="ArgumentException">A value of <paramref name="adapters"/> is NaN or infinite.</exception>
    /// <exception cref="IOException">The files cannot be written.</exception>
    public static void Save(string directory, LoraWeights adapters, string? baseModel = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        ArgumentNullException.ThrowIfNull(adapters);
        foreach (var v in adapters.Values.Span)
        {
            if (!float.IsFinite(v))
            {
                throw new ArgumentException($"The adapters hold a non-finite value ({v}); refusing to save them.", nameof(adapters));
            }
        }

        Directory.CreateDirectory(directory);
        var tensors = new List<WeightTensor>();
        for (var b = adapters.Blocks.Start; b < adapters.Blocks.End; b++)
        {
            foreach (var t in adapters.Targets)
            {
                var module = KeyPrefix + PeftAdapterConfig.ModulePath(b, t);
                tensors.Add(Tensor(module + ".lora_A.weight", adapters.Rank, LoraTargets.InFeatures(adapters.Config, t), adapters.A(b, t)));
                tensors.Add(Tensor(module + ".lora_B.weight", LoraTargets.OutFeatures(adapters.Config, t), adapters.Rank, adapters.B(b, t)));
            }
        }

        SafetensorsWriter.Write(Path.Combine(directory, WeightsFileName), tensors, new Dictionary<string, string>(StringComparer.Ordinal) { ["format"] = "pt" });

        using var stream = new FileStream(Path.Combine(directory, ConfigFileName), FileMode.Create, FileAccess.Write, FileShare.None);
        using var json = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true });
        json.WriteStartObject();
        json.WriteString("peft_type", "LORA");
        json.WriteString("task_type", "CAUSAL_LM");
        if (baseModel is null)
        {
            json.WriteNull("base_model_name_or_path");
        }
        else
        {
            json.WriteString("base_model_name_or_path", baseModel);
        }

        json.WriteNumber("r", adapters.Rank);
        json.WriteNumber("lora_alpha", (double)adapters.Scale * adapters.Rank);
        json.WriteBoolean("use_rslora", false);
        json.WriteStartArray("target_modules");
        foreach (var t in adapters.Targets)
        {
            json.WriteStringValue(LoraTargets.ModuleName(t));
        }

        json.WriteEndArray();
        if (adapters.Blocks.Start == 0 && adapters.Blocks.End == adapters.Config.NumLayers)
        {
            json.WriteNull("layers_to_transform");
        }
        else
        {
            json.WriteStartArray("layers_to_transform");
            for (var b = adapters.Blocks.Start; b < adapters.Blocks.End; b++)
            {
                json.WriteNumberValue(b);
            }

            json.WriteEndArray();
        }

        json.WriteString("bias", "none");
        json.WriteNull("modules_to_save");
        json.WriteBoolean("fan_in_fan_out", false);
        json.WriteNumber("lora_dropout", 0);
        json.WriteBoolean("inference_mode", true);
        json.WriteBoolean("use_dora", false);
        json.WriteStartObject("rank_pattern");
        json.WriteEndObject();
        json.WriteStartObject("alpha_pattern");
        json.WriteEndObject();
        json.WriteEndObject();
    }

    private static WeightTensor Tensor(string name, int rows, int columns, Memory<float> values) =>
        new(new TensorDescriptor(name, TensorDType.F32, [rows, columns]), MemoryMarshal.AsBytes(values.Span).ToArray());

    private static bool Targets(PeftAdapterConfig peft, string weightsPath, int block, LoraTarget target)
    {
        try
        {
            return peft.Targets(block, target);
        }
        catch (RegexMatchTimeoutException ex)
        {
            throw new ModelFormatException(Path.Combine(Path.GetDirectoryName(weightsPath)!, ConfigFileName), "target_modules", "the regular expression took too long to match a module path.", ex);
        }
    }

    private static Dictionary<(int Block, LoraTarget Target, bool IsB), string> IndexKeys(SafetensorsFile file, PeftAdapterConfig peft, ModelConfig config, string path)
    {
        var keys = new Dictionary<(int, LoraTarget, bool), string>();
        foreach (var name in file.Tensors.Keys)
        {
            var factor = FactorKey().Match(name);
            if (!factor.Success)
            {
                throw new ModelFormatException(path, name, "is not a LoRA factor (base_model.model.<module>.lora_A.weight or .lora_B.weight); only plain LoRA adapters are read.");
            }

            var module = factor.Groups["module"].Value;
            if (factor.Groups["adapter"].Success && factor.Groups["adapter"].Value != "default")
            {
                throw new ModelFormatException(path, name, $"belongs to the adapter '{factor.Groups["adapter"].Value}'; a PEFT directory for serving holds one adapter (keys without a name, or named 'default').");
            }

            var block = BlockModule().Match(module);
            if (!block.Success)
            {
                throw new ModelFormatException(path, name, $"adapts '{module}', which is not a linear layer of a Llama block: only q_proj, k_proj, v_proj, o_proj (self_attn) and gate_proj, up_proj, down_proj (mlp) of model.layers.N are supported.");
            }

            var moduleName = block.Groups["name"].Value;
            if (!LoraTargets.TryParseModule(moduleName, out var target))
            {
                throw new ModelFormatException(path, name, $"adapts the unknown target module '{moduleName}'; only q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj and down_proj are supported.");
            }

            if (!int.TryParse(block.Groups["block"].ValueSpan, NumberStyles.None, CultureInfo.InvariantCulture, out var index) || index >= config.NumLayers)
            {
                throw new ModelFormatException(path, name, string.Create(CultureInfo.InvariantCulture, $"names block {block.Groups["block"].Value}, but the model has {config.NumLayers} blocks."));
            }

            if (PeftAdapterConfig.ModulePath(index, target) != module)
            {
                throw new ModelFormatException(path, name, $"puts {moduleName} under '{block.Groups["parent"].Value}'; a Llama block has it at {PeftAdapterConfig.ModulePath(index, target)}.");
            }

            if (!Targets(peft, path, index, target))
            {
                throw new ModelFormatException(path, name, $"adapts {module}, which adapter_config.json does not target (target_modules, exclude_modules, layers_to_transform).");
            }

            var isB = factor.Groups["factor"].Value == "B";
            if (!keys.TryAdd((index, target, isB), name))
            {
                throw new ModelFormatException(path, name, $"repeats the factor already stored as '{keys[(index, target, isB)]}'.");
            }
        }

        return keys;
    }

    private static string Factor(SafetensorsFile file, Dictionary<(int, LoraTarget, bool), string> keys, int block, LoraTarget target, bool isB) =>
        keys.TryGetValue((block, target, isB), out var key)
            ? key
            : throw new ModelFormatException(
                file.Path,
                KeyPrefix + PeftAdapterConfig.ModulePath(block, target) + (isB ? ".lora_B.weight" : ".lora_A.weight"),
                string.Create(CultureInfo.InvariantCulture, $"is missing: adapter_config.json targets {LoraTargets.ModuleName(target)} of block {block}."));

    private static void ReadFloats(SafetensorsFile file, string path, string key, TensorDescriptor descriptor, Span<float> destination)
    {
        var data = file.GetTensorData(key).Span;
        switch (descriptor.DType)
        {
            case TensorDType.F32:
                MemoryMarshal.Cast<byte, float>(data).CopyTo(destination);
                break;
            case TensorDType.F16:
                TensorConversions.HalfToSingle(data, destination);
                break;
            case TensorDType.BF16:
                TensorConversions.BFloat16ToSingle(data, destination);
                break;
            default:
                throw new ModelFormatException(path, key, $"has dtype {descriptor.DType}; LoRA factors are read as F32, F16 or BF16.");
        }

        for (var i = 0; i < destination.Length; i++)
        {
            if (!float.IsFinite(destination[i]))
            {
                throw new ModelFormatException(path, key, string.Create(CultureInfo.InvariantCulture, $"holds a non-finite value ({destination[i]}) at element {i}."));
            }
        }
    }

    [GeneratedRegex(@"^base_model\.model\.(?<module>.+)\.lora_(?<factor>A|B)(?:\.(?<adapter>[^.]+))?\.weight\z", RegexOptions.CultureInvariant)]
    private static partial Regex FactorKey();

    [GeneratedRegex(@"^model\.layers\.(?<block>[0-9]{1,9})\.(?<parent>[A-Za-z0-9_]+)\.(?<name>[A-Za-z0-9_]+)\z", RegexOptions.CultureInvariant)]
    private static partial Regex BlockModule();
}
