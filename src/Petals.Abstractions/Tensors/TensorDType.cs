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
}
