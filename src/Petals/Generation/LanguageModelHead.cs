using System.Runtime.InteropServices;
using Petals.Formats;
using Petals.Models;
using Petals.Numerics;
using Petals.Tensors;

namespace Petals.Generation;

/// <summary>
/// The client-side ends of a causal language model: token embeddings, the final RMSNorm and the LM head
/// (tied to the embeddings or not). Only these tensors are read from the weights.
/// </summary>
/// <remarks>Thread-safe: it holds no mutable state.</remarks>
public sealed class LanguageModelHead
{
    private readonly DenseMatrix _embeddings;
    private readonly DenseMatrix _head;
    private readonly float[] _normWeight;
    private readonly float _eps;

    private LanguageModelHead(ModelConfig config, DenseMatrix embeddings, DenseMatrix head, float[] normWeight)
    {
        Config = config;
        _embeddings = embeddings;
        _head = head;
        _normWeight = normWeight;
        _eps = (float)config.RmsNormEps;
    }

    /// <summary>The model configuration.</summary>
    public ModelConfig Config { get; }

    /// <summary>The LM head matrix <c>[VocabSize, HiddenSize]</c> (the embeddings when tied); fine-tuning reads it to run backward.</summary>
    internal DenseMatrix HeadMatrix => _head;

    /// <summary>The final RMSNorm's weight.</summary>
    internal ReadOnlySpan<float> NormWeight => _normWeight;

    /// <summary>The final RMSNorm's epsilon.</summary>
    internal float NormEpsilon => _eps;

    /// <summary>Whether the LM head is the embedding matrix (tied weights).</summary>
    public bool IsTied => ReferenceEquals(_embeddings, _head);

    /// <summary>Reads the embeddings, final norm and LM head from <paramref name="weights"/>.</summary>
    /// <param name="weights">The model weights; must outlive the head (tensor memory may be mapped from a file).</param>
    /// <returns>The head.</returns>
    /// <exception cref="InvalidDataException">When a tensor is missing, has the wrong shape or an unsupported dtype; the message names it.</exception>
    public static LanguageModelHead Load(IModelWeights weights)
    {
        ArgumentNullException.ThrowIfNull(weights);
        var config = weights.Config;
        var embeddings = new DenseMatrix(Get(weights, LlamaTensorNames.Embeddings), config.VocabSize, config.HiddenSize);
        var head = config.TieWordEmbeddings || !weights.Tensors.ContainsKey(LlamaTensorNames.LmHead)
            ? embeddings
            : new DenseMatrix(Get(weights, LlamaTensorNames.LmHead), config.VocabSize, config.HiddenSize);
        var normTensor = Get(weights, LlamaTensorNames.FinalNorm);
        if (normTensor.Descriptor.Shape is not [var n] || n != config.HiddenSize)
        {
            throw new InvalidDataException($"{weights.Source}: tensor '{LlamaTensorNames.FinalNorm}' has shape [{string.Join(", ", normTensor.Descriptor.Shape)}]; expected [{config.HiddenSize}].");
        }

        var norm = new float[config.HiddenSize];
        new DenseMatrix(normTensor with { Descriptor = normTensor.Descriptor with { Shape = [1, config.HiddenSize] } }, 1, config.HiddenSize).ReadRow(0, norm);
        return new LanguageModelHead(config, embeddings, head, norm);
    }

    /// <summary>Writes the embeddings of <paramref name="tokenIds"/> into <paramref name="hidden"/> (<c>[tokens, HiddenSize]</c>).</summary>
    /// <param name="tokenIds">Token ids, each in <c>[0, VocabSize)</c>.</param>
    /// <param name="hidden">Destination of at least <c>tokens * HiddenSize</c> values.</param>
    /// <exception cref="ArgumentOutOfRangeException">When an id is outside the vocabulary.</exception>
    public void Embed(ReadOnlySpan<int> tokenIds, Span<float> hidden)
    {
        var h = Config.HiddenSize;
        if (hidden.Length < tokenIds.Length * h)
        {
            throw new ArgumentException($"Destination holds {hidden.Length} values; {tokenIds.Length} tokens need {tokenIds.Length * h}.", nameof(hidden));
        }

        for (var i = 0; i < tokenIds.Length; i++)
        {
            var id = tokenIds[i];
            if ((uint)id >= (uint)Config.VocabSize)
            {
                throw new ArgumentOutOfRangeException(nameof(tokenIds), id, $"Token id {id} is outside the vocabulary [0, {Config.VocabSize}).");
            }

            _embeddings.ReadRow(id, hidden.Slice(i * h, h));
        }
    }

    /// <summary>Applies the final norm and the LM head to one position's hidden state.</summary>
    /// <param name="hidden">The last block's output for one position (<c>HiddenSize</c> values); not modified.</param>
    /// <param name="logits">Destination of <c>VocabSize</c> logits.</param>
    /// <param name="scratch">Scratch of at least <c>HiddenSize</c> values (avoids an allocation per token).</param>
    public void ComputeLogits(ReadOnlySpan<float> hidden, Span<float> logits, Span<float> scratch)
    {
        var h = Config.HiddenSize;
        if (hidden.Length != h || logits.Length < Config.VocabSize || scratch.Length < h)
        {
            throw new ArgumentException($"Expected a hidden state of {h} values, {Config.VocabSize} logits and {h} scratch values; got {hidden.Length}, {logits.Length} and {scratch.Length}.");
        }

        var normed = scratch[..h];
        RmsNorm.Apply(hidden, _normWeight, _eps, normed);
        _head.MultiplyVector(normed, logits[..Config.VocabSize]);
    }

    /// <summary>Applies the final norm to one position's hidden state (what <see cref="ComputeLogits"/> feeds the LM head).</summary>
    /// <param name="hidden">The last block's output for one position (<c>HiddenSize</c> values); not modified.</param>
    /// <param name="destination">Destination of <c>HiddenSize</c> values; may not overlap <paramref name="hidden"/>.</param>
    /// <exception cref="ArgumentException">When a buffer does not hold <c>HiddenSize</c> values.</exception>
    public void Normalize(ReadOnlySpan<float> hidden, Span<float> destination)
    {
        var h = Config.HiddenSize;
        if (hidden.Length != h || destination.Length != h)
        {
            throw new ArgumentException($"Expected a hidden state and a destination of {h} values; got {hidden.Length} and {destination.Length}.");
        }

        RmsNorm.Apply(hidden, _normWeight, _eps, destination);
    }

    /// <summary>Reads an embedding row (for diagnostics and tests).</summary>
    /// <param name="tokenId">The token id.</param>
    /// <returns>The embedding as fp32.</returns>
    public float[] GetEmbedding(int tokenId)
    {
        var row = new float[Config.HiddenSize];
        Embed(MemoryMarshal.CreateReadOnlySpan(ref tokenId, 1), row);
        return row;
    }

    private static WeightTensor Get(IModelWeights weights, string name)
    {
        if (!weights.Tensors.ContainsKey(name))
        {
            throw new InvalidDataException($"{weights.Source}: tensor '{name}' is missing.");
        }

        // Block-quantized files (a Q4_K_M GGUF stores token_embd as Q4_K or Q6_K) are dequantized here, once.
        return weights.GetFloatTensor(name);
    }
}
