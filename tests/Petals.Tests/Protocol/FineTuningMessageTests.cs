using Petals.Execution;
using Petals.Models;
using Petals.Protocol;
using Petals.Tensors;

namespace Petals.Tests.Protocol;

/// <summary>Protocol 1.3: backward, prompts, sent LoRA, adapter names and the adapters in the info, on the wire.</summary>
public sealed class FineTuningMessageTests
{
    private static readonly BlockRange Blocks = new(2, 4);

    private static WireTensor Hidden(int batch, int tokens, int width = 8, float offset = 0) =>
        WireTensor.FromValues(new TensorShape(batch, tokens, width), Enumerable.Range(0, batch * tokens * width).Select(i => (i * 0.25f) + offset).ToArray());

    private static WireLora Lora() =>
        new(2, 0.5f, [LoraTarget.Value, LoraTarget.Query], WireTensor.FromValues(new TensorShape(12), Enumerable.Range(0, 12).Select(i => i - 6f).ToArray()));

    private static WireTensor Prompts() => WireTensor.FromValues(new TensorShape(2, 1, 2, 8), Enumerable.Range(0, 32).Select(i => i / 10f).ToArray());

    private static ProtocolMessage RoundTrip(ProtocolMessage message, ProtocolLimits? limits = null)
    {
        limits ??= ProtocolLimits.Default;
        var bytes = ProtocolTestKit.Encode(limits, [(5u, message)]);
        using var reader = new ProtocolReader(ProtocolTestKit.Filled(bytes), limits);
        var received = ProtocolTestKit.ReadNow(reader)!.Value.Message;
        Assert.Null(ProtocolTestKit.ReadNow(reader));
        return received;
    }

    private static ProtocolException Refused(byte[] bytes)
    {
        using var reader = new ProtocolReader(ProtocolTestKit.Filled(bytes), ProtocolLimits.Default);
        return Assert.Throws<ProtocolException>(() => ProtocolTestKit.ReadNow(reader));
    }

    public static TheoryData<string> Messages() => ["forward-all", "backward-plain", "backward-all", "backward-adapter", "response-plain", "response-all", "open-lora", "open-adapter", "step-prompts"];

    private static ProtocolMessage Message(string name) => name switch
    {
        "forward-all" => new ForwardRequest(Blocks, WireCodec.Fp16, Hidden(1, 3), Prompts()) { Lora = Lora() },
        "backward-plain" => new BackwardRequest(Blocks, WireCodec.Fp32, Hidden(2, 3), Hidden(2, 3, offset: 1)),
        "backward-all" => new BackwardRequest(Blocks, WireCodec.Fp32, Hidden(1, 3), Hidden(1, 3, offset: -1), Prompts()) { Lora = Lora() },
        "backward-adapter" => new BackwardRequest(Blocks, WireCodec.Bf16, Hidden(1, 2), Hidden(1, 2), Prompts()) { Adapter = "style-ä" },
        "response-plain" => new BackwardResponse(Hidden(1, 3)),
        "response-all" => new BackwardResponse(Hidden(1, 3), Prompts(), WireTensor.FromValues(new TensorShape(12), new float[12])),
        "open-lora" => new InferenceOpen(Guid.NewGuid(), Blocks, 16, WireCodec.Fp32) { Lora = Lora() },
        "open-adapter" => new InferenceOpen(Guid.NewGuid(), Blocks, 16, WireCodec.Fp32) { Adapter = "rhymes" },
        "step-prompts" => new InferenceStep(3, 0, Hidden(1, 2), Prompts()),
        _ => throw new ArgumentOutOfRangeException(nameof(name)),
    };

    [Theory]
    [MemberData(nameof(Messages))]
    public void Every_new_message_round_trips_in_one_frame_and_in_chunks(string name)
    {
        var message = Message(name);
        Assert.Equal(message, RoundTrip(message));
        Assert.Equal(message, RoundTrip(message, new ProtocolLimits { MaxFrameSize = ProtocolLimits.MinFrameSize }));
    }

