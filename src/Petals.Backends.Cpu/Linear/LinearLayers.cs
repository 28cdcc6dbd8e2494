using Petals.Backends.Cpu.Kernels;
using Petals.Backends.Cpu.Kernels.Quant;
using Petals.Tensors;

namespace Petals.Backends.Cpu.Linear;

/// <summary>Creates the <see cref="LinearLayer"/> that serves a weight tensor in its stored type.</summary>
internal static class LinearLayers
{
    /// <summary>Whether weights of <paramref name="dtype"/> can be served without conversion.</summary>
    public static bool Supports(TensorDType dtype) => dtype is TensorDType.F32 or TensorDType.BF16 or TensorDType.F16 || dtype.IsBlockQuantized();

    /// <summary>A layer over <paramref name="data"/> (<paramref name="outFeatures"/> rows of <paramref name="inFeatures"/> elements of <paramref name="dtype"/>); <paramref name="owner"/>, when given, is disposed with the layer.</summary>
    /// <exception cref="ArgumentException">When the type is not servable or the size does not match.</exception>
    public static LinearLayer Create(string name, TensorDType dtype, ReadOnlyMemory<byte> data, int outFeatures, int inFeatures, IDisposable? owner = null) => dtype switch
    {
        TensorDType.F32 or TensorDType.BF16 or TensorDType.F16 => new DenseLinearLayer(name, dtype, data, outFeatures, inFeatures, owner),
        TensorDType.Q8_0 => new QuantizedLinearLayer<QuantRows<Q8_0Format>>(name, dtype, data, outFeatures, inFeatures, owner),
        TensorDType.Q4_0 => new QuantizedLinearLayer<QuantRows<Q4_0Format>>(name, dtype, data, outFeatures, inFeatures, owner),
        TensorDType.Q4_1 => new QuantizedLinearLayer<QuantRows<Q4_1Format>>(name, dtype, data, outFeatures, inFeatures, owner),
        TensorDType.Q5_0 => new QuantizedLinearLayer<QuantRows<Q5_0Format>>(name, dtype, data, outFeatures, inFeatures, owner),
        TensorDType.Q5_1 => new QuantizedLinearLayer<QuantRows<Q5_1Format>>(name, dtype, data, outFeatures, inFeatures, owner),
        TensorDType.Q2_K => new QuantizedLinearLayer<QuantRows<Q2_KFormat>>(name, dtype, data, outFeatures, inFeatures, owner),
        TensorDType.Q3_K => new QuantizedLinearLayer<QuantRows<Q3_KFormat>>(name, dtype, data, outFeatures, inFeatures, owner),
        TensorDType.Q4_K => new QuantizedLinearLayer<QuantRows<Q4_KFormat>>(name, dtype, data, outFeatures, inFeatures, owner),
        TensorDType.Q5_K => new QuantizedLinearLayer<QuantRows<Q5_KFormat>>(name, dtype, data, outFeatures, inFeatures, owner),
        TensorDType.Q6_K => new QuantizedLinearLayer<QuantRows<Q6_KFormat>>(name, dtype, data, outFeatures, inFeatures, owner),
        TensorDType.NF4 => new QuantizedLinearLayer<QuantRows<Nf4Format>>(name, dtype, data, outFeatures, inFeatures, owner),
        _ => throw new ArgumentException($"Tensor '{name}': dtype {dtype} cannot be served by the CPU executor.", nameof(dtype)),
    };

    /// <summary>A per-output-channel int8 layer over rows laid out as <see cref="Int8Rows"/>.</summary>
    public static LinearLayer CreateInt8(string name, ReadOnlyMemory<byte> rows, int outFeatures, int inFeatures, IDisposable? owner = null) =>
        new QuantizedLinearLayer<Int8Rows>(name, TensorDType.I8, rows, outFeatures, inFeatures, owner);
}
