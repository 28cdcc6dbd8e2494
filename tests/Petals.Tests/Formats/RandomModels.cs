using Petals.Formats.HuggingFace;
using Petals.Models;
using Petals.Tensors;

namespace Petals.Tests.Formats;

/// <summary>Writes random Hugging Face Llama checkpoints of any <see cref="ModelConfig"/> in F32, F16 or BF16 (test helper).</summary>
internal static class RandomModels
{
    /// <summary>Random tensors for every weight <paramref name="config"/> needs (norms near 1, matrices small).</summary>
    public static List<WeightTensor> CreateTensors(ModelConfig config, TensorDType dtype, int seed)
    {
        var rng = new Random(seed);
        var result = new List<WeightTensor>();
        var names = new List<(string Name, long[] Shape)>
        {
            (LlamaTensorNames.Embeddings, [config.VocabSize, config.HiddenSize]),
        };
        long q = (long)config.NumHeads * config.HeadDim;
        long kv = (long)config.NumKeyValueHeads * config.HeadDim;
        for (var b = 0; b < config.NumLayers; b++)
        {
            names.Add((LlamaTensorNames.Block(b, LlamaTensorNames.InputNorm), [config.HiddenSize]));
            names.Add((LlamaTensorNames.Block(b, LlamaTensorNames.QProj), [q, config.HiddenSize]));
            names.Add((LlamaTensorNames.Block(b, LlamaTensorNames.KProj), [kv, config.HiddenSize]));
            names.Add((LlamaTensorNames.Block(b, LlamaTensorNames.VProj), [kv, config.HiddenSize]));
            names.Add((LlamaTensorNames.Block(b, LlamaTensorNames.OProj), [config.HiddenSize, q]));
            names.Add((LlamaTensorNames.Block(b, LlamaTensorNames.PostAttentionNorm), [config.HiddenSize]));
            names.Add((LlamaTensorNames.Block(b, LlamaTensorNames.GateProj), [config.IntermediateSize, config.HiddenSize]));
            names.Add((LlamaTensorNames.Block(b, LlamaTensorNames.UpProj), [config.IntermediateSize, config.HiddenSize]));
            names.Add((LlamaTensorNames.Block(b, LlamaTensorNames.DownProj), [config.HiddenSize, config.IntermediateSize]));
        }

        names.Add((LlamaTensorNames.FinalNorm, [config.HiddenSize]));
        if (!config.TieWordEmbeddings)
        {
            names.Add((LlamaTensorNames.LmHead, [config.VocabSize, config.HiddenSize]));
        }

        foreach (var (name, shape) in names)
        {
            long count = 1;
            foreach (var d in shape)
            {
                count *= d;
            }

            var isNorm = shape.Length == 1;
            var values = TestEncodings.Random(rng, count, isNorm ? 0.1f : 0.05f, isNorm ? 1f : 0f);
            var data = dtype switch
            {
                TensorDType.F32 => TestEncodings.F32(values),
                TensorDType.F16 => TestEncodings.F16(values),
                TensorDType.BF16 => TestEncodings.BF16(values),
                _ => throw new ArgumentOutOfRangeException(nameof(dtype)),
            };
            result.Add(new WeightTensor(new TensorDescriptor(name, dtype, shape), data));
        }

        return result;
    }

    /// <summary>Writes a random checkpoint into <paramref name="directory"/> and returns its tensors.</summary>
    public static List<WeightTensor> Write(string directory, ModelConfig config, TensorDType dtype, int seed, long maxShardBytes = long.MaxValue)
    {
        var tensors = CreateTensors(config, dtype, seed);
        HuggingFaceModelWriter.Write(directory, config, tensors, maxShardBytes);
        return tensors;
    }
}
