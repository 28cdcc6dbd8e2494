using System.Globalization;
using Petals.Tensors;

namespace Petals.Protocol;

/// <summary>Decodes a complete message payload into its <see cref="ProtocolMessage"/>, validating every field.</summary>
internal static class MessageDecoder
{
    public static ProtocolMessage Decode(FrameType type, FrameFlags flags, ReadOnlyMemory<byte> payload, ProtocolLimits limits, uint streamId)
    {
        var reader = new WireReader(payload, limits, type, streamId);
        ProtocolMessage message;
        switch (type)
        {
            case FrameType.InfoRequest:
                message = InfoRequest.Instance;
                break;
            case FrameType.InferenceClose:
                message = InferenceClose.Instance;
                break;
            case FrameType.Ping:
                message = new PingMessage(reader.U64("nonce"));
                break;
            case FrameType.Pong:
                message = new PongMessage(reader.U64("nonce"));
                break;
            case FrameType.Error:
            {
                var code = reader.String("code");
                if (code.Length == 0)
                {
                    throw reader.Error(ProtocolErrorCode.MalformedFrame, "code", "is empty.");
                }

                message = new ErrorMessage(new ProtocolErrorCode(code), reader.String("message"));
                break;
            }

            case FrameType.InfoResponse:
                message = DecodeInfo(ref reader);
                break;
            case FrameType.ForwardRequest:
            {
                var blocks = reader.Blocks("blocks");
                var reply = reader.Codec("replyCodec");
                var hidden = Hidden(ref reader);
                var (prompts, lora, adapter) = AdaptationFields.Read(ref reader, flags);
                message = new ForwardRequest(blocks, reply, hidden, prompts) { Lora = lora, Adapter = adapter };
                break;
            }

            case FrameType.BackwardRequest:
            {
                var blocks = reader.Blocks("blocks");
                var reply = reader.Codec("replyCodec");
                var inputs = Hidden(ref reader, "inputs");
                var grads = Hidden(ref reader, "gradOutputs");
                if (grads.Shape != inputs.Shape)
                {
                    throw reader.Error(ProtocolErrorCode.BadShape, "gradOutputs", $"has shape {grads.Shape}; the inputs have {inputs.Shape} and the gradient of the outputs has the same shape.");
                }

                var (prompts, lora, adapter) = AdaptationFields.Read(ref reader, flags);
                message = new BackwardRequest(blocks, reply, inputs, grads, prompts) { Lora = lora, Adapter = adapter };
                break;
            }

            case FrameType.BackwardResponse:
            {
                var grads = Hidden(ref reader, "gradInputs");
                var prompts = (flags & FrameFlags.HasPrompts) != 0 ? reader.Tensor("gradPrompts") : (WireTensor?)null;
                if (prompts is { Shape.Rank: not 4 } p)
                {
                    throw reader.Error(ProtocolErrorCode.BadShape, "gradPrompts", $"has shape {p.Shape}; prompt gradients are [blocks, batch, prefix, hidden].");
                }

                var lora = (flags & FrameFlags.HasLora) != 0 ? reader.Tensor("gradLora") : (WireTensor?)null;
                if (lora is { Shape.Rank: not 1 } l)
                {
                    throw reader.Error(ProtocolErrorCode.BadShape, "gradLora", $"has shape {l.Shape}; LoRA gradients are a rank-1 tensor.");
                }

                message = new BackwardResponse(grads, prompts, lora);
                break;
            }

            case FrameType.ForwardResponse:
                message = new ForwardResponse(Hidden(ref reader));
                break;
            case FrameType.InferenceOpen:
            {
                var session = reader.Guid("sessionId");
                var blocks = reader.Blocks("blocks");
                var maxLength = reader.Count("maxLength");
                if (maxLength == 0)
                {
                    throw reader.Error(ProtocolErrorCode.MalformedFrame, "maxLength", "is 0; a session holds at least one token.");
                }

                var codec = reader.Codec("replyCodec");
                var (_, lora, adapter) = AdaptationFields.Read(ref reader, flags);
                message = new InferenceOpen(session, blocks, maxLength, codec) { Lora = lora, Adapter = adapter };
                break;
            }

            case FrameType.InferenceStep:
                message = DecodeStep(ref reader, flags, limits);
                break;
            case FrameType.InferenceStepResult:
            {
                var stepId = reader.U64("stepId");
                var position = reader.Count("position");
                message = new InferenceStepResult(stepId, position, Hidden(ref reader));
                break;
            }

            default:
                // The scanner rejects unknown types and routes continuations to reassembly.
                throw new ProtocolException(ProtocolErrorCode.UnknownFrameType, string.Create(CultureInfo.InvariantCulture, $"Frame type 0x{(byte)type:X2} on stream {streamId} is not a message.")) { StreamId = streamId };
        }

        reader.End();
        return message;
    }

