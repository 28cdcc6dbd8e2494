namespace Petals.Protocol;

/// <summary>A set of <see cref="WireCodec"/> values: bit n stands for codec n.</summary>
[Flags]
public enum WireCodecs : byte
{
    /// <summary>No codec.</summary>
    None = 0,

    /// <summary><see cref="WireCodec.Fp32"/>.</summary>
    Fp32 = 1 << (int)WireCodec.Fp32,

    /// <summary><see cref="WireCodec.Fp16"/>.</summary>
    Fp16 = 1 << (int)WireCodec.Fp16,

    /// <summary><see cref="WireCodec.Bf16"/>.</summary>
    Bf16 = 1 << (int)WireCodec.Bf16,

    /// <summary><see cref="WireCodec.Int8Blockwise"/> (protocol 1.2 on).</summary>
    Int8Blockwise = 1 << (int)WireCodec.Int8Blockwise,

    /// <summary>The codecs of protocol 1.0 and 1.1 (what a server advertises to a peer that negotiated a minor version below 2).</summary>
    Protocol10 = Fp32 | Fp16 | Bf16,

    /// <summary>Every codec of protocol 1.2.</summary>
    All = Fp32 | Fp16 | Bf16 | Int8Blockwise,
}
