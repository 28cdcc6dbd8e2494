using System.Globalization;

namespace Petals.Models;

/// <summary>
/// The canonical (Hugging Face Llama) names of model tensors. Every <see cref="IModelWeights"/>
/// exposes its tensors under these names whatever the file format, with Q/K rows in the Hugging Face
/// (rotate-half) order.
/// </summary>
public static class LlamaTensorNames
{
    /// <summary>Token embeddings <c>[vocab, hidden]</c>.</summary>
    public const string Embeddings = "model.embed_tokens.weight";

    /// <summary>Final RMSNorm weight <c>[hidden]</c>.</summary>
    public const string FinalNorm = "model.norm.weight";

    /// <summary>LM head <c>[vocab, hidden]</c>; absent when embeddings are tied.</summary>
    public const string LmHead = "lm_head.weight";

    /// <summary>Attention RMSNorm of a block <c>[hidden]</c>.</summary>
    public const string InputNorm = "input_layernorm.weight";

    /// <summary>Query projection <c>[heads*head_dim, hidden]</c>.</summary>
    public const string QProj = "self_attn.q_proj.weight";

    /// <summary>Key projection <c>[kv_heads*head_dim, hidden]</c>.</summary>
    public const string KProj = "self_attn.k_proj.weight";

    /// <summary>Value projection <c>[kv_heads*head_dim, hidden]</c>.</summary>
    public const string VProj = "self_attn.v_proj.weight";

    /// <summary>Attention output projection <c>[hidden, heads*head_dim]</c>.</summary>
    public const string OProj = "self_attn.o_proj.weight";

    /// <summary>MLP RMSNorm of a block <c>[hidden]</c>.</summary>
    public const string PostAttentionNorm = "post_attention_layernorm.weight";

    /// <summary>MLP gate projection <c>[intermediate, hidden]</c>.</summary>
    public const string GateProj = "mlp.gate_proj.weight";

    /// <summary>MLP up projection <c>[intermediate, hidden]</c>.</summary>
    public const string UpProj = "mlp.up_proj.weight";

    /// <summary>MLP down projection <c>[hidden, intermediate]</c>.</summary>
    public const string DownProj = "mlp.down_proj.weight";

    /// <summary>The per-block tensor suffixes, in a stable order.</summary>
    public static IReadOnlyList<string> BlockTensors { get; } =
        [InputNorm, QProj, KProj, VProj, OProj, PostAttentionNorm, GateProj, UpProj, DownProj];

    /// <summary>The full name of tensor <paramref name="suffix"/> of block <paramref name="block"/>, e.g. <c>model.layers.3.mlp.up_proj.weight</c>.</summary>
    /// <param name="block">The block index.</param>
    /// <param name="suffix">One of the per-block suffixes above.</param>
    /// <returns>The canonical tensor name.</returns>
    public static string Block(int block, string suffix) =>
        string.Create(CultureInfo.InvariantCulture, $"model.layers.{block}.{suffix}");
}
