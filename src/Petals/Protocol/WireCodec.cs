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
}
