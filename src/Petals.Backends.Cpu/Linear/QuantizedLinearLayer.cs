using System.Buffers;
using Petals.Backends.Cpu.Kernels;
using Petals.Backends.Cpu.Kernels.Quant;
using Petals.Tensors;

namespace Petals.Backends.Cpu.Linear;

/// <summary>
/// A linear layer whose weights stay in a packed storage (a GGUF block type, NF4 or per-channel int8): decode runs the
/// fused chunked GEMV, prefill the packed GEMM that widens one row tile at a time.
/// </summary>
/// <typeparam name="TRows">The row storage.</typeparam>
internal sealed unsafe class QuantizedLinearLayer<TRows> : LinearLayer
    where TRows : struct, IWeightRows
{
    private readonly TensorDType _dtype;
    private MemoryHandle _pin;
    private readonly byte* _data;

    /// <summary>Wraps <paramref name="data"/> (a view of a mapped file or an owned array), pinning it for the layer's lifetime.</summary>
    public QuantizedLinearLayer(string name, TensorDType dtype, ReadOnlyMemory<byte> data, int outFeatures, int inFeatures, IDisposable? owner = null)
        : base(name, outFeatures, inFeatures, owner)
    {
        var expected = TRows.RowBytes(inFeatures) * outFeatures;
        if (data.Length != expected)
        {
            throw new ArgumentException($"Tensor '{name}': {data.Length} bytes of {dtype} data; [{outFeatures}, {inFeatures}] needs {expected}.", nameof(data));
        }

        _dtype = dtype;
        _pin = data.Pin();
        _data = (byte*)_pin.Pointer;
        StoredBytes = data.Length;
    }

    public override TensorDType DType => _dtype;

    public override long StoredBytes { get; }

    public override void ForwardRows(float* x, int m, float* y, int ldy, int rowStart, int rowEnd, bool accumulate) =>
        QuantKernels.Gemv<TRows>(_data, InFeatures, x, m, y, ldy, rowStart, rowEnd, accumulate, KernelPaths.Best);

    public override void ForwardRowsPacked(float* xp, int m, float* y, int ldy, int rowStart, int rowEnd, bool accumulate, float* scratch) =>
        PackedGemm.Compute<TRows>(xp, m, InFeatures, _data, y, ldy, rowStart, rowEnd, accumulate, scratch);

    public override int ColumnAlignment => TRows.Alignment;

    public override void InputGradientColumns(float* dy, int m, float* dx, int colStart, int colEnd, bool accumulate) =>
        QuantKernels.InputGradient<TRows>(_data, OutFeatures, InFeatures, dy, m, dx, colStart, colEnd, accumulate, KernelPaths.Best);

    public override void InputGradientColumnsPacked(float* dyp, int m, float* dx, int colStart, int colEnd, bool accumulate, float* scratch) =>
        InputGradientGemm.Compute<TRows>(dyp, m, OutFeatures, InFeatures, _data, dx, colStart, colEnd, accumulate, scratch);

    public override void DequantizeRow(int row, float* destination)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(row);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(row, OutFeatures);
        TRows.Widen(_data + (row * TRows.RowBytes(InFeatures)), 0, InFeatures, destination, KernelPaths.Best);
    }

    protected override void Dispose(bool disposing)
    {
        _pin.Dispose();
        base.Dispose(disposing);
    }
}
