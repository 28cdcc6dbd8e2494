using System.Runtime.InteropServices;
using Petals.Backends.Cpu.Kernels;
using Petals.Tensors;

namespace Petals.Backends.Cpu.Linear;

/// <summary>
/// Quantizes fp32/fp16/bf16 linear weights when a server loads them (<see cref="CpuExecutorOptions.Quantization"/>), rows
/// in parallel, into an owned packed copy: what stays resident is the packed bytes only (the source pages of a mapped
/// file become reclaimable page cache).
/// </summary>
/// <remarks>
/// A block format needs rows whose length its block divides. When it does not (the 64- and 172-wide rows of a tiny
/// model under a 256-element k-quant), the tensor falls back to Q8_0 if 32 divides its rows, else it keeps its stored
/// type, as llama.cpp's quantizer does; <see cref="Execution.ExecutorWeightsInfo.BytesByDType"/> shows what each type holds.
/// Weights that are already block-quantized are never re-quantized: asking for another quantization of them is an error.
/// </remarks>
internal static unsafe class LoadQuantizer
{
    /// <summary>The packed type a quantization produces (<see cref="TensorDType.I8"/> for per-channel int8).</summary>
    public static TensorDType Target(WeightQuantization quantization)
    {
        if (quantization == WeightQuantization.PerChannelInt8)
        {
            return TensorDType.I8;
        }

        if (quantization == WeightQuantization.Nf4)
        {
            return TensorDType.NF4;
        }

        if (quantization == WeightQuantization.Q8_0)
        {
            return TensorDType.Q8_0;
        }

        if (quantization == WeightQuantization.Q4_K)
        {
            return TensorDType.Q4_K;
        }

        throw new ArgumentException($"Quantization '{quantization}' has no packed type.", nameof(quantization));
    }

    /// <summary>The type a tensor of <paramref name="stored"/> rows of <paramref name="inFeatures"/> ends up in under <paramref name="quantization"/>.</summary>
    /// <exception cref="InvalidDataException">When the tensor is stored block-quantized in another type than the one asked for.</exception>
    public static TensorDType Choose(string source, string name, TensorDType stored, int inFeatures, WeightQuantization quantization)
    {
        if (quantization == WeightQuantization.None)
        {
            return stored;
        }

        var target = Target(quantization);
        if (stored.IsBlockQuantized())
        {
            if (stored == target)
            {
                return stored;
            }

            throw new InvalidDataException(
                $"{source}: tensor '{name}' is stored as {stored}; quantization '{quantization}' needs F32, F16 or BF16 weights (a quantized tensor is not re-quantized). Serve the file with quantization 'none' to keep its own types.");
        }

        if (target == TensorDType.I8 || inFeatures % target.BlockElements() == 0)
        {
            return target;
        }

        return inFeatures % TensorDType.Q8_0.BlockElements() == 0 ? TensorDType.Q8_0 : stored;
    }

    /// <summary>
    /// Creates the layer of a dense tensor quantized to <paramref name="target"/> (rows in parallel on <paramref name="threads"/>
    /// threads), into huge-page memory (<see cref="Native.HugePages"/>) when <paramref name="hugePages"/> is set.
    /// </summary>
    public static LinearLayer Quantize(string name, LinearLayer dense, TensorDType target, int threads, bool hugePages = false)
    {
        var rows = dense.OutFeatures;
        var k = dense.InFeatures;
        var rowBytes = target == TensorDType.I8 ? Int8Rows.RowBytes(k) : (nint)target.ByteSize(k);
        var length = checked((int)(rowBytes * rows));
        var owner = hugePages ? Native.HugePages.Allocate(length) : null;
        try
        {
            var memory = owner?.Memory ?? GC.AllocateUninitializedArray<byte>(length, pinned: true);
            Fill(dense, target, threads, rows, k, rowBytes, memory);
            return target == TensorDType.I8 ? LinearLayers.CreateInt8(name, memory, rows, k, owner) : LinearLayers.Create(name, target, memory, rows, k, owner);
        }
        catch
        {
            owner?.Dispose();
            throw;
        }
    }

    private static void Fill(LinearLayer dense, TensorDType target, int threads, int rows, int k, nint rowBytes, Memory<byte> packed)
    {
        Parallel.For(
            0,
            threads,
            new ParallelOptions { MaxDegreeOfParallelism = threads },
            part =>
            {
                var (start, end) = Threading.WorkerPool.Slice(rows, part, threads, 1);
                var row = new float[k];
                var scale = new float[1];
                fixed (float* pr = row)
                {
                    for (var r = start; r < end; r++)
                    {
                        dense.DequantizeRow(r, pr);
                        var dst = packed.Span.Slice((int)(r * rowBytes), (int)rowBytes);
                        if (target == TensorDType.I8)
                        {
                            BlockQuantization.QuantizeRowsInt8(row, 1, k, MemoryMarshal.Cast<byte, sbyte>(dst[sizeof(float)..]), scale);
                            MemoryMarshal.Write(dst, scale[0]);
                        }
                        else
                        {
                            BlockQuantization.Quantize(target, row, dst);
                        }
                    }
                }
            });
    }
}
