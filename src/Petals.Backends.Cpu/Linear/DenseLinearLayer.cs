using System.Buffers;
using Petals.Backends.Cpu.Kernels;
using Petals.Backends.Cpu.Native;
using Petals.Tensors;

namespace Petals.Backends.Cpu.Linear;

/// <summary>A linear layer whose weights are F32, BF16 or F16, kept in their own type (a pinned view of the source memory).</summary>
internal sealed unsafe class DenseLinearLayer : LinearLayer
{
    private readonly TensorDType _dtype;
    private MemoryHandle _pin;
    private readonly byte* _data;

    public DenseLinearLayer(string name, TensorDType dtype, ReadOnlyMemory<byte> data, int outFeatures, int inFeatures, IDisposable? owner = null)
        : base(name, outFeatures, inFeatures, owner)
    {
        if (dtype is not (TensorDType.F32 or TensorDType.BF16 or TensorDType.F16))
        {
            throw new ArgumentException($"Tensor '{name}': dtype {dtype} is not a dense floating-point type.", nameof(dtype));
        }

        _dtype = dtype;
        _pin = data.Pin();
        _data = (byte*)_pin.Pointer;
        StoredBytes = data.Length;
        _finiteF16 = dtype == TensorDType.F16 && F16FiniteFormat.AllFinite(data.Span);
    }

    /// <summary>F16 weights without infinities or NaNs widen with <see cref="F16FiniteFormat"/> (4 vector operations instead of 11).</summary>
    private readonly bool _finiteF16;

    public override long StoredBytes { get; }

    public override TensorDType DType => _dtype;

    /// <summary>The start of the weight bytes.</summary>
    public byte* Data => _data;

    public override void ForwardRows(float* x, int m, float* y, int ldy, int rowStart, int rowEnd, bool accumulate)
    {
        switch (_dtype)
        {
            case TensorDType.F32:
                LinearKernels.Compute<F32Format>(x, m, InFeatures, _data, y, ldy, rowStart, rowEnd, accumulate);
                break;
            case TensorDType.BF16 when m < 4 && Bf16PairKernels.IsSupported:
                // Decode: the pair kernel widens with in-lane operations only (about 1.3x the streaming rate).
                Bf16PairKernels.Compute(x, m, InFeatures, _data, y, ldy, rowStart, rowEnd, accumulate);
                break;
            case TensorDType.BF16:
                LinearKernels.Compute<Bf16Format>(x, m, InFeatures, _data, y, ldy, rowStart, rowEnd, accumulate);
                break;
            default:
                if (_finiteF16)
                {
                    LinearKernels.Compute<F16FiniteFormat>(x, m, InFeatures, _data, y, ldy, rowStart, rowEnd, accumulate);
                }
                else
                {
                    LinearKernels.Compute<F16Format>(x, m, InFeatures, _data, y, ldy, rowStart, rowEnd, accumulate);
                }

                break;
        }
    }

    public override void ForwardRowsPacked(float* xp, int m, float* y, int ldy, int rowStart, int rowEnd, bool accumulate, float* scratch)
    {
        switch (_dtype)
        {
            case TensorDType.F32:
                PackedGemm.Compute<DenseRows<F32Format>>(xp, m, InFeatures, _data, y, ldy, rowStart, rowEnd, accumulate, scratch);
                break;
            case TensorDType.BF16:
                PackedGemm.Compute<DenseRows<Bf16Format>>(xp, m, InFeatures, _data, y, ldy, rowStart, rowEnd, accumulate, scratch);
                break;
            default:
                if (_finiteF16)
                {
                    PackedGemm.Compute<DenseRows<F16FiniteFormat>>(xp, m, InFeatures, _data, y, ldy, rowStart, rowEnd, accumulate, scratch);
                }
                else
                {
                    PackedGemm.Compute<DenseRows<F16Format>>(xp, m, InFeatures, _data, y, ldy, rowStart, rowEnd, accumulate, scratch);
                }

                break;
        }
    }

    public override int ColumnAlignment => 1;

    public override void InputGradientColumns(float* dy, int m, float* dx, int colStart, int colEnd, bool accumulate)
    {
        var path = Kernels.Quant.KernelPaths.Best;
        switch (_dtype)
        {
            case TensorDType.F32:
                Kernels.Quant.QuantKernels.InputGradient<DenseRows<F32Format>>(_data, OutFeatures, InFeatures, dy, m, dx, colStart, colEnd, accumulate, path);
                break;
            case TensorDType.BF16:
                Kernels.Quant.QuantKernels.InputGradient<DenseRows<Bf16Format>>(_data, OutFeatures, InFeatures, dy, m, dx, colStart, colEnd, accumulate, path);
                break;
            default:
                Kernels.Quant.QuantKernels.InputGradient<DenseRows<F16Format>>(_data, OutFeatures, InFeatures, dy, m, dx, colStart, colEnd, accumulate, path);
                break;
        }
    }

    public override void InputGradientColumnsPacked(float* dyp, int m, float* dx, int colStart, int colEnd, bool accumulate, float* scratch)
    {
        switch (_dtype)
        {
            case TensorDType.F32:
                InputGradientGemm.Compute<DenseRows<F32Format>>(dyp, m, OutFeatures, InFeatures, _data, dx, colStart, colEnd, accumulate, scratch);
                break;
            case TensorDType.BF16:
                InputGradientGemm.Compute<DenseRows<Bf16Format>>(dyp, m, OutFeatures, InFeatures, _data, dx, colStart, colEnd, accumulate, scratch);
                break;
            default:
                if (_finiteF16)
                {
                    InputGradientGemm.Compute<DenseRows<F16FiniteFormat>>(dyp, m, OutFeatures, InFeatures, _data, dx, colStart, colEnd, accumulate, scratch);
                }
                else
                {
                    InputGradientGemm.Compute<DenseRows<F16Format>>(dyp, m, OutFeatures, InFeatures, _data, dx, colStart, colEnd, accumulate, scratch);
                }

                break;
        }
    }

    public override void DequantizeRow(int row, float* destination)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(row);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(row, OutFeatures);
        var path = Kernels.Quant.KernelPaths.Best;
        switch (_dtype)
        {
            case TensorDType.F32:
                DenseRows<F32Format>.Widen(_data + (row * DenseRows<F32Format>.RowBytes(InFeatures)), 0, InFeatures, destination, path);
                break;
            case TensorDType.BF16:
                DenseRows<Bf16Format>.Widen(_data + (row * DenseRows<Bf16Format>.RowBytes(InFeatures)), 0, InFeatures, destination, path);
                break;
            default:
                DenseRows<F16Format>.Widen(_data + (row * DenseRows<F16Format>.RowBytes(InFeatures)), 0, InFeatures, destination, path);
                break;
        }
    }

    public override bool TryForwardNative(NativeBlas blas, float* x, int m, float* y, int ldy, bool accumulate)
    {
        if (_dtype != TensorDType.F32)
        {
            return false;
        }

        blas.MultiplyTransposed(m, OutFeatures, InFeatures, x, InFeatures, (float*)_data, InFeatures, y, ldy, accumulate);
        return true;
    }

    protected override void Dispose(bool disposing)
    {
        _pin.Dispose();
        base.Dispose(disposing);
    }
}
