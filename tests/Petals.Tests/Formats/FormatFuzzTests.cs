using System.Buffers.Binary;
using FsCheck;
using FsCheck.Fluent;
using Petals.Formats;
using Petals.Formats.Gguf;
using Petals.Formats.HuggingFace;
using Petals.Formats.Safetensors;
using Petals.Models;
using Petals.Tensors;
using Petals.Testing;

namespace Petals.Tests.Formats;

/// <summary>
/// Property tests: valid files mutated at random (byte flips, truncations, insertions, deletions, edits of counts and
/// lengths) must either open and read completely or fail with <see cref="ModelFormatException"/> — never another
/// exception, never a large allocation.
/// </summary>
public sealed class FormatFuzzTests : IDisposable
{
    /// <summary>Cases per property: 400 by default, more with PETALS_FUZZ_CASES for a longer local run.</summary>
    private static readonly int Cases = int.TryParse(Environment.GetEnvironmentVariable("PETALS_FUZZ_CASES"), out var n) && n > 0 ? n : 400;
    private const long AllocationCap = 64L << 20;

    private readonly TempDirectory _dir = Petals.Testing.TestData.CreateTempDirectory();

    public void Dispose() => _dir.Dispose();

    /// <summary>A mutation plan: a seed for the random choices and how many mutations to apply.</summary>
    public sealed record Plan(int Seed, int Count, bool FocusHeader)
    {
        public override string ToString() => $"seed {Seed}, {Count} mutation(s), header focus {FocusHeader}";
    }

    private static Arbitrary<Plan> Plans() =>
        Gen.Choose(0, int.MaxValue)
            .SelectMany(seed => Gen.Choose(1, 4).SelectMany(count => Gen.Elements(true, true, false).Select(focus => new Plan(seed, count, focus))))
            .ToArbitrary();

    /// <summary>Applies the plan's mutations; <paramref name="header"/> is the length of the structured prefix and <paramref name="fields"/> offsets of count/length fields.</summary>
    internal static byte[] Mutate(byte[] original, Plan plan, int header, int[] fields)
    {
        var rng = new Random(plan.Seed);
        var bytes = original.ToList();
        for (var m = 0; m < plan.Count; m++)
        {
            int Pos(int extra = 0) => bytes.Count + extra == 0 ? 0 : rng.Next(plan.FocusHeader ? Math.Min(header, bytes.Count + extra) : bytes.Count + extra);
            switch (rng.Next(7))
            {
                case 0 when bytes.Count > 0:
                    var p = Pos();
                    bytes[p] ^= (byte)rng.Next(1, 256);
                    break;
                case 1:
                    bytes.RemoveRange(rng.Next(bytes.Count + 1) is var cut ? cut : 0, bytes.Count - cut);
                    break;
                case 2:
                    var insert = new byte[rng.Next(1, 17)];
                    rng.NextBytes(insert);
                    bytes.InsertRange(Pos(1), insert);
                    break;
                case 3 when bytes.Count > 0:
                    var start = Pos();
                    bytes.RemoveRange(start, Math.Min(rng.Next(1, 17), bytes.Count - start));
                    break;
                case 4 or 5:
                    // Overwrite a count / length / offset field (or any 8 bytes) with an interesting integer.
                    var at = fields.Length > 0 && rng.Next(2) == 0 ? fields[rng.Next(fields.Length)] : Pos();
                    var width = rng.Next(2) == 0 ? 4 : 8;
                    if (at + width > bytes.Count)
                    {
                        break;
                    }

                    var current = width == 4 ? BinaryPrimitives.ReadUInt32LittleEndian(bytes.GetRange(at, 4).ToArray()) : BinaryPrimitives.ReadUInt64LittleEndian(bytes.GetRange(at, 8).ToArray());
                    ulong[] interesting = [0, 1, 2, 7, 8, 31, 32, 255, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 1UL << 32, 1UL << 40, long.MaxValue, ulong.MaxValue, current + 1, current - 1, current * 2, current + 8, (ulong)rng.NextInt64()];
                    var value = interesting[rng.Next(interesting.Length)];
                    var buffer = new byte[8];
                    BinaryPrimitives.WriteUInt64LittleEndian(buffer, value);
                    for (var i = 0; i < width; i++)
                    {
                        bytes[at + i] = buffer[i];
                    }

                    break;
                default:
                    if (bytes.Count > 0)
                    {
                        var q = Pos();
                        bytes[q] = (byte)rng.Next(256);
                    }

                    break;
            }
        }

        return [.. bytes];
    }

