using Petals.Tensors;

namespace Petals.Backends.Cpu.Kernels.Quant;

/// <summary>
/// One block-quantized weight storage (a ggml type or NF4): its block geometry and a decoder from one block to fp32.
/// The decoders of every path produce bit-identical values (each weight is one rounding of its exact value).
/// </summary>
internal unsafe interface IQuantFormat
{
    /// <summary>The storage type.</summary>
    static abstract TensorDType DType { get; }

    /// <summary>Weights per block.</summary>
    static abstract int BlockElements { get; }

    /// <summary>Bytes per block.</summary>
    static abstract int BlockBytes { get; }

    /// <summary>Decodes the block at <paramref name="block"/> into <see cref="BlockElements"/> floats at <paramref name="dst"/>.</summary>
    static abstract void Dequantize(byte* block, float* dst, KernelPath path);

    /// <summary>Whether <see cref="FusedDot"/> exists for this format.</summary>
    static virtual bool HasFusedDot => false;

    /// <summary>The integer dot product of a row of <paramref name="k"/> weights with quantized inputs (<see cref="FusedDots"/>).</summary>
    static virtual float FusedDot(byte* row, int k, in Q8Activations x) => throw new NotSupportedException();
}
