using System.Buffers.Binary;
using System.Globalization;
using System.Text.Json;
using Petals.Formats;
using Petals.Models;
using Petals.Tensors;

namespace Petals.Benchmarks;

/// <summary>
/// Reads the cross-check file written by <c>bench/pytorch_block.py xc-write</c>: a safetensors file with
/// the block's tensors under their canonical names, an <c>inputs</c> tensor <c>[tokens, hidden]</c> (F32), and the
/// shape in <c>__metadata__</c>. Kept minimal on purpose: the bench must not depend on the formats library.
/// </summary>
internal sealed class CrossCheckFile
{
    private CrossCheckFile(InMemoryBlockWeights weights, float[] inputs, int prefill, int decodeSteps)
    {
        Weights = weights;
        Inputs = inputs;
        Prefill = prefill;
        DecodeSteps = decodeSteps;
    }

    public InMemoryBlockWeights Weights { get; }

    public float[] Inputs { get; }

    public int Prefill { get; }

    public int DecodeSteps { get; }

    public static CrossCheckFile Read(string path)
    {
        using var stream = File.OpenRead(path);
        Span<byte> lengthBytes = stackalloc byte[8];
        stream.ReadExactly(lengthBytes);
        var headerLength = BinaryPrimitives.ReadUInt64LittleEndian(lengthBytes);
        if (headerLength == 0 || headerLength > 1 << 24 || (long)headerLength + 8 > stream.Length)
        {
            throw new ModelFormatException(path, "header length", $"{headerLength} is not a valid safetensors header length.");
        }

        var header = new byte[headerLength];
        stream.ReadExactly(header);
        var dataStart = 8 + (long)headerLength;
        using var json = JsonDocument.Parse(header);
        var root = json.RootElement;
        var meta = root.GetProperty("__metadata__");
        int MetaInt(string key) => int.Parse(MetaString(key), NumberStyles.Integer, CultureInfo.InvariantCulture);
        double MetaDouble(string key) => double.Parse(MetaString(key), NumberStyles.Float, CultureInfo.InvariantCulture);
        string MetaString(string key) => meta.TryGetProperty(key, out var v) && v.GetString() is { } s
            ? s
            : throw new ModelFormatException(path, "__metadata__." + key, "missing.");

        var config = new ModelConfig
        {
            HiddenSize = MetaInt("hidden"), IntermediateSize = MetaInt("intermediate"), NumLayers = 1,
            NumHeads = MetaInt("heads"), NumKeyValueHeads = MetaInt("kv_heads"), HeadDim = MetaInt("head_dim"),
            VocabSize = 1, RmsNormEps = MetaDouble("eps"), RopeTheta = MetaDouble("theta"), MaxPositionEmbeddings = 1 << 16,
        };
        config.Validate(path);

        var tensors = new Dictionary<string, WeightTensor>(StringComparer.Ordinal);
        float[]? inputs = null;
        foreach (var entry in root.EnumerateObject())
        {
            if (entry.Name == "__metadata__")
            {
                continue;
            }

            var dtype = entry.Value.GetProperty("dtype").GetString() switch
            {
                "F32" => TensorDType.F32,
                "BF16" => TensorDType.BF16,
                var other => throw new ModelFormatException(path, entry.Name, $"dtype '{other}' is not F32 or BF16."),
            };
            var shape = entry.Value.GetProperty("shape").EnumerateArray().Select(e => e.GetInt64()).ToArray();
            var offsets = entry.Value.GetProperty("data_offsets").EnumerateArray().Select(e => e.GetInt64()).ToArray();
            var descriptor = new TensorDescriptor(entry.Name, dtype, shape);
            if (offsets.Length != 2 || offsets[1] - offsets[0] != descriptor.ByteSize || dataStart + offsets[1] > stream.Length)
            {
                throw new ModelFormatException(path, entry.Name, $"data_offsets [{string.Join(", ", offsets)}] do not hold {descriptor.ByteSize} bytes inside the file.");
            }

            var bytes = GC.AllocateUninitializedArray<byte>(checked((int)descriptor.ByteSize));
            stream.Position = dataStart + offsets[0];
            stream.ReadExactly(bytes);
            if (entry.Name == "inputs")
            {
                if (dtype != TensorDType.F32 || shape.Length != 2 || shape[1] != config.HiddenSize)
                {
                    throw new ModelFormatException(path, entry.Name, $"expected F32 [tokens, {config.HiddenSize}], found {descriptor}.");
                }

                inputs = new float[bytes.Length / 4];
                Buffer.BlockCopy(bytes, 0, inputs, 0, bytes.Length);
            }
            else
            {
                var prefix = LlamaTensorNames.Block(0, string.Empty);
                var suffix = entry.Name.StartsWith(prefix, StringComparison.Ordinal) ? entry.Name[prefix.Length..] : string.Empty;
                if (!LlamaTensorNames.BlockTensors.Contains(suffix))
                {
                    throw new ModelFormatException(path, entry.Name, "is not a tensor of block 0.");
                }

                var expected = BlockShapes.TensorShape(config, suffix);
                if (!expected.SequenceEqual(shape))
                {
                    throw new ModelFormatException(path, entry.Name, $"shape [{string.Join(", ", shape)}] differs from [{string.Join(", ", expected)}].");
                }

                tensors.Add(entry.Name, new WeightTensor(descriptor, bytes));
            }
        }

        foreach (var suffix in LlamaTensorNames.BlockTensors)
        {
            if (!tensors.ContainsKey(LlamaTensorNames.Block(0, suffix)))
            {
                throw new ModelFormatException(path, LlamaTensorNames.Block(0, suffix), "missing.");
            }
        }

        if (inputs is null)
        {
            throw new ModelFormatException(path, "inputs", "missing.");
        }

        var prefill = MetaInt("prefill");
        var decodeSteps = MetaInt("decode_steps");
        if (prefill < 1 || decodeSteps < 0 || (long)(prefill + decodeSteps) * config.HiddenSize != inputs.Length)
        {
            throw new ModelFormatException(path, "__metadata__.prefill", $"prefill {prefill} + decode_steps {decodeSteps} do not match the {inputs.Length / config.HiddenSize} input rows.");
        }

        return new CrossCheckFile(new InMemoryBlockWeights(config, path, tensors), inputs, prefill, decodeSteps);
    }
}
