using Petals.Tensors;

namespace Petals.Formats.Gguf;

/// <summary>Block sizes of the ggml types and their mapping onto <see cref="TensorDType"/>.</summary>
internal static class GgufTensorTypeInfo
{
    /// <summary>Elements per block and bytes per block of <paramref name="type"/>; false for an unknown type id.</summary>
    public static bool TryGetBlock(GgufTensorType type, out int blockElements, out int blockBytes)
    {
        (blockElements, blockBytes) = type switch
        {
            GgufTensorType.F32 => (1, 4),
            GgufTensorType.F16 => (1, 2),
            GgufTensorType.Q4_0 => (32, 18),
            GgufTensorType.Q4_1 => (32, 20),
            GgufTensorType.Q5_0 => (32, 22),
            GgufTensorType.Q5_1 => (32, 24),
            GgufTensorType.Q8_0 => (32, 34),
            GgufTensorType.Q8_1 => (32, 36),
            GgufTensorType.Q2_K => (256, 84),
            GgufTensorType.Q3_K => (256, 110),
            GgufTensorType.Q4_K => (256, 144),
            GgufTensorType.Q5_K => (256, 176),
            GgufTensorType.Q6_K => (256, 210),
            GgufTensorType.Q8_K => (256, 292),
            GgufTensorType.IQ2_XXS => (256, 66),
            GgufTensorType.IQ2_XS => (256, 74),
            GgufTensorType.IQ3_XXS => (256, 98),
            GgufTensorType.IQ1_S => (256, 50),
            GgufTensorType.IQ4_NL => (32, 18),
            GgufTensorType.IQ3_S => (256, 110),
            GgufTensorType.IQ2_S => (256, 82),
            GgufTensorType.IQ4_XS => (256, 136),
            GgufTensorType.I8 => (1, 1),
            GgufTensorType.I16 => (1, 2),
            GgufTensorType.I32 => (1, 4),
            GgufTensorType.I64 => (1, 8),
            GgufTensorType.F64 => (1, 8),
            GgufTensorType.IQ1_M => (256, 56),
            GgufTensorType.BF16 => (1, 2),
            GgufTensorType.TQ1_0 => (256, 54),
            GgufTensorType.TQ2_0 => (256, 66),
            GgufTensorType.MXFP4 => (32, 17),
            _ => (0, 0),
        };
        return blockElements != 0;
    }

    /// <summary>The ggml types the weight readers serve, as listed in messages.</summary>
    public const string SupportedList = "F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K";

    /// <summary>
    /// The <see cref="TensorDType"/> a ggml type is served as by the weight readers (block-quantized types natively, with
    /// the same block layout), or null when unsupported.
    /// </summary>
    public static TensorDType? ServedAs(GgufTensorType type) => type switch
    {
        GgufTensorType.F32 => TensorDType.F32,
        GgufTensorType.F16 => TensorDType.F16,
        GgufTensorType.BF16 => TensorDType.BF16,
        GgufTensorType.Q8_0 => TensorDType.Q8_0,
        GgufTensorType.Q4_0 => TensorDType.Q4_0,
        GgufTensorType.Q4_1 => TensorDType.Q4_1,
        GgufTensorType.Q5_0 => TensorDType.Q5_0,
        GgufTensorType.Q5_1 => TensorDType.Q5_1,
        GgufTensorType.Q2_K => TensorDType.Q2_K,
        GgufTensorType.Q3_K => TensorDType.Q3_K,
        GgufTensorType.Q4_K => TensorDType.Q4_K,
        GgufTensorType.Q5_K => TensorDType.Q5_K,
        GgufTensorType.Q6_K => TensorDType.Q6_K,
        _ => null,
    };

    /// <summary>The ggml type of a <see cref="TensorDType"/> that GGUF files can store, or null (NF4, I8, …).</summary>
    public static GgufTensorType? FromDType(TensorDType dtype) => dtype switch
    {
        TensorDType.F32 => GgufTensorType.F32,
        TensorDType.F16 => GgufTensorType.F16,
        TensorDType.BF16 => GgufTensorType.BF16,
        TensorDType.Q8_0 => GgufTensorType.Q8_0,
        TensorDType.Q4_0 => GgufTensorType.Q4_0,
        TensorDType.Q4_1 => GgufTensorType.Q4_1,
        TensorDType.Q5_0 => GgufTensorType.Q5_0,
        TensorDType.Q5_1 => GgufTensorType.Q5_1,
        TensorDType.Q2_K => GgufTensorType.Q2_K,
        TensorDType.Q3_K => GgufTensorType.Q3_K,
        TensorDType.Q4_K => GgufTensorType.Q4_K,
        TensorDType.Q5_K => GgufTensorType.Q5_K,
        TensorDType.Q6_K => GgufTensorType.Q6_K,
        _ => null,
    };
}
