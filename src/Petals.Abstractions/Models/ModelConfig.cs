namespace Petals.Models;

/// <summary>
/// The shape of a Llama-family decoder-only model, as read from a Hugging Face <c>config.json</c>
/// or a GGUF file's metadata.
/// </summary>
/// <remarks>Immutable and thread-safe. Call <see cref="Validate"/> before use on untrusted input.</remarks>
public sealed record ModelConfig
{
    /// <summary>Architecture name, e.g. <c>"llama"</c>.</summary>
    public string Architecture { get; init; } = "llama";

    /// <summary>Model width (<c>hidden_size</c>).</summary>
    public required int HiddenSize { get; init; }

    /// <summary>MLP inner width (<c>intermediate_size</c>).</summary>
    public required int IntermediateSize { get; init; }

    /// <summary>Number of decoder blocks (<c>num_hidden_layers</c>).</summary>
    public required int NumLayers { get; init; }

    /// <summary>Number of query heads (<c>num_attention_heads</c>).</summary>
    public required int NumHeads { get; init; }

    /// <summary>Number of key/value heads (<c>num_key_value_heads</c>); equal to <see cref="NumHeads"/> for multi-head attention.</summary>
    public required int NumKeyValueHeads { get; init; }

    /// <summary>Width of one head (<c>head_dim</c>); defaults to <c>HiddenSize / NumHeads</c>.</summary>
    public required int HeadDim { get; init; }

    /// <summary>Vocabulary size.</summary>
    public required int VocabSize { get; init; }

    /// <summary>RMSNorm epsilon (<c>rms_norm_eps</c>), default 1e-6 in Hugging Face, 1e-5 for Llama 2.</summary>
    public double RmsNormEps { get; init; } = 1e-6;

    /// <summary>Rotary base (<c>rope_theta</c>), default 10000.</summary>
    public double RopeTheta { get; init; } = 10000.0;

    /// <summary>Optional rotary frequency scaling.</summary>
    public RopeScaling? RopeScaling { get; init; }

    /// <summary>Maximum positions (<c>max_position_embeddings</c>), default 2048.</summary>
    public int MaxPositionEmbeddings { get; init; } = 2048;

    /// <summary>Whether the LM head shares the token embedding matrix.</summary>
    public bool TieWordEmbeddings { get; init; }

    /// <summary>Beginning-of-sequence token id, if any.</summary>
    public int? BosTokenId { get; init; }

    /// <summary>End-of-sequence token ids (Llama 3 instruct models have several).</summary>
    public IReadOnlyList<int> EosTokenIds { get; init; } = [];

    /// <summary>Number of query heads sharing one key/value head.</summary>
    public int GroupSize => NumHeads / NumKeyValueHeads;

    /// <summary>Checks that the sizes are positive and consistent.</summary>
    /// <param name="source">A description of where the configuration came from, used in the error message (e.g. a file path).</param>
    /// <exception cref="InvalidDataException">When a size is not positive or heads do not divide evenly; the message names the field.</exception>
    public void Validate(string source)
    {
        Require(HiddenSize > 0, "hidden_size", HiddenSize);
        Require(IntermediateSize > 0, "intermediate_size", IntermediateSize);
        Require(NumLayers > 0, "num_hidden_layers", NumLayers);
        Require(NumHeads > 0, "num_attention_heads", NumHeads);
        Require(NumKeyValueHeads > 0 && NumHeads % NumKeyValueHeads == 0, "num_key_value_heads", NumKeyValueHeads);
        Require(HeadDim > 0 && HeadDim % 2 == 0, "head_dim", HeadDim);
        Require(VocabSize > 0, "vocab_size", VocabSize);
        Require(MaxPositionEmbeddings > 0, "max_position_embeddings", MaxPositionEmbeddings);
        Require(RmsNormEps > 0 && double.IsFinite(RmsNormEps), "rms_norm_eps", RmsNormEps);
        Require(RopeTheta > 0 && double.IsFinite(RopeTheta), "rope_theta", RopeTheta);

        void Require(bool condition, string field, object value)
        {
            if (!condition)
            {
                throw new InvalidDataException($"{source}: model configuration field '{field}' has invalid value {value}.");
            }
        }
    }
}
