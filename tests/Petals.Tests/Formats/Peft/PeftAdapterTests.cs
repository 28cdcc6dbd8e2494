using System.Runtime.InteropServices;
using FsCheck.Fluent;
using Gen = FsCheck.Fluent.Gen;
using System.Text.Json.Nodes;
using Petals.Execution;
using Petals.Formats;
using Petals.Formats.Peft;
using Petals.Formats.Safetensors;
using Petals.Models;
using Petals.Tensors;
using Petals.Testing;

namespace Petals.Tests.Formats.Peft;

public sealed class PeftAdapterTests : IDisposable
{
    /// <summary>The shape of the shared stories260K model, which the fixtures (tests/reference/make_peft_adapters.py) are for.</summary>
    internal static readonly ModelConfig Stories = new()
    {
        HiddenSize = 64,
        IntermediateSize = 172,
        NumLayers = 5,
        NumHeads = 8,
        NumKeyValueHeads = 4,
        HeadDim = 8,
        VocabSize = 512,
    };

    private readonly TempDirectory _dir = TestData.CreateTempDirectory();

    internal static string FixtureQvDown => Path.Combine(AppContext.BaseDirectory, "Formats", "Peft", "Fixtures", "stories260k-lora-qv-down");

    internal static string FixtureAllBf16 => Path.Combine(AppContext.BaseDirectory, "Formats", "Peft", "Fixtures", "stories260k-lora-all-bf16");

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void The_list_fixture_loads_with_its_rank_scale_targets_and_the_values_of_each_key()
    {
        var adapters = PeftAdapter.Load(FixtureQvDown, Stories);
        Assert.Equal(new BlockRange(0, 5), adapters.Blocks);
        Assert.Equal(4, adapters.Rank);
        Assert.Equal(2f, adapters.Scale); // lora_alpha 8 / r 4
        Assert.Equal([LoraTarget.Query, LoraTarget.Value, LoraTarget.Down], adapters.Targets);

        using var file = SafetensorsFile.Open(Path.Combine(FixtureQvDown, PeftAdapter.WeightsFileName));
        foreach (var b in Enumerable.Range(0, 5))
        {
            foreach (var (t, parent) in new[] { (LoraTarget.Query, "self_attn"), (LoraTarget.Value, "self_attn"), (LoraTarget.Down, "mlp") })
            {
                var prefix = $"base_model.model.model.layers.{b}.{parent}.{LoraTargets.ModuleName(t)}";
                Assert.Equal(MemoryMarshal.Cast<byte, float>(file.GetTensorData(prefix + ".lora_A.weight").Span).ToArray(), adapters.A(b, t).ToArray());
                Assert.Equal(MemoryMarshal.Cast<byte, float>(file.GetTensorData(prefix + ".lora_B.weight").Span).ToArray(), adapters.B(b, t).ToArray());
            }
        }

        Assert.Contains(adapters.B(3, LoraTarget.Down).ToArray(), v => v != 0);
    }

    [Fact]
    public void The_regex_rslora_bf16_fixture_with_default_keys_loads_all_modules_and_leaves_untransformed_layers_zero()
    {
        var config = PeftAdapterConfig.Read(Path.Combine(FixtureAllBf16, PeftAdapter.ConfigFileName));
        Assert.True(config.UseRsLora);
        Assert.NotNull(config.TargetModulesPattern);
        Assert.Equal([0, 2, 3, 4], config.LayersToTransform);
        Assert.Equal("stories260K", config.BaseModel);

        var adapters = PeftAdapter.Load(FixtureAllBf16, Stories);
        Assert.Equal(2, adapters.Rank);
        Assert.Equal((float)(4 / Math.Sqrt(2)), adapters.Scale);
        Assert.Equal(LoraTargets.All, adapters.Targets);
        Assert.All(adapters.Slice(new BlockRange(1, 2)).Values.ToArray(), v => Assert.Equal(0f, v));

        using var file = SafetensorsFile.Open(Path.Combine(FixtureAllBf16, PeftAdapter.WeightsFileName));
        var raw = MemoryMarshal.Cast<byte, ushort>(file.GetTensorData("base_model.model.model.layers.4.mlp.up_proj.lora_B.default.weight").Span).ToArray();
        var expected = raw.Select(bits => BitConverter.Int32BitsToSingle(bits << 16)).ToArray();
        Assert.Equal(expected, adapters.B(4, LoraTarget.Up).ToArray());
        Assert.Contains(expected, v => v != 0);
    }

