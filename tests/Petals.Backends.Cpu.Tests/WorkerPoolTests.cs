using Petals.Backends.Cpu.Threading;

namespace Petals.Backends.Cpu.Tests;

/// <summary>The worker pool runs every part exactly once per dispatch, propagates failures and stops cleanly.</summary>
public sealed class WorkerPoolTests
{
    private sealed class CountingWork(int parts) : IParallelWork
    {
        public readonly int[] Counts = new int[parts];

        public void Execute(int part, int partCount)
        {
            Assert.Equal(Counts.Length, partCount);
            Interlocked.Increment(ref Counts[part]);
        }
    }

    private sealed class FailingWork(int failingPart) : IParallelWork
    {
        public void Execute(int part, int parts)
        {
            if (part == failingPart)
            {
                throw new InvalidOperationException("part " + part);
            }
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void EveryPartRunsOncePerDispatchUnderRapidAndSpacedDispatches(int threads)
    {
        using var pool = new WorkerPool(threads);
        var work = new CountingWork(threads);
        const int Dispatches = 5000;
        for (var i = 0; i < Dispatches; i++)
        {
            pool.Run(work);
            if (i % 1000 == 999)
            {
                // Let the workers fall asleep so the wake-up path is exercised too.
                Thread.Sleep(20);
            }
        }

        Assert.All(work.Counts, c => Assert.Equal(Dispatches, c));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(2)]
    public void AFailingPartIsRethrownAndThePoolStaysUsable(int failingPart)
    {
        using var pool = new WorkerPool(3);
        var ex = Assert.Throws<InvalidOperationException>(() => pool.Run(new FailingWork(failingPart)));
        Assert.Equal("part " + failingPart, ex.Message);
        var work = new CountingWork(3);
        pool.Run(work);
        Assert.All(work.Counts, c => Assert.Equal(1, c));
    }

    [Fact]
    public void DisposedPoolRefusesWork()
    {
        var pool = new WorkerPool(2);
        pool.Dispose();
        pool.Dispose();
        Assert.Throws<ObjectDisposedException>(() => pool.Run(new CountingWork(2)));
    }

    [Theory]
    [InlineData(10, 3, 1)]
    [InlineData(101, 4, 6)]
    [InlineData(5, 8, 4)]
    public void SlicesCoverTheRangeWithoutOverlapAndStayAligned(int count, int parts, int align)
    {
        var covered = new int[count];
        for (var p = 0; p < parts; p++)
        {
            var (s, e) = WorkerPool.Slice(count, p, parts, align);
            Assert.True(s <= e);
            Assert.True(s % align == 0 || s == count);
            for (var i = s; i < e; i++)
            {
                covered[i]++;
            }
        }

        Assert.All(covered, c => Assert.Equal(1, c));
    }
}
