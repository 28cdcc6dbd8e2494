using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using Petals.Execution;

namespace Petals.Formats.Peft;

/// <summary>
/// The fields of a PEFT <c>adapter_config.json</c> that decide what a LoRA adapter does to a Llama model:
/// <c>peft_type</c> (<c>LORA</c>), <c>r</c>, <c>lora_alpha</c>, <c>use_rslora</c>, <c>target_modules</c> (a list of module
/// names or a regular expression over module paths), <c>exclude_modules</c>, <c>layers_to_transform</c>.
/// </summary>
/// <remarks>
/// Fields that would change the adapted layers in ways <see cref="LoraWeights"/> cannot hold are refused by
/// <see cref="Read"/>: <c>bias</c> other than <c>none</c>, <c>modules_to_save</c>, <c>use_dora</c>, <c>lora_bias</c>,
/// <c>rank_pattern</c>/<c>alpha_pattern</c> entries whose rank or alpha differ from <c>r</c>/<c>lora_alpha</c>.
/// Training-only fields (<c>lora_dropout</c>, <c>init_lora_weights</c>, …) are ignored. <c>fan_in_fan_out</c> is accepted
/// either way: it describes the base layer's storage (GPT-2's Conv1D), not the factors, which PEFT always stores as
/// <c>A [r, in]</c> and <c>B [out, r]</c> (and PEFT turns it off for a Llama's linear layers).
/// </remarks>
public sealed record PeftAdapterConfig
{
    /// <summary>The largest rank read (65536): a low-rank adapter's rank is far below any model's width.</summary>
    public const int MaxRank = 1 << 16;

    /// <summary>The LoRA rank <c>r</c>.</summary>
    public required int Rank { get; init; }

    /// <summary><c>lora_alpha</c>.</summary>
    public required double Alpha { get; init; }

    /// <summary><c>use_rslora</c>: the scale is <c>alpha / √r</c> instead of <c>alpha / r</c>.</summary>
    public bool UseRsLora { get; init; }

    /// <summary><c>fan_in_fan_out</c> as written (informational; see the remarks).</summary>
    public bool FanInFanOut { get; init; }

    /// <summary><c>target_modules</c> when it is a list of module names (each a module name or a dotted suffix of a module path).</summary>
    public IReadOnlyList<string>? TargetModules { get; init; }

    /// <summary><c>target_modules</c> when it is a string: a regular expression that must match a whole module path (<c>model.layers.3.self_attn.q_proj</c>).</summary>
    public string? TargetModulesPattern { get; init; }

    /// <summary><c>exclude_modules</c> as a list, if any.</summary>
    public IReadOnlyList<string>? ExcludeModules { get; init; }

    /// <summary><c>exclude_modules</c> as a regular expression, if any.</summary>
    public string? ExcludeModulesPattern { get; init; }

    /// <summary><c>layers_to_transform</c>: the only layers adapted, or null for all.</summary>
    public IReadOnlyList<int>? LayersToTransform { get; init; }

    /// <summary><c>base_model_name_or_path</c>, if written (informational).</summary>
    public string? BaseModel { get; init; }

    /// <summary>The scale of the adapters' output: <c>lora_alpha / r</c>, or <c>lora_alpha / √r</c> with rsLoRA.</summary>
    public float Scale => (float)(UseRsLora ? Alpha / Math.Sqrt(Rank) : Alpha / Rank);

    /// <summary>Whether <paramref name="target"/> of block <paramref name="block"/> is adapted, as PEFT matches module paths.</summary>
    /// <param name="block">The block (model numbering).</param>
    /// <param name="target">The layer.</param>
    /// <returns>True when the config targets the module <c>model.layers.{block}.{self_attn|mlp}.{name}</c>.</returns>
    public bool Targets(int block, LoraTarget target)
    {
        if (LayersToTransform is { } layers && !layers.Contains(block))
        {
            return false;
        }

        var path = ModulePath(block, target);
        var included = TargetModulesPattern is { } pattern
            ? FullMatch(pattern, path)
            : TargetModules is { } list && list.Any(m => MatchesEntry(m, path));
        if (!included)
        {
            return false;
        }

        return !(ExcludeModulesPattern is { } exclude ? FullMatch(exclude, path) : ExcludeModules is { } excluded && excluded.Any(m => MatchesEntry(m, path)));
    }

    /// <summary>The module path PEFT matches for <paramref name="target"/> of <paramref name="block"/>: <c>model.layers.{block}.self_attn.q_proj</c>.</summary>
    /// <param name="block">The block.</param>
    /// <param name="target">The layer.</param>
    /// <returns>The dotted path within the causal-LM model.</returns>
    public static string ModulePath(int block, LoraTarget target) =>
        string.Create(CultureInfo.InvariantCulture, $"model.layers.{block}.{(target is LoraTarget.Gate or LoraTarget.Up or LoraTarget.Down ? "mlp" : "self_attn")}.{LoraTargets.ModuleName(target)}");