    /// <summary>Runs <paramref name="open"/> on the mutated file; only success or ModelFormatException are acceptable.</summary>
    private bool OnlyFormatErrors(byte[] bytes, string fileName, Action<string> open, Action<string>? prepare = null)
    {
        var dir = Path.Combine(_dir.Path, Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        var path = Path.Combine(dir, fileName);
        File.WriteAllBytes(path, bytes);
        prepare?.Invoke(dir);
        var before = GC.GetAllocatedBytesForCurrentThread();
        try
        {
            open(path);
        }
        catch (ModelFormatException)
        {
        }
        finally
        {
            var allocated = GC.GetAllocatedBytesForCurrentThread() - before;
            Assert.True(allocated < AllocationCap, $"allocated {allocated} bytes for a {bytes.Length}-byte file");
            Directory.Delete(dir, recursive: true);
        }

        return true;
    }

    private static void ReadEverything(IModelWeights weights)
    {
        foreach (var name in weights.Tensors.Keys)
        {
            var t = weights.GetTensor(name);
            Assert.Equal(t.Descriptor.ByteSize, t.Data.Length);
            _ = t.Data.Span[^1 ..];
            var floats = weights.GetFloatTensor(name);
            Assert.Equal(t.Descriptor.ElementCount * floats.Descriptor.DType.BlockBytes(), floats.Data.Length);
        }
    }

    private static (int Header, int[] Fields) GgufLayout(byte[] bytes, string path)
    {
        using var f = GgufFile.Open(path);
        var fields = new List<int> { 4, 8, 16 };

        // Length prefixes of keys and tensor names: 8 bytes before each occurrence of the name.
        foreach (var key in f.Metadata.Keys.Concat(f.Tensors.Select(t => t.Name)))
        {
            var at = bytes.AsSpan().IndexOf(System.Text.Encoding.UTF8.GetBytes(key));
            if (at >= 8)
            {
                fields.Add(at - (f.Version == 1 ? 4 : 8));
                fields.Add(at + key.Length);
                fields.Add(at + key.Length + 4);
                fields.Add(at + key.Length + 12);
                fields.Add(at + key.Length + 20);
            }
        }

        return ((int)f.DataOffset, [.. fields]);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    public void MutatedGgufFilesOnlyRaiseModelFormatException(int version)
    {
        var config = GgufModels.SmallConfig() with { NumLayers = 1, VocabSize = 8, IntermediateSize = 32, HiddenSize = 32, HeadDim = 8 };
        var writer = GgufModels.Create(config, version, version == 1 ? GgufTensorType.F32 : GgufTensorType.Q8_0, seed: 1)
            .Add("nested", GgufValueType.Array, new GgufArray(GgufValueType.Array, new[] { new GgufArray(GgufValueType.Int16, new short[] { 1, 2 }) }))
            .Add("tokenizer.ggml.add_bos_token", GgufValueType.Bool, true);
        var valid = writer.ToBytes();
        var validPath = Path.Combine(_dir.Path, $"valid{version}.gguf");
        File.WriteAllBytes(validPath, valid);
        using (var ok = GgufModelWeights.Open(validPath))
        {
            ReadEverything(ok);
        }

        GgufMutationProperty(valid, validPath);
    }

    /// <summary>
    /// A Q4_K_M-like file (Q4_K and Q6_K, plus Q5_0 and Q8_0 tensors): mutated, it opens and every tensor reads and
    /// dequantizes, or it fails with <see cref="ModelFormatException"/> (truncated blocks, bad types, NaN/Inf scales …).
    /// </summary>
    [Fact]
    public void MutatedQuantizedGgufFilesOnlyRaiseModelFormatException()
    {
        var writer = GgufModels.Create(GgufQuantizedTests.KConfig, 3, GgufTensorType.Q4_K, seed: 2, typeOf: n =>
            n.Contains("attn_k", StringComparison.Ordinal) ? GgufTensorType.Q5_0 : n.Contains("ffn_up", StringComparison.Ordinal) ? GgufTensorType.Q8_0 : GgufQuantizedTests.Q4KM(n));
        var valid = writer.ToBytes();
        var validPath = Path.Combine(_dir.Path, "valid-q.gguf");
        File.WriteAllBytes(validPath, valid);
        using (var ok = GgufModelWeights.Open(validPath))
        {
            ReadEverything(ok);
        }

        GgufMutationProperty(valid, validPath);
    }

    private void GgufMutationProperty(byte[] valid, string validPath)
    {
        var (header, fields) = GgufLayout(valid, validPath);
        Prop.ForAll(Plans(), plan => OnlyFormatErrors(Mutate(valid, plan, header, fields), "m.gguf", path =>
        {
            using (var file = GgufFile.Open(path))
            {
                _ = file.Tokenizer;
                if (file.Tokenizer.Tokens is not null)
                {
                    // The vocabulary must build (or fail as a format error) and decode every id.
                    var tokenizer = Petals.Tokenization.TokenizerLoader.FromGguf(file);
                    var all = Enumerable.Range(0, tokenizer.VocabSize).ToArray();
                    _ = tokenizer.Decode(all);
                    var streaming = tokenizer.CreateStreamingDecoder(skipSpecialTokens: true);
                    foreach (var id in all)
                    {
                        streaming.Append(id);
                    }

                    _ = streaming.Flush();
                }

                foreach (var t in file.Tensors)
                {
                    if (GgufTensorTypeInfo.ServedAs(t.Type) is not null)
                    {
                        Assert.Equal(t.ElementCount, file.ReadSingles(t).Length);
                    }
                    else
                    {
                        Assert.Equal(t.ByteSize, file.GetTensorData(t).Length);
                    }
                }
            }

            using var weights = ModelLoader.Open(path);
            ReadEverything(weights);
        })).Check(Config.QuickThrowOnFailure.WithMaxTest(Cases));
    }

    [Fact]
    public void MutatedSafetensorsFilesOnlyRaiseModelFormatException()
    {
        var config = GgufModels.SmallConfig() with { NumLayers = 1, VocabSize = 8, IntermediateSize = 32, HiddenSize = 32, HeadDim = 8 };
        var modelDir = Path.Combine(_dir.Path, "model");
        RandomModels.Write(modelDir, config, TensorDType.BF16, seed: 5);
        var valid = File.ReadAllBytes(Path.Combine(modelDir, HuggingFaceModelWeights.SingleFileName));
        var header = 8 + (int)BinaryPrimitives.ReadUInt64LittleEndian(valid);
        var configJson = File.ReadAllBytes(Path.Combine(modelDir, HuggingFaceConfig.FileName));
        Prop.ForAll(Plans(), plan => OnlyFormatErrors(
            Mutate(valid, plan, header, [0, 4]),
            HuggingFaceModelWeights.SingleFileName,
            path =>
            {
                using (var file = SafetensorsFile.Open(path))
                {
                    foreach (var name in file.Tensors.Keys)
                    {
                        Assert.Equal(file.Tensors[name].ByteSize, file.GetTensorData(name).Length);
                    }
                }

                using var weights = ModelLoader.Open(Path.GetDirectoryName(path)!);
                ReadEverything(weights);
            },
            dir => File.WriteAllBytes(Path.Combine(dir, HuggingFaceConfig.FileName), configJson))).Check(Config.QuickThrowOnFailure.WithMaxTest(Cases));
    }

    [Fact]
    public void MutatedConfigJsonOnlyRaisesModelFormatException()
    {
        var config = GgufModels.SmallConfig() with { NumLayers = 1, VocabSize = 8, IntermediateSize = 32, HiddenSize = 32, HeadDim = 8, RopeScaling = new RopeScaling("llama3", 8) };
        var modelDir = Path.Combine(_dir.Path, "model");
        RandomModels.Write(modelDir, config, TensorDType.F16, seed: 6);
        var weightsFile = File.ReadAllBytes(Path.Combine(modelDir, HuggingFaceModelWeights.SingleFileName));
        var valid = File.ReadAllBytes(Path.Combine(modelDir, HuggingFaceConfig.FileName));
        Prop.ForAll(Plans(), plan => OnlyFormatErrors(
            Mutate(valid, plan, valid.Length, []),
            HuggingFaceConfig.FileName,
            path =>
            {
                using var weights = ModelLoader.Open(Path.GetDirectoryName(path)!);
                ReadEverything(weights);
            },
            dir => File.WriteAllBytes(Path.Combine(dir, HuggingFaceModelWeights.SingleFileName), weightsFile))).Check(Config.QuickThrowOnFailure.WithMaxTest(Cases));
    }
}
