using System.Collections.Concurrent;
using System.Globalization;
using Petals.Models;
using Petals.Tensors;

namespace Petals.Formats.Gguf;

/// <summary>
/// The weights of a Llama GGUF file under the canonical <see cref="LlamaTensorNames"/>, with the configuration read
/// from its <c>llama.*</c> metadata. Q and K projections are served in the Hugging Face (rotate-half) row order:
/// GGUF stores them in Meta's interleaved rotary order, and this class un-permutes them when they are requested.
/// </summary>
/// <remarks>
/// Tensors are served in their stored type: F32, F16, BF16 and the block-quantized types (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1,
/// Q2_K … Q6_K, as the <see cref="TensorDType"/> of the same name and block layout) are views of the memory mapping,
/// never dequantized; consumers that need floats use <see cref="ModelWeightsExtensions.GetFloatTensor"/>. Q/K
/// projections are re-ordered row by row (a row of a block type is whole blocks) into a new copy on every request (not
/// cached: the copy lives as long as its user holds it); other tensors are cached views. The scales of a block-quantized
/// tensor are checked for NaN/Inf when it is requested.
/// Thread-safe.
/// </remarks>
public sealed class GgufModelWeights : IModelWeights
{
    /// <summary>
    /// The stored name of the per-dimension rotary frequency divisors that llama.cpp writes for Llama 3.1-style
    /// <c>rope_scaling</c> (instead of metadata keys).
    /// </summary>
    public const string RopeFrequencyFactorsTensor = "rope_freqs.weight";

    private static readonly Dictionary<string, string> BlockNames = new(StringComparer.Ordinal)
    {
        ["attn_norm.weight"] = LlamaTensorNames.InputNorm,
        ["attn_q.weight"] = LlamaTensorNames.QProj,
        ["attn_k.weight"] = LlamaTensorNames.KProj,
        ["attn_v.weight"] = LlamaTensorNames.VProj,
        ["attn_output.weight"] = LlamaTensorNames.OProj,
        ["ffn_norm.weight"] = LlamaTensorNames.PostAttentionNorm,
        ["ffn_gate.weight"] = LlamaTensorNames.GateProj,
        ["ffn_up.weight"] = LlamaTensorNames.UpProj,
        ["ffn_down.weight"] = LlamaTensorNames.DownProj,
    };

    private readonly bool _ownsFile;
    private readonly Dictionary<string, GgufTensorInfo> _stored;
    private readonly ConcurrentDictionary<string, Lazy<WeightTensor>> _cache = new(StringComparer.Ordinal);

    private GgufModelWeights(GgufFile file, bool ownsFile)
    {
        File = file;
        _ownsFile = ownsFile;
        Config = ReadConfig(file);
        _stored = new Dictionary<string, GgufTensorInfo>(StringComparer.Ordinal);
        var descriptors = new Dictionary<string, TensorDescriptor>(StringComparer.Ordinal);
        foreach (var info in file.Tensors)
        {
            var canonical = CanonicalName(info.Name, Config.NumLayers);
            if (canonical is null)
            {
                continue;
            }

            var dtype = GgufTensorTypeInfo.ServedAs(info.Type) ?? throw file.UnsupportedType(info);
            _stored[canonical] = info;
            descriptors[canonical] = new TensorDescriptor(canonical, dtype, info.Shape);
        }

        Tensors = descriptors;
        LlamaLayout.Check(Config, descriptors, file.Path, name => _stored.TryGetValue(name, out var i) ? i.Name : GgufName(name));
    }

    /// <summary>The underlying GGUF file (metadata, tokenizer, raw tensors).</summary>
    public GgufFile File { get; }

    /// <inheritdoc />
    public ModelConfig Config { get; }

    /// <inheritdoc />
    public string Source => File.Path;

    /// <inheritdoc />
    public IReadOnlyDictionary<string, TensorDescriptor> Tensors { get; }