    [Fact]
    public void A_span_loads_only_its_blocks_and_equals_the_slice_of_the_whole_adapter()
    {
        var all = PeftAdapter.Load(FixtureQvDown, Stories);
        var span = PeftAdapter.Load(FixtureQvDown, Stories, new BlockRange(2, 4));
        Assert.Equal(new BlockRange(2, 4), span.Blocks);
        Assert.True(span.HasLayoutOf(all.Slice(new BlockRange(2, 4))));
        Assert.Equal(all.Slice(new BlockRange(2, 4)).Values.ToArray(), span.Values.ToArray());
    }

    [Fact]
    public void Saved_adapters_load_back_bitwise_and_a_saved_span_leaves_other_blocks_unadapted()
    {
        var rng = new Random(3);
        var adapters = new LoraWeights(Stories, new BlockRange(0, 5), 3, 1.7f, [LoraTarget.Down, LoraTarget.Key, LoraTarget.Output]);
        var values = adapters.Values.Span;
        for (var i = 0; i < values.Length; i++)
        {
            values[i] = (float)((rng.NextDouble() * 2) - 1);
        }

        var whole = Path.Combine(_dir.Path, "whole");
        PeftAdapter.Save(whole, adapters, "stories260K");
        var loaded = PeftAdapter.Load(whole, Stories);
        Assert.Equal(1.7f, loaded.Scale);
        Assert.Equal(3, loaded.Rank);
        Assert.Equal([LoraTarget.Key, LoraTarget.Output, LoraTarget.Down], loaded.Targets); // LoraTargets.All order
        foreach (var b in Enumerable.Range(0, 5))
        {
            foreach (var t in adapters.Targets)
            {
                Assert.Equal(adapters.A(b, t).ToArray(), loaded.A(b, t).ToArray());
                Assert.Equal(adapters.B(b, t).ToArray(), loaded.B(b, t).ToArray());
            }
        }

        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(whole, PeftAdapter.ConfigFileName)))!;
        Assert.Equal("LORA", (string?)config["peft_type"]);
        Assert.Equal("none", (string?)config["bias"]);
        Assert.Equal("stories260K", (string?)config["base_model_name_or_path"]);

        var part = Path.Combine(_dir.Path, "part");
        PeftAdapter.Save(part, adapters.Slice(new BlockRange(1, 3)));
        var partLoaded = PeftAdapter.Load(part, Stories);
        foreach (var b in Enumerable.Range(1, 2))
        {
            foreach (var t in adapters.Targets)
            {
                Assert.Equal(adapters.A(b, t).ToArray(), partLoaded.A(b, t).ToArray());
                Assert.Equal(adapters.B(b, t).ToArray(), partLoaded.B(b, t).ToArray());
            }
        }

        Assert.All(partLoaded.Slice(new BlockRange(3, 5)).Values.ToArray(), v => Assert.Equal(0f, v));
        Assert.All(partLoaded.Slice(new BlockRange(0, 1)).Values.ToArray(), v => Assert.Equal(0f, v));
    }

    [Fact]
    public void Any_saved_adapter_loads_back_for_any_span_with_zeros_outside_the_saved_blocks()
    {
        var plan = Gen.Zip(
            Gen.Zip(Gen.Choose(1, 5), Gen.Choose(1, (1 << 7) - 1)),
            Gen.Zip(Gen.Zip(Gen.Choose(0, 4), Gen.Choose(1, 5)), Gen.Zip(Gen.Choose(1, 64), Gen.Choose(0, 10_000))));
        var property = FsCheck.Fluent.Prop.ForAll(plan.ToArbitrary(), p =>
        {
            var ((rank, mask), ((start, count), (scaleSixteenths, seed))) = p;
            var blocks = new BlockRange(start, Math.Min(5, start + count));
            var targets = LoraTargets.All.Where((_, i) => (mask & (1 << i)) != 0).Reverse().ToArray();
            var adapters = new LoraWeights(Stories, blocks, rank, scaleSixteenths / 16f, targets);
            var rng = new Random(seed);
            var values = adapters.Values.Span;
            for (var i = 0; i < values.Length; i++)
            {
                values[i] = (float)((rng.NextDouble() * 2) - 1);
            }

            var dir = Path.Combine(_dir.Path, Guid.NewGuid().ToString("N"));
            PeftAdapter.Save(dir, adapters);
            var all = PeftAdapter.Load(dir, Stories);
            var ok = all.Rank == rank && all.Scale == adapters.Scale && all.Targets.Order().SequenceEqual(targets.Order());
            for (var b = 0; b < 5; b++)
            {
                foreach (var t in targets)
                {
                    ok &= blocks.Contains(b)
                        ? all.A(b, t).Span.SequenceEqual(adapters.A(b, t).Span) && all.B(b, t).Span.SequenceEqual(adapters.B(b, t).Span)
                        : !all.A(b, t).Span.ContainsAnyExcept(0f) && !all.B(b, t).Span.ContainsAnyExcept(0f);
                }
            }

            var span = PeftAdapter.Load(dir, Stories, blocks);
            return ok && span.Values.Span.SequenceEqual(all.Slice(blocks).Values.Span);
        });
        FsCheck.Check.QuickThrowOnFailure(property);
    }

    [Fact]
    public void F16_factors_are_widened_exactly()
    {
        var dir = CopyFixture(rewrite: tensors => [.. tensors.Select(t => ToF16(t))]);
        var f32 = PeftAdapter.Load(FixtureQvDown, Stories);
        var f16 = PeftAdapter.Load(dir, Stories);
        var expected = f32.Values.ToArray().Select(v => (float)(Half)v).ToArray();
        Assert.Equal(expected, f16.Values.ToArray());
    }

    [Fact]
    public void Saving_non_finite_adapters_is_refused()
    {
        var adapters = new LoraWeights(Stories, new BlockRange(0, 1), 1, 1f, [LoraTarget.Query]);
        adapters.Values.Span[5] = float.NaN;
        Assert.Throws<ArgumentException>(() => PeftAdapter.Save(Path.Combine(_dir.Path, "nan"), adapters));
    }

    [Fact]
    public void A_missing_directory_config_or_weights_file_is_named()
    {
        var missing = Path.Combine(_dir.Path, "nope");
        Assert.Equal(missing, Assert.Throws<ModelFormatException>(() => PeftAdapter.Load(missing, Stories)).FilePath);

        var noConfig = CopyFixture();
        File.Delete(Path.Combine(noConfig, PeftAdapter.ConfigFileName));
        var e = Assert.Throws<ModelFormatException>(() => PeftAdapter.Load(noConfig, Stories));
        Assert.Equal(Path.Combine(noConfig, PeftAdapter.ConfigFileName), e.FilePath);

        var noWeights = CopyFixture();
        File.Delete(Path.Combine(noWeights, PeftAdapter.WeightsFileName));
        File.WriteAllText(Path.Combine(noWeights, "adapter_model.bin"), "pickle");
        e = Assert.Throws<ModelFormatException>(() => PeftAdapter.Load(noWeights, Stories));
        Assert.Equal(Path.Combine(noWeights, PeftAdapter.WeightsFileName), e.FilePath);
        Assert.Contains("adapter_model.bin", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("peft_type", "\"PREFIX_TUNING\"", "peft_type", "only LORA")]
    [InlineData("target_modules", "[\"q_proj\", \"lm_head\"]", "target_modules", "'lm_head'")]
    [InlineData("target_modules", "[\"foo_proj\"]", "target_modules", "'foo_proj'")]
    [InlineData("target_modules", "[]", "target_modules", "empty")]
    [InlineData("target_modules", "\"(q_proj\"", "target_modules", "not a valid regular expression")]
    [InlineData("target_modules", "\"lm_head\"", "target_modules", "matches no module")]
    [InlineData("target_modules", "42", "target_modules", "a list of module names or a regular expression")]
    [InlineData("r", "0", "r", "positive integer")]
    [InlineData("lora_alpha", "\"eight\"", "lora_alpha", "finite number")]
    [InlineData("bias", "\"all\"", "bias", "only bias \"none\"")]
    [InlineData("modules_to_save", "[\"lm_head\"]", "modules_to_save", "must be null")]
    [InlineData("use_dora", "true", "use_dora", "plain LoRA")]
    [InlineData("rank_pattern", "{\"q_proj\": 8}", "rank_pattern.q_proj", "different ranks")]
    [InlineData("alpha_pattern", "{\"down_proj\": 16}", "alpha_pattern.down_proj", "different ranks or alphas")]
    [InlineData("layers_to_transform", "\"all\"", "layers_to_transform", "a layer index")]
    public void A_bad_config_field_is_named(string field, string json, string expectedField, string expectedMessage)
    {
        var dir = CopyFixture(config => config[field] = JsonNode.Parse(json));
        var e = Assert.Throws<ModelFormatException>(() => PeftAdapter.Load(dir, Stories));
        Assert.Equal(Path.Combine(dir, PeftAdapter.ConfigFileName), e.FilePath);
        Assert.Equal(expectedField, e.Field);
        Assert.Contains(expectedMessage, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Equal_rank_and_alpha_patterns_and_fan_in_fan_out_are_accepted()
    {
        var dir = CopyFixture(config =>
        {
            config["rank_pattern"] = JsonNode.Parse("{\"q_proj\": 4}");
            config["alpha_pattern"] = JsonNode.Parse("{\"v_proj\": 8}");
            config["fan_in_fan_out"] = true;
        });
        Assert.Equal(PeftAdapter.Load(FixtureQvDown, Stories).Values.ToArray(), PeftAdapter.Load(dir, Stories).Values.ToArray());
    }

    [Fact]
    public void Not_json_is_named()
    {
        var dir = CopyFixture();
        File.WriteAllText(Path.Combine(dir, PeftAdapter.ConfigFileName), "{ r: 4");
        var e = Assert.Throws<ModelFormatException>(() => PeftAdapter.Load(dir, Stories));
        Assert.Contains("not valid JSON", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("base_model.model.lm_head.lora_A.weight", "not a linear layer of a Llama block")]
    [InlineData("base_model.model.model.layers.1.mlp.foo_proj.lora_A.weight", "unknown target module 'foo_proj'")]
    [InlineData("base_model.model.model.layers.1.mlp.q_proj.lora_A.weight", "a Llama block has it at model.layers.1.self_attn.q_proj")]
    [InlineData("base_model.model.model.layers.7.self_attn.q_proj.lora_A.weight", "the model has 5 blocks")]
    [InlineData("base_model.model.model.layers.1.self_attn.k_proj.lora_A.weight", "does not target")]
    [InlineData("base_model.model.model.layers.1.self_attn.q_proj.lora_A.other.weight", "belongs to the adapter 'other'")]
    [InlineData("base_model.model.model.layers.1.self_attn.q_proj.lora_A.default.weight", "repeats the factor")]
    [InlineData("base_model.model.model.layers.1.self_attn.q_proj.lora_magnitude_vector.weight", "not a LoRA factor")]
    public void An_unexpected_tensor_is_named(string key, string expected)
    {
        var dir = CopyFixture(rewrite: tensors => [.. tensors, new WeightTensor(new TensorDescriptor(key, TensorDType.F32, [4, 64]), new byte[4 * 4 * 64])]);
        var e = Assert.Throws<ModelFormatException>(() => PeftAdapter.Load(dir, Stories, new BlockRange(0, 1)));
        Assert.Equal(Path.Combine(dir, PeftAdapter.WeightsFileName), e.FilePath);
        Assert.Equal(key, e.Field);
        Assert.Contains(expected, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_missing_tensor_of_the_span_is_named_but_other_spans_load()
    {
        const string Key = "base_model.model.model.layers.2.self_attn.q_proj.lora_B.weight";
        var dir = CopyFixture(rewrite: tensors => [.. tensors.Where(t => t.Descriptor.Name != Key)]);
        var e = Assert.Throws<ModelFormatException>(() => PeftAdapter.Load(dir, Stories, new BlockRange(1, 4)));
        Assert.Equal(Key, e.Field);
        Assert.Contains("is missing", e.Message, StringComparison.Ordinal);
        Assert.Equal(new BlockRange(3, 5), PeftAdapter.Load(dir, Stories, new BlockRange(3, 5)).Blocks);
    }

    [Fact]
    public void A_rank_different_from_r_is_named()
    {
        var dir = CopyFixture(config => config["r"] = 8);
        var e = Assert.Throws<ModelFormatException>(() => PeftAdapter.Load(dir, Stories));
        Assert.EndsWith(".lora_A.weight", e.Field, StringComparison.Ordinal);
        Assert.Contains("r = 8", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Mismatched_ranks_of_a_and_b_are_named()
    {
        const string Key = "base_model.model.model.layers.3.self_attn.v_proj.lora_B.weight";
        var dir = CopyFixture(rewrite: tensors => [.. tensors.Select(t => t.Descriptor.Name == Key ? new WeightTensor(new TensorDescriptor(Key, TensorDType.F32, [32, 3]), new byte[32 * 3 * 4]) : t)]);
        var e = Assert.Throws<ModelFormatException>(() => PeftAdapter.Load(dir, Stories));
        Assert.Equal(Key, e.Field);
        Assert.Contains("has rank 3", e.Message, StringComparison.Ordinal);
        Assert.Contains("has rank 4", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Shapes_that_do_not_fit_the_model_are_named()
    {
        var wider = Stories with { HiddenSize = 128 };
        var e = Assert.Throws<ModelFormatException>(() => PeftAdapter.Load(FixtureQvDown, wider));
        Assert.Equal("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", e.Field);
        Assert.Contains("takes 128 inputs", e.Message, StringComparison.Ordinal);

        var narrowerOut = Stories with { IntermediateSize = 100 };
        e = Assert.Throws<ModelFormatException>(() => PeftAdapter.Load(FixtureQvDown, narrowerOut));
        Assert.Equal("base_model.model.model.layers.0.mlp.down_proj.lora_A.weight", e.Field);

        var vectorKey = "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight";
        var dir = CopyFixture(rewrite: tensors => [.. tensors.Select(t => t.Descriptor.Name == vectorKey ? new WeightTensor(new TensorDescriptor(vectorKey, TensorDType.F32, [256]), t.Data) : t)]);
        e = Assert.Throws<ModelFormatException>(() => PeftAdapter.Load(dir, Stories));
        Assert.Equal(vectorKey, e.Field);
        Assert.Contains("matrices", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(float.NaN)]
    [InlineData(float.PositiveInfinity)]
    public void Non_finite_values_are_named(float bad)
    {
        const string Key = "base_model.model.model.layers.4.mlp.down_proj.lora_B.weight";
        var dir = CopyFixture(rewrite: tensors => [.. tensors.Select(t =>
        {
            if (t.Descriptor.Name != Key)
            {
                return t;
            }

            var data = t.Data.ToArray();
            MemoryMarshal.Cast<byte, float>(data.AsSpan())[17] = bad;
            return t with { Data = data };
        })]);
        var e = Assert.Throws<ModelFormatException>(() => PeftAdapter.Load(dir, Stories));
        Assert.Equal(Key, e.Field);
        Assert.Contains("non-finite", e.Message, StringComparison.Ordinal);
        Assert.Contains("element 17", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void An_integer_dtype_is_named()
    {
        const string Key = "base_model.model.model.layers.0.self_attn.v_proj.lora_A.weight";
        var dir = CopyFixture(rewrite: tensors => [.. tensors.Select(t => t.Descriptor.Name == Key ? t with { Descriptor = t.Descriptor with { DType = TensorDType.I32 } } : t)]);
        var e = Assert.Throws<ModelFormatException>(() => PeftAdapter.Load(dir, Stories));
        Assert.Equal(Key, e.Field);
        Assert.Contains("F32, F16 or BF16", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_span_outside_the_model_is_refused()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => PeftAdapter.Load(FixtureQvDown, Stories, new BlockRange(3, 6)));
    }

    [Fact]
    public void A_rank_too_large_for_any_adapter_is_refused_before_allocating()
    {
        var dir = CopyFixture(config => config["r"] = 2_000_000_000);
        var e = Assert.Throws<ModelFormatException>(() => PeftAdapter.Load(dir, Stories));
        Assert.Equal("r", e.Field);
        Assert.Contains("largest supported", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Mutated_adapter_files_only_ever_fail_with_format_errors()
    {
        var config = File.ReadAllBytes(Path.Combine(FixtureQvDown, PeftAdapter.ConfigFileName));
        var weights = File.ReadAllBytes(Path.Combine(FixtureQvDown, PeftAdapter.WeightsFileName));
        var headerEnd = 8 + (int)BitConverter.ToUInt64(weights, 0);
        var edit = Gen.Zip(Gen.Choose(0, 1 << 20), Gen.Choose(0, 255));
        var plan = Gen.Zip(Gen.Zip(Gen.Elements(true, false), Gen.ListOf(edit)), Gen.Choose(0, 8));
        var property = FsCheck.Fluent.Prop.ForAll(plan.ToArbitrary(), p =>
        {
            var ((inConfig, edits), cut) = p;
            var target = (byte[])(inConfig ? config : weights).Clone();
            var span = inConfig ? target.Length : headerEnd + 64; // the header and the start of the data
            foreach (var (at, value) in edits)
            {
                target[at % span] = (byte)value;
            }

            var length = cut == 0 ? target.Length / 2 : target.Length; // sometimes truncated
            var dir = Path.Combine(_dir.Path, Guid.NewGuid().ToString("N"));
            Directory.CreateDirectory(dir);
            File.WriteAllBytes(Path.Combine(dir, PeftAdapter.ConfigFileName), inConfig ? target[..length] : config);
            File.WriteAllBytes(Path.Combine(dir, PeftAdapter.WeightsFileName), inConfig ? weights : target[..length]);
            try
            {
                _ = PeftAdapter.Load(dir, Stories, new BlockRange(1, 3));
                return true;
            }
            catch (ModelFormatException e)
            {
                return e.FilePath.StartsWith(dir, StringComparison.Ordinal);
            }
        });
        FsCheck.Check.QuickThrowOnFailure(property);
    }

    private static WeightTensor ToF16(WeightTensor t)
    {
        var floats = MemoryMarshal.Cast<byte, float>(t.Data.Span);
        var halves = new Half[floats.Length];
        for (var i = 0; i < floats.Length; i++)
        {
            halves[i] = (Half)floats[i];
        }

        return new WeightTensor(t.Descriptor with { DType = TensorDType.F16 }, MemoryMarshal.AsBytes(halves.AsSpan()).ToArray());
    }

    private string CopyFixture(Action<JsonObject>? config = null, Func<List<WeightTensor>, List<WeightTensor>>? rewrite = null)
    {
        var dir = Path.Combine(_dir.Path, Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        var configText = File.ReadAllText(Path.Combine(FixtureQvDown, PeftAdapter.ConfigFileName));
        if (config is not null)
        {
            var node = JsonNode.Parse(configText)!.AsObject();
            config(node);
            configText = node.ToJsonString();
        }

        File.WriteAllText(Path.Combine(dir, PeftAdapter.ConfigFileName), configText);
        List<WeightTensor> tensors;
        using (var file = SafetensorsFile.Open(Path.Combine(FixtureQvDown, PeftAdapter.WeightsFileName)))
        {
            tensors = [.. file.Tensors.Keys.Order(StringComparer.Ordinal).Select(k => new WeightTensor(file.Tensors[k], file.GetTensorData(k).ToArray()))];
        }

        SafetensorsWriter.Write(Path.Combine(dir, PeftAdapter.WeightsFileName), rewrite is null ? tensors : rewrite(tensors));
        return dir;
    }
}
