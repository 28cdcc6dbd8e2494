using Petals.Backends.Cpu.Native;
using Petals.Tensors;

namespace Petals.Backends.Cpu.Linear;

/// <summary>
/// A linear layer without bias, <c>y = x W^T</c> with <c>W</c> of shape <c>[OutFeatures, InFeatures]</c>.
/// </summary>
/// <remarks>
/// The executor only talks to this abstraction: dense weights (<see cref="DenseLinearLayer"/>) and packed ones
/// (<see cref="QuantizedLinearLayer{TRows}"/>: GGUF block types, NF4, per-channel int8) differ only in their row kernels, and
/// <see cref="DequantizeRow"/> gives a backward pass (<c>x_grad = y_grad W</c>) the rows of any storage.
/// Thread-safe: the weights are read-only, so disjoint row ranges may run concurrently.
/// </remarks>
internal abstract unsafe class LinearLayer : IDisposable
{
    protected LinearLayer(string name, int outFeatures, int inFeatures, IDisposable? owner = null)
    {
        Name = name;
        OutFeatures = outFeatures;
        InFeatures = inFeatures;
        _owner = owner;
    }

    private readonly IDisposable? _owner;

    /// <summary>The tensor name, for messages.</summary>
    public string Name { get; }

    /// <summary>Output features (weight rows).</summary>
    public int OutFeatures { get; }

    /// <summary>Input features (weight columns).</summary>
    public int InFeatures { get; }

    /// <summary>The storage type of the weights.</summary>
    public abstract TensorDType DType { get; }

    /// <summary>Computes output columns <c>[rowStart, rowEnd)</c> of <c>y[m, ldy] (+)= x[m, InFeatures] W^T</c>.</summary>
    public abstract void ForwardRows(float* x, int m, float* y, int ldy, int rowStart, int rowEnd, bool accumulate);

    /// <summary>
    /// Computes output columns <c>[rowStart, rowEnd)</c> of <c>y[m, ldy] (+)= x W^T</c> from inputs packed by
    /// <see cref="Kernels.PackedGemm.PackInput"/> (the compute-bound path for many tokens).
    /// </summary>
    /// <param name="xp">The packed inputs.</param>
    /// <param name="m">Tokens.</param>
    /// <param name="y">Outputs.</param>
    /// <param name="ldy">Row stride of <paramref name="y"/>.</param>
    /// <param name="rowStart">First output column.</param>
    /// <param name="rowEnd">Output column past the last.</param>
    /// <param name="accumulate">Add to <paramref name="y"/>.</param>
    /// <param name="scratch">The calling thread's <see cref="Kernels.PackedGemm.ScratchFloats"/> floats.</param>
    public abstract void ForwardRowsPacked(float* xp, int m, float* y, int ldy, int rowStart, int rowEnd, bool accumulate, float* scratch);

    /// <summary>Bytes the weights occupy in memory (scales included).</summary>
    public abstract long StoredBytes { get; }

    /// <summary>
    /// Widens weight row <paramref name="row"/> to <see cref="InFeatures"/> fp32 values at <paramref name="destination"/>: what a
    /// backward pass (<c>dX = dY W</c>) or a check needs from any storage, one row at a time.
    /// </summary>
    public abstract void DequantizeRow(int row, float* destination);

    /// <summary>Input columns a <see cref="InputGradientColumns"/> slice must start on (the block size of block formats, else 1).</summary>
    public abstract int ColumnAlignment { get; }

    /// <summary>
    /// The frozen-weight backward pass for input columns <c>[colStart, colEnd)</c>: <c>dx[m, InFeatures] (+)= dy[m, OutFeatures] W</c>,
    /// reading the weights in their stored form (dequantized a chunk at a time, fused); threads split the columns on
    /// <see cref="ColumnAlignment"/> boundaries.
    /// </summary>
    public abstract void InputGradientColumns(float* dy, int m, float* dx, int colStart, int colEnd, bool accumulate);

    /// <summary>
    /// The compute-bound form of <see cref="InputGradientColumns"/> for many tokens (<see cref="Kernels.InputGradientGemm"/>):
    /// <c>dx[m, InFeatures] (+)= dy W</c> for input columns <c>[colStart, colEnd)</c> from output gradients packed by
    /// <see cref="Kernels.PackedGemm.PackInput"/>; threads split the columns on
    /// <see cref="Kernels.InputGradientGemm.ColumnChunk"/>(<see cref="ColumnAlignment"/>) boundaries.
    /// </summary>
    /// <param name="dyp">The packed output gradients (<c>k = OutFeatures</c>).</param>
    /// <param name="m">Tokens.</param>
    /// <param name="dx">Input gradients <c>[m, InFeatures]</c>.</param>
    /// <param name="colStart">First input column.</param>
    /// <param name="colEnd">Input column past the last.</param>
    /// <param name="accumulate">Add to <paramref name="dx"/>.</param>
    /// <param name="scratch">The calling thread's <see cref="Kernels.InputGradientGemm.ScratchFloats"/> floats.</param>
    public abstract void InputGradientColumnsPacked(float* dyp, int m, float* dx, int colStart, int colEnd, bool accumulate, float* scratch);

    /// <summary>Computes the whole product with a native BLAS when this storage allows it; returns <see langword="false"/> otherwise.</summary>
    public virtual bool TryForwardNative(NativeBlas blas, float* x, int m, float* y, int ldy, bool accumulate) => false;

    /// <summary>Releases pinned weight memory.</summary>
    public void Dispose()
    {
        Dispose(true);
        GC.SuppressFinalize(this);
    }

    /// <summary>Releases resources: the owner of the weight memory, when the layer was given one.</summary>
    protected virtual void Dispose(bool disposing)
    {
        if (disposing)
        {
            _owner?.Dispose();
        }
    }
}