    [Fact]
    public void Lora_weights_travel_as_rank_scale_targets_in_layout_order_and_one_tensor()
    {
        var lora = Lora();
        var plain = ProtocolTestKit.Encode(ProtocolLimits.Default, [(1u, new ForwardRequest(Blocks, WireCodec.Fp32, Hidden(1, 1)))]);
        var bytes = ProtocolTestKit.Encode(ProtocolLimits.Default, [(1u, new ForwardRequest(Blocks, WireCodec.Fp32, Hidden(1, 1)) { Lora = lora })]);

        // u16 rank, f32 scale, u8 count, one byte per target, then codec, rank 1, one u32 dimension and 12 floats.
        Assert.Equal(plain.Length + 2 + 4 + 1 + 2 + 2 + 4 + 48, bytes.Length);
        Assert.Equal(FrameFlags.HasLora, (FrameFlags)bytes[5]);
        var at = plain.Length;
        Assert.Equal(2, BitConverter.ToUInt16(bytes, at));
        Assert.Equal(0.5f, BitConverter.ToSingle(bytes, at + 2));
        Assert.Equal([2, 2, 0], bytes[(at + 6)..(at + 9)]);
    }

    [Fact]
    public void Wire_lora_decodes_into_weights_for_the_messages_blocks_and_refuses_a_count_that_does_not_fit_the_model()
    {
        var config = new ModelConfig { HiddenSize = 4, IntermediateSize = 8, NumLayers = 4, NumHeads = 2, NumKeyValueHeads = 1, HeadDim = 2, VocabSize = 10 };
        var weights = new LoraWeights(config, Blocks, 1, 2f, [LoraTarget.Key, LoraTarget.Down]);
        for (var i = 0; i < weights.Values.Length; i++)
        {
            weights.Values.Span[i] = i;
        }

        var decoded = Assert.IsType<ForwardRequest>(RoundTrip(new ForwardRequest(Blocks, WireCodec.Fp32, Hidden(1, 1, 4)) { Lora = WireLora.From(weights) }));
        var back = decoded.Lora!.Value.ToWeights(config, Blocks);
        Assert.True(back.HasLayoutOf(weights));
        Assert.Equal(weights.Values.ToArray(), back.Values.ToArray());

        var error = Assert.Throws<ProtocolException>(() => decoded.Lora!.Value.ToWeights(config, new BlockRange(2, 3)));
        Assert.Equal(ProtocolErrorCode.BadShape, error.Code);
        Assert.Contains($"hold {weights.Values.Length} values; rank 1 on [k_proj, down_proj] over blocks {new BlockRange(2, 3)} of this model needs {weights.Values.Length / 2}", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void The_adapters_follow_the_quantization_in_the_info_from_protocol_1_3()
    {
        var info = new InfoResponse(1, 3, "m", Blocks, 8, TensorDType.F32, WireCodecs.All, 10, 1 << 20, 1 << 20, 8, 8) { StatedError = 1e-4f, Quantization = "none" };
        var with = info with { Adapters = ["rhymes", "pirate"] };
        Assert.Equal(with, RoundTrip(with));
        Assert.Null(Assert.IsType<InfoResponse>(RoundTrip(info)).Adapters); // a 1.2 info reads as "not stated"
        Assert.Empty(Assert.IsType<InfoResponse>(RoundTrip(info with { Adapters = [] })).Adapters!);
        Assert.Throws<InvalidOperationException>(() => ProtocolTestKit.Encode(ProtocolLimits.Default, [(1u, info with { Quantization = null, Adapters = ["a"] })]));
        Assert.Throws<InvalidOperationException>(() => ProtocolTestKit.Encode(ProtocolLimits.Default, [(1u, info with { Adapters = [""] })]));
    }

    [Fact]
    public void The_protocol_minor_version_is_3_and_the_fine_tuning_messages_need_it()
    {
        Assert.Equal(3, ConnectionPreamble.CurrentVersionMinor);
        Assert.Equal(3, ConnectionPreamble.FineTuningVersionMinor);
        Assert.Equal(0x0C, (int)FrameType.BackwardRequest);
        Assert.Equal(0x0D, (int)FrameType.BackwardResponse);
    }

    [Fact]
    public void A_truncated_backward_request_names_the_field_where_it_ends()
    {
        var bytes = ProtocolTestKit.Encode(ProtocolLimits.Default, [(1u, new BackwardRequest(Blocks, WireCodec.Fp32, Hidden(1, 2), Hidden(1, 2)))]);
        var cut = Cut(bytes, 20);
        var error = Refused(cut);
        Assert.Equal(ProtocolErrorCode.Truncated, error.Code);
        Assert.Contains("field 'gradOutputs'", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_backward_request_whose_gradient_shape_differs_from_its_inputs_is_bad_shape()
    {
        var error = Refused(ProtocolTestKit.Encode(ProtocolLimits.Default, [(1u, new BackwardRequest(Blocks, WireCodec.Fp32, Hidden(1, 2), Hidden(1, 3)))]));
        Assert.Equal(ProtocolErrorCode.BadShape, error.Code);
        Assert.Contains("gradOutputs", error.Message, StringComparison.Ordinal);
        Assert.Contains("[1, 3, 8]", error.Message, StringComparison.Ordinal);
        Assert.Contains("[1, 2, 8]", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Prompts_that_are_not_rank_4_are_bad_shape()
    {
        var flat = WireTensor.FromValues(new TensorShape(16), new float[16]);
        var bytes = ProtocolTestKit.Encode(ProtocolLimits.Default, [(1u, new InferenceStep(1, 0, Hidden(1, 1)))]);

        // Appending a rank-1 tensor and setting HasPrompts gives a step with flat prompts (the writer refuses to build one).
        var patched = AppendField(bytes, flat, FrameFlags.HasPrompts);
        var stepError = Refused(patched);
        Assert.Equal(ProtocolErrorCode.BadShape, stepError.Code);

        Assert.Throws<ArgumentException>(() => ProtocolTestKit.Encode(ProtocolLimits.Default, [(1u, new ForwardRequest(Blocks, WireCodec.Fp32, Hidden(1, 1), flat))]));
        var forward = AppendField(ProtocolTestKit.Encode(ProtocolLimits.Default, [(1u, new ForwardRequest(Blocks, WireCodec.Fp32, Hidden(1, 1)))]), flat, FrameFlags.HasPrompts);
        var error = Refused(forward);
        Assert.Equal(ProtocolErrorCode.BadShape, error.Code);
        Assert.Contains("field 'prompts'", error.Message, StringComparison.Ordinal);
        Assert.Contains("[blocks, batch, prefix, hidden]", error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(0, "loraRank", "is 0; it must be 1 to 4096")]
    [InlineData(1, "loraScale", "is NaN; it must be finite")]
    [InlineData(2, "loraTargets", "counts 0 layers")]
    [InlineData(3, "loraTargets", "names layer 9 at index 0")]
    [InlineData(4, "loraTargets", "names layer 2 twice")]
    [InlineData(5, "loraValues", "rank-1 tensor")]
    public void Bad_lora_fields_are_refused_naming_the_field(int fault, string field, string detail)
    {
        var lora = Lora();
        var bytes = ProtocolTestKit.Encode(ProtocolLimits.Default, [(1u, new ForwardRequest(Blocks, WireCodec.Fp32, Hidden(1, 1)) { Lora = lora })]);
        var at = ProtocolTestKit.Encode(ProtocolLimits.Default, [(1u, new ForwardRequest(Blocks, WireCodec.Fp32, Hidden(1, 1)))]).Length;
        switch (fault)
        {
            case 0:
                bytes[at] = 0;
                bytes[at + 1] = 0;
                break;
            case 1:
                BitConverter.GetBytes(float.NaN).CopyTo(bytes, at + 2);
                break;
            case 2:
                bytes[at + 6] = 0;
                break;
            case 3:
                bytes[at + 7] = 9;
                break;
            case 4:
                bytes[at + 8] = 2;
                break;
            case 5:
                // Rank 2, scale 0.5, one target (q_proj), then values shaped [3, 4].
                var tensor = WireTensor.FromValues(new TensorShape(3, 4), new float[12]);
                var head = new byte[] { 2, 0 }.Concat(BitConverter.GetBytes(0.5f)).Concat(new byte[] { 1, 0 }).ToArray();
                bytes = AppendField(ProtocolTestKit.Encode(ProtocolLimits.Default, [(1u, new ForwardRequest(Blocks, WireCodec.Fp32, Hidden(1, 1)))]), tensor, FrameFlags.HasLora, head);
                break;
        }

        var error = Refused(bytes);
        Assert.Contains($"field '{field}'", error.Message, StringComparison.Ordinal);
        Assert.Contains(detail, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void An_empty_adapter_name_is_refused_on_both_ends()
    {
        Assert.Throws<ArgumentException>(() => ProtocolTestKit.Encode(ProtocolLimits.Default, [(1u, new InferenceOpen(Guid.NewGuid(), Blocks, 4, WireCodec.Fp32) { Adapter = "" })]));
        var bytes = ProtocolTestKit.Encode(ProtocolLimits.Default, [(1u, new InferenceOpen(Guid.NewGuid(), Blocks, 4, WireCodec.Fp32) { Adapter = "x" })]);

        // Length 1 → 0 and the frame one byte shorter.
        var patched = bytes[..^1];
        patched[^2] = 0;
        BitConverter.GetBytes(BitConverter.ToUInt32(patched, 0) - 1).CopyTo(patched, 0);
        var error = Refused(patched);
        Assert.Equal(ProtocolErrorCode.MalformedFrame, error.Code);
        Assert.Contains("field 'adapter'", error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(FrameType.InferenceOpen, FrameFlags.HasPrompts)]
    [InlineData(FrameType.BackwardResponse, FrameFlags.HasAdapter)]
    [InlineData(FrameType.ForwardResponse, FrameFlags.HasLora)]
    public void Flags_a_message_cannot_carry_are_refused(FrameType type, FrameFlags flag)
    {
        ProtocolMessage message = type switch
        {
            FrameType.InferenceOpen => new InferenceOpen(Guid.NewGuid(), Blocks, 4, WireCodec.Fp32),
            FrameType.BackwardResponse => new BackwardResponse(Hidden(1, 1)),
            _ => new ForwardResponse(Hidden(1, 1)),
        };
        var bytes = ProtocolTestKit.Encode(ProtocolLimits.Default, [(1u, message)]);
        bytes[5] |= (byte)flag;
        Assert.Equal(ProtocolErrorCode.InvalidFlags, Refused(bytes).Code);
    }

    [Fact]
    public void Backward_response_gradients_of_the_wrong_rank_are_bad_shape()
    {
        var bytes = ProtocolTestKit.Encode(ProtocolLimits.Default, [(1u, new BackwardResponse(Hidden(1, 1)))]);
        var patched = AppendField(bytes, WireTensor.FromValues(new TensorShape(2, 2), new float[4]), FrameFlags.HasLora);
        var error = Refused(patched);
        Assert.Equal(ProtocolErrorCode.BadShape, error.Code);
        Assert.Contains("gradLora", error.Message, StringComparison.Ordinal);
    }

    /// <summary>A one-frame message with <paramref name="tensor"/> appended and <paramref name="flag"/> set.</summary>
    private static byte[] AppendField(byte[] frame, WireTensor tensor, FrameFlags flag, byte[]? head = null)
    {
        var extra = new byte[tensor.EncodedSize];
        extra[0] = (byte)tensor.Codec;
        extra[1] = (byte)tensor.Shape.Rank;
        for (var i = 0; i < tensor.Shape.Rank; i++)
        {
            BitConverter.GetBytes((uint)tensor.Shape[i]).CopyTo(extra, 2 + (4 * i));
        }

        tensor.WritePayload(extra.AsSpan(2 + (4 * tensor.Shape.Rank)));
        extra = [.. head ?? [], .. extra];
        var result = frame.Concat(extra).ToArray();
        BitConverter.GetBytes(BitConverter.ToUInt32(result, 0) + (uint)extra.Length).CopyTo(result, 0);
        result[5] |= (byte)flag;
        return result;
    }

    /// <summary>A one-frame message with its last <paramref name="count"/> bytes removed (and its length fixed).</summary>
    private static byte[] Cut(byte[] frame, int count)
    {
        var result = frame[..^count];
        BitConverter.GetBytes(BitConverter.ToUInt32(result, 0) - (uint)count).CopyTo(result, 0);
        return result;
    }
}
