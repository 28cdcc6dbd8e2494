namespace Petals.Formats.Gguf;

/// <summary>
/// The ggml element types a GGUF tensor may have. <see cref="GgufFile"/> recognizes all of them (to check
/// tensor sizes), but serves and reads the data only of <see cref="F32"/>, <see cref="F16"/>, <see cref="BF16"/>,
/// <see cref="Q8_0"/>, <see cref="Q4_0"/>, <see cref="Q4_1"/>, <see cref="Q5_0"/>, <see cref="Q5_1"/> and the k-quants
/// <see cref="Q2_K"/> … <see cref="Q6_K"/> (as the <c>TensorDType</c> of the same name).
/// </summary>
public enum GgufTensorType
{
    /// <summary>IEEE 754 binary32.</summary>
    F32 = 0,

    /// <summary>IEEE 754 binary16.</summary>
    F16 = 1,

    /// <summary>4-bit blocks of 32 with an fp16 scale.</summary>
    Q4_0 = 2,

    /// <summary>4-bit blocks of 32 with an fp16 scale and minimum.</summary>
    Q4_1 = 3,

    /// <summary>5-bit blocks of 32 with an fp16 scale.</summary>
    Q5_0 = 6,

    /// <summary>5-bit blocks of 32 with an fp16 scale and minimum.</summary>
    Q5_1 = 7,

    /// <summary>8-bit blocks of 32 with an fp16 scale (34 bytes per block).</summary>
    Q8_0 = 8,

    /// <summary>8-bit blocks of 32 with scale and sum.</summary>
    Q8_1 = 9,

    /// <summary>2-bit k-quant (super-blocks of 256).</summary>
    Q2_K = 10,

    /// <summary>3-bit k-quant.</summary>
    Q3_K = 11,

    /// <summary>4-bit k-quant.</summary>
    Q4_K = 12,

    /// <summary>5-bit k-quant.</summary>
    Q5_K = 13,

    /// <summary>6-bit k-quant.</summary>
    Q6_K = 14,

    /// <summary>8-bit k-quant.</summary>
    Q8_K = 15,

    /// <summary>i-quant 2-bit XXS.</summary>
    IQ2_XXS = 16,

    /// <summary>i-quant 2-bit XS.</summary>
    IQ2_XS = 17,

    /// <summary>i-quant 3-bit XXS.</summary>
    IQ3_XXS = 18,

    /// <summary>i-quant 1-bit S.</summary>
    IQ1_S = 19,

    /// <summary>i-quant 4-bit non-linear.</summary>
    IQ4_NL = 20,

    /// <summary>i-quant 3-bit S.</summary>
    IQ3_S = 21,

    /// <summary>i-quant 2-bit S.</summary>
    IQ2_S = 22,

    /// <summary>i-quant 4-bit XS.</summary>
    IQ4_XS = 23,

    /// <summary>Signed 8-bit integer.</summary>
    I8 = 24,

    /// <summary>Signed 16-bit integer.</summary>
    I16 = 25,

    /// <summary>Signed 32-bit integer.</summary>
    I32 = 26,

    /// <summary>Signed 64-bit integer.</summary>
    I64 = 27,

    /// <summary>IEEE 754 binary64.</summary>
    F64 = 28,

    /// <summary>i-quant 1-bit M.</summary>
    IQ1_M = 29,

    /// <summary>bfloat16.</summary>
    BF16 = 30,

    /// <summary>Ternary 1.69-bit.</summary>
    TQ1_0 = 34,

    /// <summary>Ternary 2-bit.</summary>
    TQ2_0 = 35,

    /// <summary>MX FP4 blocks of 32.</summary>
    MXFP4 = 39,
}