    private static WireTensor Hidden(ref WireReader reader, string field = "hidden")
    {
        var hidden = reader.Tensor(field);
        if (hidden.Shape.Rank != 3)
        {
            throw reader.Error(ProtocolErrorCode.BadShape, field, string.Create(CultureInfo.InvariantCulture, $"has rank {hidden.Shape.Rank}; hidden states are [batch, tokens, hidden]."));
        }

        return hidden;
    }

    private static InfoResponse DecodeInfo(ref WireReader reader)
    {
        var major = reader.U16("versionMajor");
        var minor = reader.U16("versionMinor");
        var model = reader.String("modelId");
        var blocks = reader.Blocks("blocks");
        var hidden = reader.Count("hiddenSize");
        var dtype = reader.U8("computeDType");
        if (!Enum.IsDefined((TensorDType)dtype))
        {
            throw reader.Error(ProtocolErrorCode.BadDType, "computeDType", string.Create(CultureInfo.InvariantCulture, $"is {dtype}, not a known dtype."));
        }

        var codecs = reader.U8("codecs");
        if ((codecs & ~(byte)WireCodecs.All) != 0)
        {
            throw reader.Error(ProtocolErrorCode.BadDType, "codecs", string.Create(CultureInfo.InvariantCulture, $"is 0x{codecs:X2}; only bits 0-3 name codecs."));
        }

        var info = new InfoResponse(
            major,
            minor,
            model,
            blocks,
            hidden,
            (TensorDType)dtype,
            (WireCodecs)codecs,
            reader.U64("cacheTokensLeft"),
            reader.Count("maxFrameSize"),
            reader.Count("maxMessageSize"),
            reader.Count("maxBatchSize"),
            reader.Count("maxSessionLength"));
        if (reader.Remaining == 0)
        {
            return info;
        }

        var stated = BitConverter.UInt32BitsToSingle(reader.U32("statedError"));
        if (!(stated >= 0 && stated <= 1))
        {
            throw reader.Error(ProtocolErrorCode.MalformedFrame, "statedError", string.Create(CultureInfo.InvariantCulture, $"is {stated}; a relative error bound is in [0, 1]."));
        }

        if (reader.Remaining == 0)
        {
            return info with { StatedError = stated };
        }

        // Protocol 1.2: the weight quantization, which clients that require one route by.
        var quantization = reader.String("quantization");
        if (!Discovery.AnnouncementLimits.IsValidQuantization(quantization, out var fault))
        {
            throw reader.Error(ProtocolErrorCode.MalformedFrame, "quantization", "is invalid: " + fault);
        }

        if (reader.Remaining == 0)
        {
            return info with { StatedError = stated, Quantization = quantization };
        }

        // Protocol 1.3: the adapters the server holds, which clients that name one route by.
        var count = reader.U16("adapters");
        if (count > InfoResponse.MaxAdapters)
        {
            throw reader.Error(ProtocolErrorCode.MalformedFrame, "adapters", string.Create(CultureInfo.InvariantCulture, $"counts {count} names; the limit is {InfoResponse.MaxAdapters}."));
        }

        var adapters = new string[count];
        for (var i = 0; i < count; i++)
        {
            adapters[i] = reader.String("adapters");
            if (adapters[i].Length == 0)
            {
                throw reader.Error(ProtocolErrorCode.MalformedFrame, "adapters", string.Create(CultureInfo.InvariantCulture, $"name {i} is empty."));
            }
        }

        return info with { StatedError = stated, Quantization = quantization, Adapters = adapters };
    }

    private static InferenceStep DecodeStep(ref WireReader reader, FrameFlags flags, ProtocolLimits limits)
    {
        var stepId = reader.U64("stepId");
        var start = reader.Count("startPosition");
        var hidden = Hidden(ref reader);
        var prompts = AdaptationFields.ReadPrompts(ref reader, flags);

        ReadOnlyMemory<int>? hypoIds = null;
        if ((flags & FrameFlags.HasHypoIds) != 0)
        {
            var count = reader.Count("hypoIds");
            if (count > limits.MaxHypoIds)
            {
                throw reader.Error(ProtocolErrorCode.MalformedFrame, "hypoIds", string.Create(CultureInfo.InvariantCulture, $"holds {count} ids; the limit is {limits.MaxHypoIds}."));
            }

            if ((long)count * 4 > reader.Remaining)
            {
                throw reader.Error(ProtocolErrorCode.Truncated, "hypoIds", string.Create(CultureInfo.InvariantCulture, $"declares {count} ids but only {reader.Remaining} bytes remain."));
            }

            // Beam search only: a small array bounded by MaxHypoIds.
            var ids = new int[count];
            for (var i = 0; i < ids.Length; i++)
            {
                ids[i] = reader.I32("hypoIds");
            }

            hypoIds = ids;
        }

        return new InferenceStep(stepId, start, hidden, prompts, hypoIds);
    }
}
