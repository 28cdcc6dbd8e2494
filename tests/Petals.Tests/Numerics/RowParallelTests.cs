using System.Runtime.InteropServices;
using Petals.Numerics;
using Petals.Tensors;

namespace Petals.Tests.Numerics;

public sealed class RowParallelTests
{
    private sealed class CountingWork(int rows) : IRowWork
    {
        public int[] Hits { get; } = new int[rows];

        public void Execute(int part, int start, int end)
        {
            for (var r = start; r < end; r++)
            {
                Interlocked.Increment(ref Hits[r]);
            }
        }
    }

    [Theory]
    [InlineData(2, 1)]
    [InlineData(2, 7)]
    [InlineData(3, 1000)]
    [InlineData(4, 4097)]
    public void EveryRowRunsExactlyOncePerRun(int parts, int rows)
    {
        using var runner = new RowParallel(parts);
        var work = new CountingWork(rows);
        for (var run = 0; run < 200; run++)
        {
            Assert.True(runner.TryRun(work, rows));
        }

        Assert.All(work.Hits, h => Assert.Equal(200, h));
    }

    [Fact]
    public void AFailingPartIsRethrownAndTheRunnerStaysUsable()
    {
        using var runner = new RowParallel(3);
        var failing = new FailingWork();
        var ex = Assert.Throws<InvalidOperationException>(() => runner.TryRun(failing, 30));
        Assert.Equal("part 1 failed", ex.Message);

        var work = new CountingWork(30);
        Assert.True(runner.TryRun(work, 30));
        Assert.All(work.Hits, h => Assert.Equal(1, h));
    }

    [Fact]
    public async Task ASecondConcurrentRunIsRefusedSoTheCallerWorksSerially()
    {
        using var runner = new RowParallel(2);
        using var inside = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        var blocking = new BlockingWork(inside, release);
        var first = Task.Run(() => runner.TryRun(blocking, 2), TestContext.Current.CancellationToken);
        Assert.True(inside.Wait(TimeSpan.FromSeconds(10), TestContext.Current.CancellationToken));

        Assert.False(runner.TryRun(new CountingWork(4), 4));

        release.Set();
        Assert.True(await first.WaitAsync(TimeSpan.FromSeconds(10), TestContext.Current.CancellationToken));
    }

    [Fact]
    public async Task ConcurrentProductsOnOneMatrixAllEqualTheSerialResult()
    {
        const int rows = 2048, cols = 640; // 1.3M multiply-adds: above the parallel threshold
        var rng = new Random(5);
        var bits = new ushort[rows * cols];
        for (var i = 0; i < bits.Length; i++)
        {
            bits[i] = DenseMatrix.SingleToBFloat16((float)(rng.NextDouble() - 0.5));
        }

        var tensor = new WeightTensor(new TensorDescriptor("w", TensorDType.BF16, [rows, cols]), MemoryMarshal.AsBytes(bits.AsSpan()).ToArray());
        var matrix = new DenseMatrix(tensor, rows, cols);
        var x = Enumerable.Range(0, cols).Select(i => MathF.Sin(i)).ToArray();
        var expected = new float[rows];
        var row = new float[cols];
        for (var r = 0; r < rows; r++)
        {
            matrix.ReadRow(r, row);
            var sum = 0.0;
            for (var c = 0; c < cols; c++)
            {
                sum += row[c] * (double)x[c];
            }

            expected[r] = (float)sum;
        }

        var results = await Task.WhenAll(Enumerable.Range(0, 6).Select(_ => Task.Run(() =>
        {
            var y = new float[rows];
            for (var i = 0; i < 20; i++)
            {
                matrix.MultiplyVector(x, y);
            }

            return y;
        }, TestContext.Current.CancellationToken)));

        foreach (var y in results)
        {
            for (var r = 0; r < rows; r++)
            {
                Assert.True(Math.Abs(expected[r] - y[r]) <= 1e-4f, $"row {r}: {y[r]} vs {expected[r]}");
            }
        }
    }

    private sealed class FailingWork : IRowWork
    {
        public void Execute(int part, int start, int end)
        {
            if (part == 1)
            {
                throw new InvalidOperationException("part 1 failed");
            }
        }
    }

    private sealed class BlockingWork(ManualResetEventSlim inside, ManualResetEventSlim release) : IRowWork
    {
        public void Execute(int part, int start, int end)
        {
            inside.Set();
            release.Wait(TimeSpan.FromSeconds(10));
        }
    }
}
