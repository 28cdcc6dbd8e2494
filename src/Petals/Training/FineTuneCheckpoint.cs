using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.Json;
using Petals.Execution;
using Petals.Formats.Safetensors;
using Petals.Tensors;

namespace Petals.Training;

/// <summary>
/// Checkpoints of a <see cref="TrainableModel"/> in a directory: <c>adaptation.safetensors</c> (the trainable parameters,
/// fp32, with the mode, its options and the step as metadata), <c>optimizer.safetensors</c> (AdamW's moments
/// <c>m.NAME</c>, <c>v.NAME</c> and step) and <c>finetune.json</c> (a small description for people and tools). Training
/// resumed from a checkpoint continues exactly as if it had not stopped.
/// </summary>
public static class FineTuneCheckpoint
{
    /// <summary>The parameters' file.</summary>
    public const string ParametersFile = "adaptation.safetensors";

    /// <summary>The optimizer state's file.</summary>
    public const string OptimizerFile = "optimizer.safetensors";

    /// <summary>The description's file.</summary>
    public const string DescriptionFile = "finetune.json";

    /// <summary>
    /// Writes <paramref name="model"/>'s parameters, <paramref name="optimizer"/>'s state (when given) and <c>finetune.json</c>
    /// (with <paramref name="extra"/> properties) into <paramref name="directory"/>, created if needed.
    /// </summary>
    /// <param name="directory">The checkpoint directory.</param>
    /// <param name="model">The model.</param>
    /// <param name="optimizer">The optimizer, or <see langword="null"/> for parameters only.</param>
    /// <param name="extra">More properties for <c>finetune.json</c> (numbers, strings, booleans), or <see langword="null"/>.</param>
    public static void Save(string directory, TrainableModel model, AdamW? optimizer, IReadOnlyDictionary<string, object>? extra = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        ArgumentNullException.ThrowIfNull(model);
        Directory.CreateDirectory(directory);
        var step = optimizer?.StepCount ?? 0;
        var metadata = Describe(model.Options);
        metadata["step"] = step.ToString(CultureInfo.InvariantCulture);
        metadata["hidden_size"] = model.Config.HiddenSize.ToString(CultureInfo.InvariantCulture);
        metadata["num_layers"] = model.Config.NumLayers.ToString(CultureInfo.InvariantCulture);
        SafetensorsWriter.Write(Path.Combine(directory, ParametersFile), [.. model.Parameters.Select(p => Tensor(p.Name, p.Shape, p.Values))], metadata);
        if (optimizer is not null)
        {
            var tensors = new List<WeightTensor>();
            for (var i = 0; i < model.Parameters.Count; i++)
            {
                tensors.Add(Tensor("m." + model.Parameters[i].Name, model.Parameters[i].Shape, optimizer.FirstMoments[i]));
                tensors.Add(Tensor("v." + model.Parameters[i].Name, model.Parameters[i].Shape, optimizer.SecondMoments[i]));
            }

            SafetensorsWriter.Write(Path.Combine(directory, OptimizerFile), tensors, new Dictionary<string, string> { ["step"] = step.ToString(CultureInfo.InvariantCulture) });
        }

        using var stream = File.Create(Path.Combine(directory, DescriptionFile));
        using var json = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true });
        json.WriteStartObject();
        json.WriteString("format", "petals-finetune/1");
        foreach (var (key, value) in metadata)
        {
            if (long.TryParse(value, NumberStyles.Integer, CultureInfo.InvariantCulture, out var number))
            {
                json.WriteNumber(key, number);
            }
            else
            {
                json.WriteString(key, value);
            }
        }

        json.WriteStartArray("parameters");
        foreach (var p in model.Parameters)
        {
            json.WriteStartObject();
            json.WriteString("name", p.Name);
            json.WriteStartArray("shape");
            foreach (var d in p.Shape)
            {
                json.WriteNumberValue(d);
            }

            json.WriteEndArray();
            json.WriteEndObject();
        }

        json.WriteEndArray();
        json.WriteString("parameters_file", ParametersFile);
        if (optimizer is not null)
        {
            json.WriteString("optimizer_file", OptimizerFile);
        }

        foreach (var (key, value) in extra ?? new Dictionary<string, object>())
        {
            switch (value)
            {
                case string s: json.WriteString(key, s); break;
                case bool b: json.WriteBoolean(key, b); break;
                case IConvertible c: json.WriteNumber(key, c.ToDouble(CultureInfo.InvariantCulture)); break;
                default: json.WriteString(key, value?.ToString()); break;
            }
        }

        json.WriteEndObject();
    }

    /// <summary>Reads the options a checkpoint was trained with (from <c>adaptation.safetensors</c>'s metadata).</summary>
    /// <param name="directory">The checkpoint directory.</param>
    /// <returns>The options; build a <see cref="TrainableModel"/> with them, then <see cref="LoadParameters"/>.</returns>
    /// <exception cref="InvalidDataException">The directory holds no checkpoint or its metadata is malformed; the message names the file.</exception>
    public static FineTuneOptions ReadOptions(string directory)
    {
        var path = Path.Combine(directory, ParametersFile);
        if (!File.Exists(path))
        {
            throw new InvalidDataException($"'{directory}' holds no fine-tuning checkpoint ({ParametersFile} is missing).");
        }

        using var file = SafetensorsFile.Open(path);
        var m = file.Metadata;
        string Get(string key) => m.TryGetValue(key, out var v) ? v : throw new InvalidDataException($"{path}: metadata '{key}' is missing.");
        int Int(string key) => int.TryParse(Get(key), NumberStyles.Integer, CultureInfo.InvariantCulture, out var v) ? v : throw new InvalidDataException($"{path}: metadata '{key}' = '{Get(key)}' is not an integer.");
        var mode = Get("mode") switch
        {
            "ptune" => FineTuneMode.PromptTuning,
            "deep_ptune" => FineTuneMode.DeepPromptTuning,
            "lora" => FineTuneMode.Lora,
            var other => throw new InvalidDataException($"{path}: unknown mode '{other}'."),
        };
        var targets = new List<LoraTarget>();
        foreach (var name in Get("lora_targets").Split(',', StringSplitOptions.RemoveEmptyEntries))
        {
            targets.Add(LoraTargets.TryParseModule(name, out var t) ? t : throw new InvalidDataException($"{path}: unknown LoRA target '{name}'."));
        }

        var options = new FineTuneOptions
        {
            Mode = mode,
            PromptTokens = Int("prompt_tokens"),
            LoraRank = Int("lora_rank"),
            LoraAlpha = float.Parse(Get("lora_alpha"), CultureInfo.InvariantCulture),
            LoraTargets = targets,
            ClassCount = Int("classes"),
            Pooling = Enum.TryParse<ClassificationPooling>(Get("pooling"), out var pooling) ? pooling : throw new InvalidDataException($"{path}: unknown pooling '{Get("pooling")}'."),
        };
        try
        {
            options.Validate();
        }
        catch (ArgumentException e)
        {
            throw new InvalidDataException($"{path}: {e.Message}", e);
        }

        return options;
    }

    /// <summary>
    /// Loads a checkpoint's parameters into <paramref name="model"/> (built with <see cref="ReadOptions"/>) and, when
    /// <paramref name="optimizer"/> is given, the optimizer state.
    /// </summary>
    /// <param name="directory">The checkpoint directory.</param>
    /// <param name="model">The model to fill.</param>
    /// <param name="optimizer">The optimizer to restore, or <see langword="null"/>.</param>
    /// <returns>The step of the checkpoint.</returns>
    /// <exception cref="InvalidDataException">A tensor is missing or of the wrong shape or dtype, or the optimizer file is missing; the message names it.</exception>
    public static long LoadParameters(string directory, TrainableModel model, AdamW? optimizer = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        ArgumentNullException.ThrowIfNull(model);
        var path = Path.Combine(directory, ParametersFile);
        long step;
        using (var file = SafetensorsFile.Open(path))
        {
            step = long.Parse(file.Metadata.TryGetValue("step", out var s) ? s : "0", CultureInfo.InvariantCulture);
            foreach (var p in model.Parameters)
            {
                Read(file, path, p.Name, p.Shape, p.Values);
            }
        }

        if (optimizer is not null)
        {
            var optimizerPath = Path.Combine(directory, OptimizerFile);
            if (!File.Exists(optimizerPath))
            {
                throw new InvalidDataException($"'{directory}' holds no optimizer state ({OptimizerFile} is missing); it cannot be resumed.");
            }

            using var file = SafetensorsFile.Open(optimizerPath);
            var first = new List<float[]>();
            var second = new List<float[]>();
            foreach (var p in model.Parameters)
            {
                var m = new float[p.Values.Length];
                var v = new float[p.Values.Length];
                Read(file, optimizerPath, "m." + p.Name, p.Shape, m);
                Read(file, optimizerPath, "v." + p.Name, p.Shape, v);
                first.Add(m);
                second.Add(v);
            }

            optimizer.Restore(step, first, second);
        }

        return step;
    }

    private static Dictionary<string, string> Describe(FineTuneOptions options) => new()
    {
        ["mode"] = options.Mode switch
        {
            FineTuneMode.PromptTuning => "ptune",
            FineTuneMode.DeepPromptTuning => "deep_ptune",
            _ => "lora",
        },
        ["prompt_tokens"] = options.PrefixLength.ToString(CultureInfo.InvariantCulture),
        ["lora_rank"] = options.LoraRank.ToString(CultureInfo.InvariantCulture),
        ["lora_alpha"] = options.LoraAlpha.ToString("R", CultureInfo.InvariantCulture),
        ["lora_targets"] = string.Join(",", options.LoraTargets.Select(LoraTargets.ModuleName)),
        ["classes"] = options.ClassCount.ToString(CultureInfo.InvariantCulture),
        ["pooling"] = options.Pooling.ToString(),
    };

    private static WeightTensor Tensor(string name, IReadOnlyList<int> shape, float[] values) =>
        new(new TensorDescriptor(name, TensorDType.F32, [.. shape.Select(d => (long)d)]), MemoryMarshal.AsBytes(values.AsSpan()).ToArray());

    private static void Read(SafetensorsFile file, string path, string name, IReadOnlyList<int> shape, float[] destination)
    {
        if (!file.Tensors.TryGetValue(name, out var descriptor))
        {
            throw new InvalidDataException($"{path}: tensor '{name}' is missing.");
        }

        if (descriptor.DType != TensorDType.F32 || !descriptor.Shape.SequenceEqual(shape.Select(d => (long)d)))
        {
            throw new InvalidDataException($"{path}: tensor '{name}' is {descriptor.DType} [{string.Join(", ", descriptor.Shape)}]; expected F32 [{string.Join(", ", shape)}].");
        }

        MemoryMarshal.Cast<byte, float>(file.GetTensorData(name).Span).CopyTo(destination);
    }
}
