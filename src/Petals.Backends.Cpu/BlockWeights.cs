using System.Buffers.Binary;
using Petals.Backends.Cpu.Linear;
using Petals.Execution;
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

    /// <summary>Loads and validates block <paramref name="block"/>'s tensors, quantizing dense linear weights as <paramref name="quantization"/> asks.</summary>
    /// <exception cref="InvalidDataException">When a tensor is missing, has the wrong shape or size, or an unsupported dtype, or is stored quantized in another type than the one asked for; the message names it.</exception>
    public static BlockWeights Load(IModelWeights weights, int block, WeightQuantization quantization = default, int threads = 1, bool hugePages = false)
    {
        hugePages &= OperatingSystem.IsLinux();
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
                var tensor = Fetch(weights, name, [specs[i].Out, specs[i].In], linear: true);
                var stored = tensor.Descriptor.DType;
                var target = LoadQuantizer.Choose(weights.Source, name, stored, specs[i].In, quantization);
                LinearLayer layer;
                if (target != stored)
                {
                    using var dense = LinearLayers.Create(name, stored, tensor.Data, specs[i].Out, specs[i].In);
                    layer = LoadQuantizer.Quantize(name, dense, target, threads, hugePages);
                }
                else if (hugePages)
                {
                    var copy = Native.HugePages.Copy(tensor.Data.Span);
                    try
                    {
                        layer = LinearLayers.Create(name, stored, copy.Memory, specs[i].Out, specs[i].In, copy);
                    }
                    catch
                    {
                        copy.Dispose();
                        throw;
                    }
                }
                else
                {
                    layer = LinearLayers.Create(name, stored, tensor.Data, specs[i].Out, specs[i].In);
                }

                linears[i] = layer;
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

    private static WeightTensor Fetch(IModelWeights weights, string name, long[] shape, bool linear = false)
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
        if (linear ? !LinearLayers.Supports(descriptor.DType) : descriptor.DType is not (TensorDType.F32 or TensorDType.BF16 or TensorDType.F16))
        {
            throw new InvalidDataException(linear
                ? $"{weights.Source}: tensor '{name}' has dtype {descriptor.DType}; the CPU executor serves linear weights in F32, BF16, F16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K and NF4."
                : $"{weights.Source}: tensor '{name}' has dtype {descriptor.DType}; the CPU executor supports F32, BF16 and F16.");
        }

        if (descriptor.Shape.Count == 2 && descriptor.Shape[1] % descriptor.DType.BlockElements() != 0)
        {
            throw new InvalidDataException(
                $"{weights.Source}: tensor '{name}' has rows of {descriptor.Shape[1]} elements, not a multiple of the {descriptor.DType} block size {descriptor.DType.BlockElements()}.");
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

    /// <summary>The linear layers in a fixed order.</summary>
    public IEnumerable<LinearLayer> Linears => [Q, K, V, O, Gate, Up, Down];

    /// <summary>What <paramref name="blocks"/> hold: bytes per storage type and the quantization name a server announces.</summary>
    public static ExecutorWeightsInfo Describe(IEnumerable<BlockWeights> blocks)
    {
        var bytes = new SortedDictionary<TensorDType, long>();
        foreach (var block in blocks)
        {
            foreach (var layer in block.Linears)
            {
                bytes[layer.DType] = bytes.GetValueOrDefault(layer.DType) + layer.StoredBytes;
            }
        }

        var packed = new List<string>();
        foreach (var dtype in bytes.Keys)
        {
            if (dtype == TensorDType.I8)
            {
                packed.Add(WeightQuantization.PerChannelInt8.Value);
            }
            else if (dtype.IsBlockQuantized())
            {
                packed.Add(dtype.ToString().ToLowerInvariant());
            }
        }

        return new ExecutorWeightsInfo(packed.Count == 0 ? WeightQuantization.None.Value : string.Join('+', packed), bytes);
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
