using Petals.Training;

namespace Petals.Tests.Training;

public sealed class DataLoaderTests
{
    private static readonly TextExample[] Examples = [.. Enumerable.Range(0, 7).Select(i => new TextExample(new[] { 1, 10 + i, 20 + i }[..(2 + (i % 2))], null, i + 1))];

    [Fact]
    public void EachEpochVisitsEveryExampleOnceInASeededOrder()
    {
        var loader = new DataLoader(Examples, batchSize: 7, sequenceLength: 4, seed: 9, padId: 2);
        var epoch0 = loader.GetBatch(0);
        var epoch1 = loader.GetBatch(1);
        Assert.Equal(Enumerable.Range(10, 7), Seconds(epoch0).Order());
        Assert.Equal(Enumerable.Range(10, 7), Seconds(epoch1).Order());
        Assert.NotEqual(Seconds(epoch0), Seconds(epoch1));
        Assert.NotEqual(Seconds(epoch0), Seconds(new DataLoader(Examples, 7, 4, seed: 10, padId: 2).GetBatch(0)));
    }

    [Fact]
    public void ABatchIsAPureFunctionOfTheStep()
    {
        var a = new DataLoader(Examples, 3, 4, 1, 2);
        var b = new DataLoader(Examples, 3, 4, 1, 2);
        for (var step = 0; step < 6; step++)
        {
            Assert.Equal(a.GetBatch(step).TokenIds, b.GetBatch(step).TokenIds);
        }

        Assert.Equal(a.GetBatch(5).TokenIds, a.GetBatch(5).TokenIds);
    }

    [Fact]
    public void SequencesArePaddedAfterTheirTokens()
    {
        var batch = TrainingBatch.From([Examples[0], Examples[1]], 4, padId: 2);
        Assert.Equal([1, 10, 2, 2, 1, 11, 21, 2], batch.TokenIds);
        Assert.Equal([2, 3], batch.Lengths);
        Assert.Equal(5, batch.TokenCount);
        Assert.Null(batch.Labels);
    }

    private static int[] Seconds(TrainingBatch batch) => [.. Enumerable.Range(0, batch.BatchSize).Select(b => batch.TokenIds[(b * batch.SequenceLength) + 1])];
}
