using Petals.Execution;

namespace Petals.Backends.Cpu.Tests;

/// <summary>Shared runs of an executor against the float64 reference.</summary>
internal static class ExecutorChecks
{
    /// <summary>A factory that uses the managed kernels only, every product split across all threads (however small).</summary>
    internal static CpuBlockExecutorFactory Managed(int threads = 2) =>
        new(new CpuExecutorOptions { NativeBlas = NativeBlasMode.Never, ThreadCount = threads, ParallelMinMultiplyAdds = 0 });

    internal static void RunStatelessAndCompare(RandomLlama model, IBlockExecutor executor, int batch, int tokens, int seed)
    {
        var h = model.Config.HiddenSize;
        var input = Accuracy.RandomHidden(batch * tokens * h, seed);
        var output = (float[])input.Clone();
        executor.Forward(output, batch, tokens, null);
        for (var b = 0; b < batch; b++)
        {
            var expected = Accuracy.Reference(model, executor.Blocks.Start, executor.Blocks.Count, input.AsSpan(b * tokens * h, tokens * h), tokens);
            Accuracy.AssertClose(output.AsSpan(b * tokens * h, tokens * h), expected, $"stateless prefill, row {b}");
        }
    }

    /// <summary>Prefill in chunks, then decode one token at a time; every output equals the reference over the whole sequence.</summary>
    internal static void RunCachedAndCompare(RandomLlama model, IBlockExecutor executor, int batch, int prefill, int chunk, int decode, int seed)
    {
        var h = model.Config.HiddenSize;
        var total = prefill + decode;
        var sequences = Accuracy.RandomHidden(batch * total * h, seed);
        var outputs = new float[batch * total * h];
        using var cache = executor.CreateCache(batch, total);
        var position = 0;
        while (position < total)
        {
            var step = position < prefill ? Math.Min(chunk, prefill - position) : 1;
            var buffer = new float[batch * step * h];
            for (var b = 0; b < batch; b++)
            {
                sequences.AsSpan(((b * total) + position) * h, step * h).CopyTo(buffer.AsSpan(b * step * h));
            }

            executor.Forward(buffer, batch, step, cache);
            for (var b = 0; b < batch; b++)
            {
                buffer.AsSpan(b * step * h, step * h).CopyTo(outputs.AsSpan(((b * total) + position) * h));
            }

            position += step;
            Assert.Equal(position, cache.Length);
        }

        for (var b = 0; b < batch; b++)
        {
            var expected = Accuracy.Reference(model, executor.Blocks.Start, executor.Blocks.Count, sequences.AsSpan(b * total * h, total * h), total);
            Accuracy.AssertClose(outputs.AsSpan(b * total * h, total * h), expected, $"cached prefill+decode, row {b}");
        }
    }
}
