using System.Buffers.Binary;
using Petals.Models;
using Petals.Tensors;

namespace Petals.Backends.Cpu.Tests;

/// <summary>An in-memory <see cref="IModelWeights"/> with random weights, plus the same (rounded) weights as float64 for the reference.</summary>
internal sealed class RandomLlama : IModelWeights
{
    private readonly Dictionary<string, TensorDescriptor> _descriptors = new(StringComparer.Ordinal);
    private readonly Dictionary<string, byte[]> _data = new(StringComparer.Ordinal);

    public RandomLlama(ModelConfig config, TensorDType dtype = TensorDType.F32, int seed = 1234)
    {
        Config = config;
        var random = new Random(seed);
        var c = config;
        var q = c.NumHeads * c.HeadDim;
        var kv = c.NumKeyValueHeads * c.HeadDim;
        for (var b = 0; b < c.NumLayers; b++)
        {
            AddNorm(LlamaTensorNames.Block(b, LlamaTensorNames.InputNorm), c.HiddenSize, dtype, random);
            AddNorm(LlamaTensorNames.Block(b, LlamaTensorNames.PostAttentionNorm), c.HiddenSize, dtype, random);
            AddMatrix(LlamaTensorNames.Block(b, LlamaTensorNames.QProj), q, c.HiddenSize, dtype, random, 1.0);
            AddMatrix(LlamaTensorNames.Block(b, LlamaTensorNames.KProj), kv, c.HiddenSize, dtype, random, 1.0);
            AddMatrix(LlamaTensorNames.Block(b, LlamaTensorNames.VProj), kv, c.HiddenSize, dtype, random, 1.0);
            AddMatrix(LlamaTensorNames.Block(b, LlamaTensorNames.OProj), c.HiddenSize, q, dtype, random, 0.5);
            AddMatrix(LlamaTensorNames.Block(b, LlamaTensorNames.GateProj), c.IntermediateSize, c.HiddenSize, dtype, random, 1.0);
            AddMatrix(LlamaTensorNames.Block(b, LlamaTensorNames.UpProj), c.IntermediateSize, c.HiddenSize, dtype, random, 1.0);
            AddMatrix(LlamaTensorNames.Block(b, LlamaTensorNames.DownProj), c.HiddenSize, c.IntermediateSize, dtype, random, 0.5);
        }
    }

    public ModelConfig Config { get; }

    public string Source => "memory://random-llama";

    public IReadOnlyDictionary<string, TensorDescriptor> Tensors => _descriptors;

    /// <summary>Number of <see cref="GetTensor"/> calls per tensor name (to check that only the span is loaded).</summary>
    public Dictionary<string, int> Requests { get; } = new(StringComparer.Ordinal);

    public WeightTensor GetTensor(string name)
    {
        if (!_descriptors.TryGetValue(name, out var d))
        {
            throw new KeyNotFoundException($"{Source}: no tensor '{name}'.");
        }

        lock (Requests)
        {
            Requests[name] = Requests.GetValueOrDefault(name) + 1;
        }

        return new WeightTensor(d, _data[name]);
    }

    /// <summary>The tensor's values as float64 (exactly the stored, rounded values).</summary>
    public double[] Values(string name)
    {
        var d = _descriptors[name];
        var bytes = _data[name];
        var n = (int)d.ElementCount;
        var result = new double[n];
        for (var i = 0; i < n; i++)
        {
            result[i] = d.DType switch
            {
                TensorDType.F32 => BinaryPrimitives.ReadSingleLittleEndian(bytes.AsSpan(i * 4)),
                TensorDType.BF16 => BitConverter.Int32BitsToSingle(BinaryPrimitives.ReadUInt16LittleEndian(bytes.AsSpan(i * 2)) << 16),
                TensorDType.F16 => (double)BinaryPrimitives.ReadHalfLittleEndian(bytes.AsSpan(i * 2)),
                _ => throw new NotSupportedException(),
            };
        }

        return result;
    }

    /// <summary>Removes a tensor (bad-input tests).</summary>
    public void Remove(string name)
    {
        _descriptors.Remove(name);
        _data.Remove(name);
    }

    /// <summary>Replaces a tensor's descriptor and data (bad-input tests).</summary>
    public void Replace(string name, TensorDType dtype, long[] shape)
    {
        var d = new TensorDescriptor(name, dtype, shape);
        _descriptors[name] = d;
        _data[name] = new byte[d.ByteSize];
    }

    public void Dispose()
    {
    }

    private void AddNorm(string name, int n, TensorDType dtype, Random random)
    {
        var values = new float[n];
        for (var i = 0; i < n; i++)
        {
            values[i] = (float)(0.8 + (0.4 * random.NextDouble()));
        }

        Add(name, [n], values, dtype);
    }

    private void AddMatrix(string name, int rows, int cols, TensorDType dtype, Random random, double gain)
    {
        var values = new float[rows * cols];
        var scale = gain * Math.Sqrt(3.0 / cols);
        for (var i = 0; i < values.Length; i++)
        {
            values[i] = (float)(scale * ((2 * random.NextDouble()) - 1));
        }

        Add(name, [rows, cols], values, dtype);
    }

    private void Add(string name, long[] shape, float[] values, TensorDType dtype)
    {
        var d = new TensorDescriptor(name, dtype, shape);
        var bytes = new byte[d.ByteSize];
        for (var i = 0; i < values.Length; i++)
        {
            switch (dtype)
            {
                case TensorDType.F32:
                    BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(i * 4), values[i]);
                    break;
                case TensorDType.BF16:
                    BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(i * 2), ToBf16(values[i]));
                    break;
                case TensorDType.F16:
                    BinaryPrimitives.WriteHalfLittleEndian(bytes.AsSpan(i * 2), (Half)values[i]);
                    break;
                default:
                    throw new NotSupportedException();
            }
        }

        _descriptors[name] = d;
        _data[name] = bytes;
    }

    /// <summary>Round-to-nearest-even truncation of a binary32 to bfloat16 bits.</summary>
    internal static ushort ToBf16(float value)
    {
        var bits = BitConverter.SingleToUInt32Bits(value);
        var rounding = 0x7fffu + ((bits >> 16) & 1);
        return (ushort)((bits + rounding) >> 16);
    }
}