    /// <summary>Opens a Llama GGUF file.</summary>
    /// <param name="path">The file.</param>
    /// <returns>The weights; dispose them to unmap the file.</returns>
    /// <exception cref="ModelFormatException">When the file is malformed, is not a Llama model, or lacks a tensor the configuration needs (the message names it).</exception>
    /// <exception cref="IOException">When the file cannot be read.</exception>
    public static GgufModelWeights Open(string path)
    {
        var file = GgufFile.Open(path);
        try
        {
            return new GgufModelWeights(file, ownsFile: true);
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    /// <summary>Serves the weights of an already open GGUF file.</summary>
    /// <param name="file">The file; it is not disposed with the weights when <paramref name="leaveOpen"/> is true.</param>
    /// <param name="leaveOpen">Whether the caller keeps ownership of <paramref name="file"/>.</param>
    /// <returns>The weights.</returns>
    /// <exception cref="ModelFormatException">When the file is not a valid Llama model.</exception>
    public static GgufModelWeights Create(GgufFile file, bool leaveOpen)
    {
        ArgumentNullException.ThrowIfNull(file);
        return new GgufModelWeights(file, !leaveOpen);
    }

    /// <summary>Reads the model configuration from the <c>llama.*</c> and tokenizer metadata of <paramref name="file"/>.</summary>
    /// <param name="file">An open GGUF file.</param>
    /// <returns>The validated configuration.</returns>
    /// <exception cref="ModelFormatException">When a key is missing, of the wrong type or out of range (the message names it).</exception>
    public static ModelConfig ReadConfig(GgufFile file)
    {
        ArgumentNullException.ThrowIfNull(file);
        var arch = file.Architecture ?? throw new ModelFormatException(file.Path, "general.architecture", "key is missing.");
        if (arch != "llama")
        {
            throw new ModelFormatException(file.Path, "general.architecture", $"architecture '{arch}' is not supported (only 'llama').");
        }

        var hidden = Positive("llama.embedding_length");
        var inter = Positive("llama.feed_forward_length");
        var layers = Positive("llama.block_count");
        var heads = Positive("llama.attention.head_count");
        var kvHeads = Positive("llama.attention.head_count_kv", heads);
        if (heads % kvHeads != 0)
        {
            throw new ModelFormatException(file.Path, "llama.attention.head_count_kv", string.Create(CultureInfo.InvariantCulture, $"{kvHeads} does not divide the head count {heads}."));
        }

        int headDim;
        if (file.GetInt32("llama.attention.key_length") is not null)
        {
            headDim = Positive("llama.attention.key_length");
        }
        else if (hidden % heads != 0)
        {
            throw new ModelFormatException(file.Path, "llama.attention.head_count", string.Create(CultureInfo.InvariantCulture, $"{heads} does not divide the embedding length {hidden}."));
        }
        else
        {
            headDim = hidden / heads;
        }

        if (headDim % 2 != 0)
        {
            throw new ModelFormatException(file.Path, "llama.attention.head_count", string.Create(CultureInfo.InvariantCulture, $"head dimension {headDim} is odd."));
        }

        if (file.GetInt32("llama.rope.dimension_count") is { } ropeDim && ropeDim != headDim)
        {
            throw new ModelFormatException(file.Path, "llama.rope.dimension_count", string.Create(CultureInfo.InvariantCulture, $"partial rotary embeddings ({ropeDim} of {headDim}) are not supported."));
        }

        if (file.GetString("llama.rope.scaling.type") is { } scaling && scaling != "none")
        {
            throw new ModelFormatException(file.Path, "llama.rope.scaling.type", $"rope scaling '{scaling}' is not supported.");
        }

        var tokenizer = file.Tokenizer;
        int vocab;
        if (tokenizer.Tokens is { } tokens)
        {
            vocab = tokens.Count;
        }
        else if (file.GetInt32("llama.vocab_size") is not null)
        {
            vocab = Positive("llama.vocab_size");
        }
        else if (file.TryGetTensor("token_embd.weight", out var embd) && embd.Shape.Count == 2 && embd.Shape[0] <= int.MaxValue)
        {
            vocab = (int)embd.Shape[0];
        }
        else
        {
            throw new ModelFormatException(file.Path, "tokenizer.ggml.tokens", "the vocabulary size is unknown (no tokens, llama.vocab_size or token_embd.weight).");
        }

        var eps = Decimal("llama.attention.layer_norm_rms_epsilon")
            ?? throw new ModelFormatException(file.Path, "llama.attention.layer_norm_rms_epsilon", "key is missing.");
        var theta = Decimal("llama.rope.freq_base") ?? 10000.0;
        var context = Positive("llama.context_length", 2048);
        CheckPositive("llama.attention.layer_norm_rms_epsilon", eps);
        CheckPositive("llama.rope.freq_base", theta);

        var ropeScaling = ReadRopeFrequencyFactors(file, headDim, theta);
        var config = new ModelConfig
        {
            Architecture = arch,
            HiddenSize = hidden,
            IntermediateSize = inter,
            NumLayers = layers,
            NumHeads = heads,
            NumKeyValueHeads = kvHeads,
            HeadDim = headDim,
            VocabSize = vocab,
            RmsNormEps = eps,
            RopeTheta = theta,
            RopeScaling = ropeScaling,
            MaxPositionEmbeddings = context,
            TieWordEmbeddings = !file.TryGetTensor("output.weight", out _),
            BosTokenId = tokenizer.BosTokenId,
            EosTokenIds = tokenizer.EosTokenId is { } eos ? [eos] : [],
        };
        LlamaLayout.Validate(config, file.Path);
        return config;

        int Positive(string key, int? fallback = null)
        {
            var value = file.GetInt32(key) ?? fallback ?? throw new ModelFormatException(file.Path, key, "key is missing.");
            if (value <= 0)
            {
                throw new ModelFormatException(file.Path, key, string.Create(CultureInfo.InvariantCulture, $"value {value} is not positive."));
            }

            return value;
        }

        // GGUF stores these as float32; widen through the shortest decimal form so that 1e-5 stays 1e-5 (as in config.json).
        double? Decimal(string key) => file.GetValue(key)?.Value is float f
            ? double.Parse(f.ToString(CultureInfo.InvariantCulture), CultureInfo.InvariantCulture)
            : file.GetDouble(key);

        void CheckPositive(string key, double value)
        {
            if (!(value > 0) || !double.IsFinite(value))
            {
                throw new ModelFormatException(file.Path, key, string.Create(CultureInfo.InvariantCulture, $"value {value} is not a positive finite number."));
            }
        }
    }

    /// <summary>
    /// Reads <see cref="RopeFrequencyFactorsTensor"/> when present and returns the Llama 3 <c>rope_scaling</c> it encodes.
    /// llama.cpp stores only the divisors, not the parameters: the factor is their largest value, and the other
    /// parameters are taken as Meta's (low_freq_factor 1, high_freq_factor 4, original context 8192), which every
    /// Llama 3.1/3.2 model uses; every divisor is then checked against that reconstruction so that other divisors are
    /// rejected rather than silently ignored.
    /// </summary>
    private static RopeScaling? ReadRopeFrequencyFactors(GgufFile file, int headDim, double theta)
    {
        if (!file.TryGetTensor(RopeFrequencyFactorsTensor, out var info))
        {
            return null;
        }

        var half = headDim / 2;
        if (info.Type != GgufTensorType.F32 || info.Shape.Count != 1 || info.Shape[0] != half)
        {
            throw new ModelFormatException(file.Path, RopeFrequencyFactorsTensor, string.Create(CultureInfo.InvariantCulture, $"expected F32[{half}] (head_dim / 2), found {info.Type}[{string.Join(", ", info.Shape)}]."));
        }

        var stored = file.ReadSingles(info);
        var factor = 1.0;
        foreach (var f in stored)
        {
            if (!(f > 0) || !float.IsFinite(f))
            {
                throw new ModelFormatException(file.Path, RopeFrequencyFactorsTensor, string.Create(CultureInfo.InvariantCulture, $"divisor {f} is not a positive finite number."));
            }

            factor = Math.Max(factor, f);
        }

        var scaling = new RopeScaling(RopeScaling.Llama3, factor);
        for (var j = 0; j < half; j++)
        {
            var expected = Llama3FrequencyDivisor(scaling, theta, headDim, j);
            if (Math.Abs(stored[j] - expected) > 1e-4 * expected)
            {
                throw new ModelFormatException(file.Path, RopeFrequencyFactorsTensor, string.Create(CultureInfo.InvariantCulture,
                    $"divisor {j} is {stored[j]}, but Llama 3 rope scaling with factor {factor}, low_freq_factor 1, high_freq_factor 4 and original context 8192 gives {expected}; other per-dimension rotary factors are not supported."));
            }
        }

        // All ones: no scaling at all.
        return factor == 1.0 ? null : scaling;
    }

    /// <summary>The divisor Llama 3 rope scaling applies to the inverse frequency of rotary pair <paramref name="j"/> (Hugging Face's <c>_compute_llama3_parameters</c>).</summary>
    private static double Llama3FrequencyDivisor(RopeScaling scaling, double theta, int headDim, int j)
    {
        var wavelength = 2 * Math.PI * Math.Pow(theta, 2.0 * j / headDim);
        double context = scaling.OriginalMaxPositionEmbeddings;
        if (wavelength < context / scaling.HighFreqFactor)
        {
            return 1.0;
        }

        if (wavelength > context / scaling.LowFreqFactor)
        {
            return scaling.Factor;
        }

        var smooth = ((context / wavelength) - scaling.LowFreqFactor) / (scaling.HighFreqFactor - scaling.LowFreqFactor);
        return 1.0 / (((1 - smooth) / scaling.Factor) + smooth);
    }

    /// <inheritdoc />
    public WeightTensor GetTensor(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        if (!_stored.ContainsKey(name))
        {
            throw new KeyNotFoundException($"{Source}: the model has no tensor '{name}'.");
        }

        // Q/K projections are re-ordered copies: not cached, so that a copy lives only as long as its user holds it (an
        // executor that quantizes at load drops it once packed, instead of the weights keeping a float copy of Q and K).
        if (IsPermuted(name))
        {
            return Read(name);
        }

        return _cache.GetOrAdd(name, n => new Lazy<WeightTensor>(() => Read(n), LazyThreadSafetyMode.ExecutionAndPublication)).Value;
    }

    private static bool IsPermuted(string name) =>
        name.EndsWith(LlamaTensorNames.QProj, StringComparison.Ordinal) || name.EndsWith(LlamaTensorNames.KProj, StringComparison.Ordinal);

    /// <inheritdoc />
    public void Dispose()
    {
        if (_ownsFile)
        {
            File.Dispose();
        }
    }

    /// <summary>The stored (GGUF) name of a canonical tensor name.</summary>
    internal static string GgufName(string canonical)
    {
        switch (canonical)
        {
            case LlamaTensorNames.Embeddings:
                return "token_embd.weight";
            case LlamaTensorNames.FinalNorm:
                return "output_norm.weight";
            case LlamaTensorNames.LmHead:
                return "output.weight";
        }

        const string prefix = "model.layers.";
        if (canonical.StartsWith(prefix, StringComparison.Ordinal))
        {
            var dot = canonical.IndexOf('.', prefix.Length);
            if (dot > 0)
            {
                var suffix = canonical[(dot + 1)..];
                foreach (var (gguf, hf) in BlockNames)
                {
                    if (hf == suffix)
                    {
                        return $"blk.{canonical[prefix.Length..dot]}.{gguf}";
                    }
                }
            }
        }

        return canonical;
    }

    /// <summary>Reads a tensor without caching it (used by the converter to stream large models).</summary>
    internal WeightTensor Read(string name)
    {
        var info = _stored[name];
        var descriptor = Tensors[name];
        var permuteHeads = name.EndsWith(LlamaTensorNames.QProj, StringComparison.Ordinal) ? Config.NumHeads
            : name.EndsWith(LlamaTensorNames.KProj, StringComparison.Ordinal) ? Config.NumKeyValueHeads
            : 0;
        var data = File.GetTensorData(info);
        if (descriptor.DType.IsBlockQuantized() && BlockQuantization.TryFindNonFiniteScale(descriptor.DType, data.Span, out var block, out var field))
        {
            var blocksPerRow = descriptor.Shape[^1] / descriptor.DType.BlockElements();
            throw new ModelFormatException(File.Path, info.Name, string.Create(CultureInfo.InvariantCulture,
                $"{descriptor.DType} block {block} (row {block / blocksPerRow}) has a non-finite scale '{field}' (NaN or infinite)."));
        }

        if (permuteHeads > 0)
        {
            var rowBytes = checked((int)(data.Length / descriptor.Shape[0]));
            var permuted = new byte[data.Length];
            TensorConversions.MetaToHuggingFaceRows(data.Span, permuted, permuteHeads, Config.HeadDim, rowBytes);
            data = permuted;
        }

        return new WeightTensor(descriptor, data);
    }

    private static string? CanonicalName(string stored, int layers)
    {
        switch (stored)
        {
            case "token_embd.weight":
                return LlamaTensorNames.Embeddings;
            case "output_norm.weight":
                return LlamaTensorNames.FinalNorm;
            case "output.weight":
                return LlamaTensorNames.LmHead;
        }

        if (!stored.StartsWith("blk.", StringComparison.Ordinal))
        {
            return null;
        }

        var dot = stored.IndexOf('.', 4);
        if (dot < 0
            || !int.TryParse(stored.AsSpan(4, dot - 4), NumberStyles.None, CultureInfo.InvariantCulture, out var block)
            || block >= layers
            || !BlockNames.TryGetValue(stored[(dot + 1)..], out var suffix))
        {
            return null;
        }

        return LlamaTensorNames.Block(block, suffix);
    }
}
