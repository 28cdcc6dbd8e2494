using System.Buffers.Binary;
using Petals.Backends.Cpu.Linear;
using Petals.Models;
using Petals.Tensors;

namespace Petals.Backends.Cpu;

/// <summary>The weights of one decoder block: two RMSNorm vectors (fp32 copies) and seven linear layers (kept in their dtype).</summary>
internal sealed class BlockWeights : IDisposable
{
    private BlockWeights(int index, float[] inputNorm, float[] postNorm, LinearLayer[] linears)
    {
        Index = index;
        InputNorm = inputNorm;
        PostAttentionNorm = postNorm;
        Q = linears[0];
        K = linears[1];
        V = linears[2];
        O = linears[3];
        Gate = linears[4];
        Up = linears[5];
        Down = linears[6];
    }

    public int Index { get; }

    public float[] InputNorm { get; }

    public float[] PostAttentionNorm { get; }

    public LinearLayer Q { get; }

    public LinearLayer K { get; }

    public LinearLayer V { get; }

    public LinearLayer O { get; }

    public LinearLayer Gate { get; }

    public LinearLayer Up { get; }

    public LinearLayer Down { get; }

    /// <summary>Loads and validates block <paramref name="block"/>'s tensors.</summary>
    /// <exception cref="InvalidDataException">When a tensor is missing, has the wrong shape or size, or an unsupported dtype; the message names it.</exception>
    public static BlockWeights Load(IModelWeights weights, int block)
    {
        var c = weights.Config;
        var qDim = c.NumHeads * c.HeadDim;
        var kvDim = c.NumKeyValueHeads * c.HeadDim;
        var inputNorm = LoadVector(weights, LlamaTensorNames.Block(block, LlamaTensorNames.InputNorm), c.HiddenSize);
        var postNorm = LoadVector(weights, LlamaTensorNames.Block(block, LlamaTensorNames.PostAttentionNorm), c.HiddenSize);
        var specs = new (string Suffix, int Out, int In)[]
        {
            (LlamaTensorNames.QProj, qDim, c.HiddenSize),
            (LlamaTensorNames.KProj, kvDim, c.HiddenSize),
            (LlamaTensorNames.VProj, kvDim, c.HiddenSize),
            (LlamaTensorNames.OProj, c.HiddenSize, qDim),
            (LlamaTensorNames.GateProj, c.IntermediateSize, c.HiddenSize),
            (LlamaTensorNames.UpProj, c.IntermediateSize, c.HiddenSize),
            (LlamaTensorNames.DownProj, c.HiddenSize, c.IntermediateSize),
        };
        var linears = new LinearLayer[specs.Length];
        try
        {
            for (var i = 0; i < specs.Length; i++)
            {
                var name = LlamaTensorNames.Block(block, specs[i].Suffix);
                var tensor = Fetch(weights, name, [specs[i].Out, specs[i].In]);
                linears[i] = new DenseLinearLayer(name, tensor.Descriptor.DType, tensor.Data, specs[i].Out, specs[i].In);
            }
        }
        catch
        {
            foreach (var l in linears)
            {
                l?.Dispose();
            }

            throw;
        }

        return new BlockWeights(block, inputNorm, postNorm, linears);
    }

    private static WeightTensor Fetch(IModelWeights weights, string name, long[] shape)
    {
        if (!weights.Tensors.TryGetValue(name, out var descriptor))
        {
            throw new InvalidDataException($"{weights.Source}: tensor '{name}' is missing.");
        }

        WeightTensor tensor;
        try
        {
            tensor = weights.GetTensor(name);
        }
        catch (KeyNotFoundException ex)
        {
            throw new InvalidDataException($"{weights.Source}: tensor '{name}' is missing.", ex);
        }

        descriptor = tensor.Descriptor;
        if (descriptor.DType is not (TensorDType.F32 or TensorDType.BF16 or TensorDType.F16))
        {
            throw new InvalidDataException($"{weights.Source}: tensor '{name}' has dtype {descriptor.DType}; the CPU executor supports F32, BF16 and F16.");
        }

        if (!descriptor.Shape.SequenceEqual(shape))
        {
            throw new InvalidDataException(
                $"{weights.Source}: tensor '{name}' has shape [{string.Join(", ", descriptor.Shape)}]; the configuration requires [{string.Join(", ", shape)}].");
        }

        if (tensor.Data.Length != descriptor.ByteSize)
        {
            throw new InvalidDataException($"{weights.Source}: tensor '{name}' has {tensor.Data.Length} bytes of data; its shape and dtype require {descriptor.ByteSize}.");
        }

        return tensor;
    }

    private static float[] LoadVector(IModelWeights weights, string name, int length)
    {
        var tensor = Fetch(weights, name, [length]);
        var result = new float[length];
        var bytes = tensor.Data.Span;
        for (var i = 0; i < length; i++)
        {
            result[i] = tensor.Descriptor.DType switch
            {
                TensorDType.F32 => BinaryPrimitives.ReadSingleLittleEndian(bytes[(i * 4)..]),
                TensorDType.BF16 => BitConverter.Int32BitsToSingle(BinaryPrimitives.ReadUInt16LittleEndian(bytes[(i * 2)..]) << 16),
                _ => (float)BinaryPrimitives.ReadHalfLittleEndian(bytes[(i * 2)..]),
            };
        }

        return result;
    }

    public void Dispose()
    {
        Q.Dispose();
        K.Dispose();
        V.Dispose();
        O.Dispose();
        Gate.Dispose();
        Up.Dispose();
        Down.Dispose();
    }
}
