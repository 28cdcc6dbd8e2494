using Petals.Backends.Cpu.Native;
using Petals.Tensors;

namespace Petals.Backends.Cpu.Linear;

/// <summary>
/// A linear layer without bias, <c>y = x W^T</c> with <c>W</c> of shape <c>[OutFeatures, InFeatures]</c>.
/// </summary>
/// <remarks>
/// The executor only talks to this abstraction, so other weight storages (int8 / nf4 blocks with scales) are new
/// subclasses with their own row kernels, and a backward pass (<c>x_grad = y_grad W</c>) is a new pair of methods
/// partitioned over input columns the same way <see cref="ForwardRows"/> is partitioned over output rows.
/// Thread-safe: the weights are read-only, so disjoint row ranges may run concurrently.
/// </remarks>
internal abstract unsafe class LinearLayer : IDisposable
{
    protected LinearLayer(string name, int outFeatures, int inFeatures)
    {
        Name = name;
        OutFeatures = outFeatures;
        InFeatures = inFeatures;
    }

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

    /// <summary>Computes the whole product with a native BLAS when this storage allows it; returns <see langword="false"/> otherwise.</summary>
    public virtual bool TryForwardNative(NativeBlas blas, float* x, int m, float* y, int ldy, bool accumulate) => false;

    /// <summary>Releases pinned weight memory.</summary>
    public void Dispose()
    {
        Dispose(true);
        GC.SuppressFinalize(this);
    }

    /// <summary>Releases resources.</summary>
    protected virtual void Dispose(bool disposing)
    {
    }
}
