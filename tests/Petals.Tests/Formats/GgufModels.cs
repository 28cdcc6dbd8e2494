using Petals.Formats.Gguf;
using Petals.Models;

namespace Petals.Tests.Formats;

/// <summary>Builds random Llama GGUF files of a given configuration (test-only).</summary>
internal static class GgufModels
{
    public static ModelConfig SmallConfig(bool tied = false) => new()
    {
        HiddenSize = 64,
        IntermediateSize = 96,
        NumLayers = 2,
        NumHeads = 4,
        NumKeyValueHeads = 2,
        HeadDim = 16,
        VocabSize = 40,
        RmsNormEps = 1e-5,
        RopeTheta = 500000,
        MaxPositionEmbeddings = 256,
        TieWordEmbeddings = tied,
        BosTokenId = 1,
        EosTokenIds = [2],
    };

    /// <summary>
    /// A writer holding the metadata and random tensors of a Llama model; matrices in <paramref name="matrixType"/> (or the
    /// type <paramref name="typeOf"/> gives for the stored name, e.g. a Q4_K_M-like mix), norms F32.
    /// </summary>
    public static GgufTestWriter Create(ModelConfig c, int version, GgufTensorType matrixType, int seed, bool writeKvHeads = true, Func<string, GgufTensorType>? typeOf = null)
    {
        var rng = new Random(seed);
        var w = new GgufTestWriter(version);
        w.AddString("general.architecture", "llama")
            .AddString("general.name", "random")
            .AddU32("llama.context_length", (uint)c.MaxPositionEmbeddings)
            .AddU32("llama.embedding_length", (uint)c.HiddenSize)
            .AddU32("llama.block_count", (uint)c.NumLayers)
            .AddU32("llama.feed_forward_length", (uint)c.IntermediateSize)
            .AddU32("llama.rope.dimension_count", (uint)c.HeadDim)
            .AddU32("llama.attention.head_count", (uint)c.NumHeads)
            .AddF32("llama.attention.layer_norm_rms_epsilon", (float)c.RmsNormEps)
            .AddF32("llama.rope.freq_base", (float)c.RopeTheta)
            .AddString("tokenizer.ggml.model", "llama");
        if (writeKvHeads)
        {
            w.AddU32("llama.attention.head_count_kv", (uint)c.NumKeyValueHeads);
        }

        var tokens = new string[c.VocabSize];
        var scores = new float[c.VocabSize];
        var types = new int[c.VocabSize];
        for (var i = 0; i < tokens.Length; i++)
        {
            tokens[i] = i switch { 0 => "<unk>", 1 => "<s>", 2 => "</s>", _ => "tok" + i };
            scores[i] = -i;
            types[i] = i < 3 ? 3 : 1;
        }

        w.Add("tokenizer.ggml.tokens", GgufValueType.Array, new GgufArray(GgufValueType.String, tokens))
            .Add("tokenizer.ggml.scores", GgufValueType.Array, new GgufArray(GgufValueType.Float32, scores))
            .Add("tokenizer.ggml.token_type", GgufValueType.Array, new GgufArray(GgufValueType.Int32, types))
            .AddU32("tokenizer.ggml.bos_token_id", (uint)(c.BosTokenId ?? 1))
            .AddU32("tokenizer.ggml.eos_token_id", (uint)c.EosTokenIds[0]);

        long q = c.NumHeads * c.HeadDim;
        long kv = c.NumKeyValueHeads * c.HeadDim;
        Matrix("token_embd.weight", c.VocabSize, c.HiddenSize);
        for (var b = 0; b < c.NumLayers; b++)
        {
            Norm($"blk.{b}.attn_norm.weight");
            Matrix($"blk.{b}.attn_q.weight", q, c.HiddenSize);
            Matrix($"blk.{b}.attn_k.weight", kv, c.HiddenSize);
            Matrix($"blk.{b}.attn_v.weight", kv, c.HiddenSize);
            Matrix($"blk.{b}.attn_output.weight", c.HiddenSize, q);
            Norm($"blk.{b}.ffn_norm.weight");
            Matrix($"blk.{b}.ffn_gate.weight", c.IntermediateSize, c.HiddenSize);
            Matrix($"blk.{b}.ffn_down.weight", c.HiddenSize, c.IntermediateSize);
            Matrix($"blk.{b}.ffn_up.weight", c.IntermediateSize, c.HiddenSize);
        }

        Norm("output_norm.weight");
        if (!c.TieWordEmbeddings)
        {
            Matrix("output.weight", c.VocabSize, c.HiddenSize);
        }

        return w;

        void Norm(string name) =>
            w.AddTensor(name, GgufTensorType.F32, [c.HiddenSize], TestEncodings.F32(TestEncodings.Random(rng, c.HiddenSize, 0.1f, 1f)));

        void Matrix(string name, long rows, long cols)
        {
            var values = TestEncodings.Random(rng, rows * cols);
            var type = typeOf?.Invoke(name) ?? matrixType;
            w.AddTensor(name, type, [rows, cols], TestEncodings.Encode(type, values));
        }
    }
}
