using System.Buffers;
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using Petals.Tensors;

namespace Petals.Numerics;

/// <summary>
/// A read-only row-major matrix over weight bytes in F32, F16 or BF16, kept in its dtype.
/// Used by the client-side parts of a model (embeddings, LM head), which touch few rows or one
/// matrix-vector product per step.
/// </summary>
internal sealed class DenseMatrix
{
    /// <summary>Matrix-vector products with at least this many multiply-adds run on all cores.</summary>
    private const long ParallelThreshold = 1 << 20;

    private readonly ReadOnlyMemory<byte> _data;
    private MatrixVectorWork? _work;

    public DenseMatrix(WeightTensor tensor, int rows, int columns)
    {
        var d = tensor.Descriptor;
        if (d.Shape.Count != 2 || d.Shape[0] != rows || d.Shape[1] != columns)
        {
            throw new InvalidDataException($"Tensor '{d.Name}' has shape [{string.Join(", ", d.Shape)}]; expected [{rows}, {columns}].");
        }

        if (d.DType is not (TensorDType.F32 or TensorDType.F16 or TensorDType.BF16))
        {
            throw new InvalidDataException($"Tensor '{d.Name}' has dtype {d.DType}; only F32, F16 and BF16 are supported here.");
        }

        if (tensor.Data.Length != d.ByteSize)
        {
            throw new InvalidDataException($"Tensor '{d.Name}' holds {tensor.Data.Length} bytes; expected {d.ByteSize}.");
        }

        _data = tensor.Data;
        DType = d.DType;
        Rows = rows;
        Columns = columns;
        Name = d.Name;
        _work = new MatrixVectorWork(this);
    }

    public string Name { get; }

    public TensorDType DType { get; }

    public int Rows { get; }

    public int Columns { get; }

    /// <summary>Copies row <paramref name="row"/> into <paramref name="destination"/> as fp32.</summary>
    public void ReadRow(int row, Span<float> destination)
    {
        if ((uint)row >= (uint)Rows)
        {
            throw new ArgumentOutOfRangeException(nameof(row), row, $"Row {row} is outside [0, {Rows}) of tensor '{Name}'.");
        }

        var dst = destination[..Columns];
        switch (DType)
        {
            case TensorDType.F32:
                MemoryMarshal.Cast<byte, float>(_data.Span.Slice(row * Columns * 4, Columns * 4)).CopyTo(dst);
                break;
            case TensorDType.F16:
                TensorPrimitives.ConvertToSingle(MemoryMarshal.Cast<byte, Half>(_data.Span.Slice(row * Columns * 2, Columns * 2)), dst);
                break;
            default:
                BFloat16ToSingle(MemoryMarshal.Cast<byte, ushort>(_data.Span.Slice(row * Columns * 2, Columns * 2)), dst);
                break;
        }
    }

    /// <summary>
    /// <c>y[r] = dot(row r, x)</c> for every row, in parallel across cores for large matrices.
    /// </summary>
    public void MultiplyVector(ReadOnlySpan<float> x, Span<float> y)
    {
        if (x.Length != Columns || y.Length != Rows)
        {
            throw new ArgumentException($"Matrix '{Name}' [{Rows}, {Columns}] cannot multiply a vector of {x.Length} into {y.Length}.");
        }

        if ((long)Rows * Columns >= ParallelThreshold && Rows >= RowParallel.Shared.Parts * 16)
        {
            unsafe
            {
                fixed (float* px = x)
                fixed (float* py = y)
                {
                    // One cached work object per matrix: taking it (and the shared pool) fails only while another
                    // thread multiplies, in which case this call runs serially below.
                    var work = Interlocked.Exchange(ref _work, null);
                    if (work is not null)
                    {
                        try
                        {
                            work.Set(px, py);
                            if (RowParallel.Shared.TryRun(work, Rows))
                            {
                                return;
                            }
                        }
                        finally
                        {
                            work.Set(null, null);
                            _work = work;
                        }
                    }
                }
            }
        }

        var scratch = DType == TensorDType.F32 ? null : ArrayPool<float>.Shared.Rent(Columns);
        MultiplyRows(x, y, 0, Rows, scratch);
        if (scratch is not null)
        {
            ArrayPool<float>.Shared.Return(scratch);
        }
    }

    /// <summary>Rows [start, end); <paramref name="scratch"/> holds at least one row (unused for F32).</summary>
    private void MultiplyRows(ReadOnlySpan<float> x, Span<float> y, int start, int end, float[]? scratch)
    {
        if (DType == TensorDType.F32)
        {
            var all = MemoryMarshal.Cast<byte, float>(_data.Span);
            for (var r = start; r < end; r++)
            {
                y[r] = TensorPrimitives.Dot(all.Slice(r * Columns, Columns), x);
            }

            return;
        }

        var row = scratch.AsSpan(0, Columns);
        for (var r = start; r < end; r++)
        {
            ReadRow(r, row);
            y[r] = TensorPrimitives.Dot(row, x);
        }
    }

    /// <summary>Converts bfloat16 bit patterns to fp32 (exact: a bf16 is the upper half of an fp32).</summary>
    public static void BFloat16ToSingle(ReadOnlySpan<ushort> source, Span<float> destination)
    {
        var n = source.Length;
        var dst = MemoryMarshal.Cast<float, uint>(destination[..n]);
        var i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            ref var s = ref MemoryMarshal.GetReference(source);
            ref var d = ref MemoryMarshal.GetReference(dst);
            for (; i <= n - 16; i += 16)
            {
                var v = Vector256.LoadUnsafe(ref s, (nuint)i);
                var (lo, hi) = Vector256.Widen(v);
                Vector256.ShiftLeft(lo, 16).StoreUnsafe(ref d, (nuint)i);
                Vector256.ShiftLeft(hi, 16).StoreUnsafe(ref d, (nuint)(i + 8));
            }
        }

        for (; i < n; i++)
        {
            dst[i] = (uint)source[i] << 16;
        }
    }

    /// <summary>Rounds fp32 to bfloat16 bit patterns (round to nearest even; NaN stays NaN).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ushort SingleToBFloat16(float value)
    {
        var bits = BitConverter.SingleToUInt32Bits(value);
        if (float.IsNaN(value))
        {
            return (ushort)((bits >> 16) | 0x40);
        }

        var rounding = 0x7FFFu + ((bits >> 16) & 1);
        return (ushort)((bits + rounding) >> 16);
    }

    /// <summary>The row ranges of one product <c>y = W x</c>, with a row scratch per part for F16/BF16 rows.</summary>
    private sealed unsafe class MatrixVectorWork(DenseMatrix matrix) : IRowWork
    {
        private readonly float[][] _scratch = CreateScratch(matrix);
        private float* _x;
        private float* _y;

        public void Set(float* x, float* y)
        {
            _x = x;
            _y = y;
        }

        public void Execute(int part, int start, int end) =>
            matrix.MultiplyRows(new ReadOnlySpan<float>(_x, matrix.Columns), new Span<float>(_y, matrix.Rows), start, end, _scratch[part]);

        private static float[][] CreateScratch(DenseMatrix matrix)
        {
            var scratch = new float[RowParallel.Shared.Parts][];
            for (var i = 0; i < scratch.Length; i++)
            {
                scratch[i] = matrix.DType == TensorDType.F32 ? [] : new float[matrix.Columns];
            }

            return scratch;
        }
    }
}
