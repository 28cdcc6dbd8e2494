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

    /// <summary>Every codec of protocol 1.0.</summary>
    All = Fp32 | Fp16 | Bf16,
}