    /// <summary>Reads and validates <paramref name="path"/> (an <c>adapter_config.json</c>).</summary>
    /// <param name="path">The file.</param>
    /// <returns>The config.</returns>
    /// <exception cref="ModelFormatException">The file is missing, not JSON, or a field is missing, malformed or unsupported; the message names the file and field.</exception>
    public static PeftAdapterConfig Read(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!File.Exists(path))
        {
            throw new ModelFormatException(path, null, "the PEFT adapter config is missing (a PEFT adapter directory holds adapter_config.json and adapter_model.safetensors).");
        }

        JsonDocument doc;
        try
        {
            var bytes = File.ReadAllBytes(path);
            if (bytes.Length > 1 << 20)
            {
                throw new ModelFormatException(path, null, string.Create(CultureInfo.InvariantCulture, $"the adapter config has {bytes.Length} bytes; more than 1 MiB is not a PEFT config."));
            }

            doc = JsonDocument.Parse(bytes, new JsonDocumentOptions { MaxDepth = 16 });
        }
        catch (JsonException ex)
        {
            throw new ModelFormatException(path, null, $"the adapter config is not valid JSON: {ex.Message}", ex);
        }

        using (doc)
        {
            try
            {
                return Parse(path, doc.RootElement);
            }
            catch (InvalidOperationException ex)
            {
                throw new ModelFormatException(path, null, $"the adapter config holds invalid text: {ex.Message}", ex);
            }
        }
    }

    private static PeftAdapterConfig Parse(string path, JsonElement root)
    {
        if (root.ValueKind != JsonValueKind.Object)
        {
            throw new ModelFormatException(path, null, $"the adapter config is a JSON {root.ValueKind}, not an object.");
        }

        var peftType = RequiredString(path, root, "peft_type");
        if (peftType != "LORA")
        {
            throw new ModelFormatException(path, "peft_type", $"'{peftType}' is not supported; only LORA adapters are served.");
        }

        if (!root.TryGetProperty("r", out var rElement) || rElement.ValueKind != JsonValueKind.Number || !rElement.TryGetInt32(out var rank) || rank < 1)
        {
            throw new ModelFormatException(path, "r", $"must be a positive integer rank; found {Raw(root, "r")}.");
        }

        if (rank > MaxRank)
        {
            throw new ModelFormatException(path, "r", string.Create(CultureInfo.InvariantCulture, $"rank {rank} is over the largest supported, {MaxRank} (a low-rank adapter's rank is far below the model's width)."));
        }

        if (!root.TryGetProperty("lora_alpha", out var alphaElement) || alphaElement.ValueKind != JsonValueKind.Number || !double.IsFinite(alphaElement.GetDouble()))
        {
            throw new ModelFormatException(path, "lora_alpha", $"must be a finite number; found {Raw(root, "lora_alpha")}.");
        }

        var alpha = alphaElement.GetDouble();
        var bias = OptionalString(path, root, "bias") ?? "none";
        if (bias != "none")
        {
            throw new ModelFormatException(path, "bias", $"'{bias}' is not supported: only bias \"none\" (adapters without trained biases) is served.");
        }

        if (root.TryGetProperty("modules_to_save", out var save) && !(save.ValueKind == JsonValueKind.Null || (save.ValueKind == JsonValueKind.Array && save.GetArrayLength() == 0)))
        {
            throw new ModelFormatException(path, "modules_to_save", $"must be null: fully trained copies of modules ({save.GetRawText()}) are not LoRA adapters and are not served.");
        }

        foreach (var flag in (ReadOnlySpan<string>)["use_dora", "lora_bias"])
        {
            if (OptionalBool(path, root, flag))
            {
                throw new ModelFormatException(path, flag, "is true; only plain LoRA (no DoRA magnitudes, no LoRA biases) is supported.");
            }
        }

        if (root.TryGetProperty("target_parameters", out var parameters) && parameters.ValueKind == JsonValueKind.Array && parameters.GetArrayLength() > 0)
        {
            throw new ModelFormatException(path, "target_parameters", "adapters on raw parameters are not supported; target linear modules instead.");
        }

        CheckPattern(path, root, "rank_pattern", rank, "r");
        CheckPattern(path, root, "alpha_pattern", alpha, "lora_alpha");

        var (targets, targetPattern) = ModuleSelection(path, root, "target_modules", required: true);
        var (excluded, excludedPattern) = ModuleSelection(path, root, "exclude_modules", required: false);
        if (targets is not null)
        {
            foreach (var m in targets)
            {
                var last = m[(m.LastIndexOf('.') + 1)..];
                if (!LoraTargets.TryParseModule(last, out _))
                {
                    throw new ModelFormatException(path, "target_modules", $"'{m}' is not a module of a Llama block that can be adapted (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj).");
                }
            }
        }

        List<int>? layers = null;
        if (root.TryGetProperty("layers_to_transform", out var layersElement) && layersElement.ValueKind != JsonValueKind.Null)
        {
            layers = [];
            if (layersElement.ValueKind == JsonValueKind.Number && layersElement.TryGetInt32(out var single) && single >= 0)
            {
                layers.Add(single);
            }
            else if (layersElement.ValueKind == JsonValueKind.Array)
            {
                foreach (var e in layersElement.EnumerateArray())
                {
                    if (e.ValueKind != JsonValueKind.Number || !e.TryGetInt32(out var layer) || layer < 0)
                    {
                        throw new ModelFormatException(path, "layers_to_transform", $"entry {e.GetRawText()} is not a layer index.");
                    }

                    layers.Add(layer);
                }
            }
            else
            {
                throw new ModelFormatException(path, "layers_to_transform", $"must be null, a layer index or a list of them; found {layersElement.GetRawText()}.");
            }
        }

        var config = new PeftAdapterConfig
        {
            Rank = rank,
            Alpha = alpha,
            UseRsLora = OptionalBool(path, root, "use_rslora"),
            FanInFanOut = OptionalBool(path, root, "fan_in_fan_out"),
            TargetModules = targets,
            TargetModulesPattern = targetPattern,
            ExcludeModules = excluded,
            ExcludeModulesPattern = excludedPattern,
            LayersToTransform = layers,
            BaseModel = OptionalString(path, root, "base_model_name_or_path"),
        };
        if (!float.IsFinite(config.Scale))
        {
            throw new ModelFormatException(path, "lora_alpha", string.Create(CultureInfo.InvariantCulture, $"lora_alpha {alpha} with r {rank} gives a scale outside float range."));
        }

        return config;
    }

    private static (List<string>? List, string? Pattern) ModuleSelection(string path, JsonElement root, string field, bool required)
    {
        if (!root.TryGetProperty(field, out var element) || element.ValueKind == JsonValueKind.Null)
        {
            return required
                ? throw new ModelFormatException(path, field, "is missing: an adapter must name the modules it adapts (a list of names or a regular expression).")
                : (null, null);
        }

        if (element.ValueKind == JsonValueKind.String)
        {
            var pattern = element.GetString()!;
            try
            {
                _ = new Regex(pattern, RegexOptions.CultureInvariant, TimeSpan.FromSeconds(1));
            }
            catch (ArgumentException ex)
            {
                throw new ModelFormatException(path, field, $"'{pattern}' is not a valid regular expression: {ex.Message}", ex);
            }

            return (null, pattern);
        }

        if (element.ValueKind != JsonValueKind.Array)
        {
            throw new ModelFormatException(path, field, $"must be a list of module names or a regular expression string; found a JSON {element.ValueKind}.");
        }

        var list = new List<string>();
        foreach (var e in element.EnumerateArray())
        {
            if (e.ValueKind != JsonValueKind.String || string.IsNullOrEmpty(e.GetString()))
            {
                throw new ModelFormatException(path, field, $"entry {e.GetRawText()} is not a module name.");
            }

            list.Add(e.GetString()!);
        }

        if (required && list.Count == 0)
        {
            throw new ModelFormatException(path, field, "is empty: the adapter adapts no module.");
        }

        return (list, null);
    }

    private static void CheckPattern(string path, JsonElement root, string field, double expected, string against)
    {
        if (!root.TryGetProperty(field, out var element) || element.ValueKind == JsonValueKind.Null)
        {
            return;
        }

        if (element.ValueKind != JsonValueKind.Object)
        {
            throw new ModelFormatException(path, field, $"must be an object of module patterns to numbers; found a JSON {element.ValueKind}.");
        }

        foreach (var p in element.EnumerateObject())
        {
            if (p.Value.ValueKind != JsonValueKind.Number || p.Value.GetDouble() != expected)
            {
                throw new ModelFormatException(
                    path,
                    field + "." + p.Name,
                    string.Create(CultureInfo.InvariantCulture, $"{p.Value.GetRawText()} differs from {against} = {expected}; adapters whose modules have different ranks or alphas are not supported."));
            }
        }
    }

    private static bool MatchesEntry(string entry, string modulePath) =>
        modulePath == entry || modulePath.EndsWith("." + entry, StringComparison.Ordinal);

    private static bool FullMatch(string pattern, string modulePath) =>
        Regex.IsMatch(modulePath, "^(?:" + pattern + @")\z", RegexOptions.CultureInvariant, TimeSpan.FromSeconds(1));

    private static string RequiredString(string path, JsonElement root, string field) =>
        OptionalString(path, root, field) ?? throw new ModelFormatException(path, field, "is missing.");

    private static string? OptionalString(string path, JsonElement root, string field)
    {
        if (!root.TryGetProperty(field, out var e) || e.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        return e.ValueKind == JsonValueKind.String ? e.GetString() : throw new ModelFormatException(path, field, $"must be a string; found {e.GetRawText()}.");
    }

    private static bool OptionalBool(string path, JsonElement root, string field)
    {
        if (!root.TryGetProperty(field, out var e) || e.ValueKind == JsonValueKind.Null)
        {
            return false;
        }

        return e.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw new ModelFormatException(path, field, $"must be true or false; found {e.GetRawText()}."),
        };
    }

    private static string Raw(JsonElement root, string field) => root.TryGetProperty(field, out var e) ? e.GetRawText() : "nothing";
}
