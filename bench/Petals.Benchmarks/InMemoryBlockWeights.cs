using System.Runtime.InteropServices;
using Petals.Models;
using Petals.Tensors;

namespace Petals.Benchmarks;

/// <summary>The weights of one or more blocks held in managed arrays: random ones for timing, or read from a file for the cross-check.</summary>
internal sealed class InMemoryBlockWeights : IModelWeights
{
    private readonly Dictionary<string, WeightTensor> _tensors;

    public InMemoryBlockWeights(ModelConfig config, string source, Dictionary<string, WeightTensor> tensors)
    {
        Config = config;
        Source = source;
        _tensors = tensors;
        Tensors = tensors.ToDictionary(p => p.Key, p => p.Value.Descriptor, StringComparer.Ordinal);
    }

    public ModelConfig Config { get; }

    public string Source { get; }

    public IReadOnlyDictionary<string, TensorDescriptor> Tensors { get; }

    /// <summary>Bytes of all tensors.</summary>
    public long TotalBytes => _tensors.Values.Sum(t => (long)t.Data.Length);

    public WeightTensor GetTensor(string name) =>
        _tensors.TryGetValue(name, out var t) ? t : throw new KeyNotFoundException($"{Source}: no tensor '{name}'.");

    public void Dispose()
    {
    }

    /// <summary>
    /// Random weights for block 0 of <paramref name="config"/>: norms uniform in 1 ± 0.17, projections uniform with
    /// standard deviation 0.02 (the usual initialisation scale, so activations stay in a realistic range).
    /// Filled in parallel with a counter-based generator: about a second for a 7B-shape block.
    /// </summary>
    public static InMemoryBlockWeights CreateRandom(ModelConfig config, TensorDType dtype, ulong seed)
    {
        if (dtype is not (TensorDType.F32 or TensorDType.BF16))
        {
            throw new ArgumentException($"Random weights are F32 or BF16, not {dtype}.", nameof(dtype));
        }

        var tensors = new Dictionary<string, WeightTensor>(StringComparer.Ordinal);
        var index = 0UL;
        foreach (var suffix in LlamaTensorNames.BlockTensors)
        {
            var name = LlamaTensorNames.Block(0, suffix);
            var shape = BlockShapes.TensorShape(config, suffix);
            var descriptor = new TensorDescriptor(name, dtype, shape);
            var bytes = GC.AllocateUninitializedArray<byte>(checked((int)descriptor.ByteSize));
            var isNorm = shape.Length == 1;
            // Uniform in [-a, a] has standard deviation a / sqrt(3).
            var (center, halfWidth) = isNorm ? (1.0f, 0.1f * MathF.Sqrt(3)) : (0.0f, 0.02f * MathF.Sqrt(3));
            Fill(bytes, dtype, SplitMix(seed ^ (++index * 0x9E3779B97F4A7C15UL)), center, halfWidth);
            tensors.Add(name, new WeightTensor(descriptor, bytes));
        }

        return new InMemoryBlockWeights(config, $"random {dtype} block (seed {seed})", tensors);
    }

    /// <summary>Fills <paramref name="destination"/> with uniform floats in <c>center ± halfWidth</c>.</summary>
    public static void FillUniform(Span<float> destination, ulong seed, float center, float halfWidth)
    {
        var state = seed;
        for (var i = 0; i < destination.Length; i++)
        {
            destination[i] = center + (halfWidth * UniformSigned(ref state));
        }
    }

    private static void Fill(byte[] bytes, TensorDType dtype, ulong seed, float center, float halfWidth)
    {
        var elementBytes = dtype == TensorDType.F32 ? 4 : 2;
        var count = bytes.Length / elementBytes;
        const int Chunk = 1 << 20;
        var chunks = (count + Chunk - 1) / Chunk;
        Parallel.For(0, chunks, c =>
        {
            var start = c * Chunk;
            var length = Math.Min(Chunk, count - start);
            var state = SplitMix(seed + (ulong)c);
            if (dtype == TensorDType.F32)
            {
                var span = MemoryMarshal.Cast<byte, float>(bytes.AsSpan(start * 4, length * 4));
                for (var i = 0; i < span.Length; i++)
                {
                    span[i] = center + (halfWidth * UniformSigned(ref state));
                }
            }
            else
            {
                var span = MemoryMarshal.Cast<byte, ushort>(bytes.AsSpan(start * 2, length * 2));
                for (var i = 0; i < span.Length; i++)
                {
                    span[i] = ToBFloat16(center + (halfWidth * UniformSigned(ref state)));
                }
            }
        });
    }

    /// <summary>Round to nearest even bfloat16 (values here are finite).</summary>
    public static ushort ToBFloat16(float value)
    {
        var bits = BitConverter.SingleToUInt32Bits(value);
        bits += 0x7FFFu + ((bits >> 16) & 1u);
        return (ushort)(bits >> 16);
    }

    private static ulong SplitMix(ulong x)
    {
        x += 0x9E3779B97F4A7C15UL;
        x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9UL;
        x = (x ^ (x >> 27)) * 0x94D049BB133111EBUL;
        return x ^ (x >> 31);
    }

    /// <summary>xorshift64*: a uniform float in [-1, 1).</summary>
    private static float UniformSigned(ref ulong state)
    {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        var r = state * 0x2545F4914F6CDD1DUL;
        // 23 random mantissa bits under exponent 1 give [2, 4); shift to [-1, 1).
        return BitConverter.UInt32BitsToSingle(0x40000000u | (uint)(r >> 41)) - 3.0f;
    }
}
