using Petals.Generation;
using Petals.Models;
using Petals.Tensors;

namespace Petals.Tests.Generation;

public sealed class EmbeddingTests
{
    [Theory]
    [InlineData(TensorDType.F32)]
    [InlineData(TensorDType.BF16)]
    public async Task MeanAndLastTokenPoolingEqualAReferenceOverTheWholeSequence(TensorDType dtype)
    {
        using var fixture = new RandomModelFixture(dtype, tied: false);
        using var model = fixture.CreateModel(new BlockRange(0, 2), new BlockRange(2, 4));
        int[] ids = [1, 5, 17, 33, 8, 60, 2, 41];
        var ct = TestContext.Current.CancellationToken;

        var mean = await model.EmbedAsync(ids, EmbeddingPooling.Mean, ct);
        var last = await model.EmbedAsync(ids, EmbeddingPooling.LastToken, ct);

        // Reference: every position through a fresh session, the final RMSNorm in float64 by hand.
        var h = fixture.Config.HiddenSize;
        var hidden = new float[ids.Length * h];
        model.Head.Embed(ids, hidden);
        await using (var session = await model.Blocks.OpenSessionAsync(1, ids.Length, ct))
        {
            await session.ForwardAsync(hidden, ids.Length, ct);
        }

        var norm = model.Head.NormWeight.ToArray();
        var expectedMean = new double[h];
        var expectedLast = new double[h];
        for (var t = 0; t < ids.Length; t++)
        {
            var row = hidden.AsSpan(t * h, h);
            var squares = 0.0;
            foreach (var v in row)
            {
                squares += (double)v * v;
            }

            var scale = 1.0 / Math.Sqrt((squares / h) + model.Head.NormEpsilon);
            for (var i = 0; i < h; i++)
            {
                var normed = row[i] * scale * norm[i];
                expectedMean[i] += normed / ids.Length;
                if (t == ids.Length - 1)
                {
                    expectedLast[i] = normed;
                }
            }
        }

        Assert.Equal(h, mean.Length);
        Assert.Equal(h, last.Length);
        for (var i = 0; i < h; i++)
        {
            Assert.Equal(expectedMean[i], mean[i], 1e-4);
            Assert.Equal(expectedLast[i], last[i], 1e-4);
        }

        Assert.NotEqual(mean, last);
    }

    [Fact]
    public async Task OneTokenGivesTheSameVectorForBothPoolingsAndTheSameTextTheSameVector()
    {
        using var fixture = new RandomModelFixture(TensorDType.F32, tied: true);
        using var model = fixture.CreateModel();
        var ct = TestContext.Current.CancellationToken;

        var mean = await model.EmbedAsync([7], EmbeddingPooling.Mean, ct);
        var last = await model.EmbedAsync([7], EmbeddingPooling.LastToken, ct);
        var again = await model.EmbedAsync([7], EmbeddingPooling.Mean, ct);

        Assert.Equal(mean, last);
        Assert.Equal(mean, again);
    }

    [Fact]
    public async Task BadInputsAreRefusedWithPreciseErrors()
    {
        using var fixture = new RandomModelFixture(TensorDType.F32, tied: false);
        using var model = fixture.CreateModel();
        var ct = TestContext.Current.CancellationToken;

        var empty = await Assert.ThrowsAsync<ArgumentException>(() => model.EmbedAsync([], EmbeddingPooling.Mean, ct));
        Assert.Contains("At least one token", empty.Message, StringComparison.Ordinal);

        var outside = await Assert.ThrowsAsync<ArgumentException>(() => model.EmbedAsync([1, 97], EmbeddingPooling.Mean, ct));
        Assert.Contains("Token 1 is 97, outside the vocabulary [0, 97)", outside.Message, StringComparison.Ordinal);

        var tooLong = await Assert.ThrowsAsync<ArgumentException>(() => model.EmbedAsync(new int[257], EmbeddingPooling.Mean, ct));
        Assert.Contains("the text (257 tokens) needs 257 positions, more than the model's context of 256", tooLong.Message, StringComparison.Ordinal);

        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => model.EmbedAsync([1], (EmbeddingPooling)7, ct));
    }
}
