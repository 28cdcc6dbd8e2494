using Petals.Tensors;

namespace Petals.Execution;

/// <summary>
/// How an executor holds its span's weights, returned by <see cref="IBlockExecutor.GetService"/> for this type: what a
/// server announces (<see cref="Quantization"/>) and what its memory accounting uses.
/// </summary>
/// <param name="Quantization">
/// A short lower-case description of the weight storage that clients can require: <c>"none"</c> for fp32/fp16/bf16 weights,
/// a <see cref="WeightQuantization"/> name when the executor quantized at load (<c>"int8"</c>, <c>"nf4"</c>, …), or the
/// file's block types joined by <c>'+'</c> in <see cref="TensorDType"/> order when they were stored quantized
/// (<c>"q4_k+q6_k"</c> for a Q4_K_M GGUF).
/// </param>
/// <param name="BytesByDType">Bytes of linear-layer weights held in each storage type (scales included).</param>
public sealed record ExecutorWeightsInfo(string Quantization, IReadOnlyDictionary<TensorDType, long> BytesByDType)
{
    /// <summary>The total bytes of linear-layer weights held.</summary>
    public long WeightBytes
    {
        get
        {
            long sum = 0;
            foreach (var bytes in BytesByDType.Values)
            {
                sum += bytes;
            }

            return sum;
        }
    }
}
