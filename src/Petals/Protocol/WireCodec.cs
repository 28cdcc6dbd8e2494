namespace Petals.Protocol;

/// <summary>The wire form of a floating-point tensor (docs/wire-protocol.md, section 3).</summary>
public enum WireCodec : byte
{
    /// <summary>IEEE binary32, 4 bytes per element, exact.</summary>
    Fp32 = 0,

    /// <summary>IEEE binary16, 2 bytes per element, round to nearest even.</summary>
    Fp16 = 1,

    /// <summary>bfloat16, 2 bytes per element, round to nearest even.</summary>
    Bf16 = 2,

    /// <summary>
    /// 8-bit blockwise absmax (protocol 1.2, docs/wire-protocol.md §3.1): per block of 64 elements one fp32 scale
    /// (absmax / 127) and one signed byte per element, round to nearest even; 1.0625 bytes per element. Lossy: each
    /// element within <c>absmax_block / 254 · (1 + 2^-14) + 2^-140</c>; a non-finite element arrives as NaN.
    /// </summary>
    Int8Blockwise = 3,
}
