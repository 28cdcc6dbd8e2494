namespace Petals.Tensors;

/// <summary>Element types of tensors held in memory or on the wire.</summary>
public enum TensorDType
{
    /// <summary>IEEE 754 binary32.</summary>
    F32 = 0,

    /// <summary>IEEE 754 binary16.</summary>
    F16 = 1,

    /// <summary>bfloat16 (the upper 16 bits of a binary32).</summary>
    BF16 = 2,

    /// <summary>GGML Q8_0: blocks of 32 int8 values with one fp16 scale (34 bytes per block).</summary>
    Q8_0 = 3,

    /// <summary>Signed 8-bit integers.</summary>
    I8 = 4,

    /// <summary>Signed 32-bit integers.</summary>
    I32 = 5,

    /// <summary>Signed 64-bit integers.</summary>
    I64 = 6,

    /// <summary>GGML Q4_0: blocks of 32 4-bit values (offset 8) with one fp16 scale (18 bytes per block).</summary>
    Q4_0 = 7,

    /// <summary>GGML Q4_1: blocks of 32 4-bit values with an fp16 scale and an fp16 minimum (20 bytes per block).</summary>
    Q4_1 = 8,

    /// <summary>GGML Q5_0: blocks of 32 5-bit values (offset 16) with one fp16 scale (22 bytes per block).</summary>
    Q5_0 = 9,

    /// <summary>GGML Q5_1: blocks of 32 5-bit values with an fp16 scale and an fp16 minimum (24 bytes per block).</summary>
    Q5_1 = 10,

    /// <summary>GGML Q2_K: super-blocks of 256 2-bit values, 16 sub-blocks with 4-bit scales and minimums (84 bytes).</summary>
    Q2_K = 11,

    /// <summary>GGML Q3_K: super-blocks of 256 3-bit values, 16 sub-blocks with 6-bit scales (110 bytes).</summary>
    Q3_K = 12,

    /// <summary>GGML Q4_K: super-blocks of 256 4-bit values, 8 sub-blocks with 6-bit scales and minimums (144 bytes).</summary>
    Q4_K = 13,

    /// <summary>GGML Q5_K: super-blocks of 256 5-bit values, 8 sub-blocks with 6-bit scales and minimums (176 bytes).</summary>
    Q5_K = 14,

    /// <summary>GGML Q6_K: super-blocks of 256 6-bit values, 16 sub-blocks with 8-bit scales (210 bytes).</summary>
    Q6_K = 15,

    /// <summary>
    /// QLoRA's 4-bit NormalFloat: blocks of 64 values, an fp16 absmax scale followed by 32 bytes of 4-bit codes into the
    /// NF4 table (element <c>i</c> in the low nibble of byte <c>i</c>, element <c>32 + i</c> in its high nibble, as ggml packs
    /// its 4-bit blocks): 34 bytes per block.
    /// </summary>
    NF4 = 16,
}
