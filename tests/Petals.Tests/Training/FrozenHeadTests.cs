using Petals.Training;

namespace Petals.Tests.Training;

/// <summary>
/// The client-side backward (final RMSNorm + LM head + cross-entropy) against central finite differences of an independent
/// float64 implementation of the same loss.
/// </summary>
public sealed class FrozenHeadTests
{
    private const int Hidden = 6;
    private const int Vocab = 9;
    private const float Eps = 1e-5f;

    [Fact]
    public void CrossEntropyGradientMatchesFiniteDifferencesOfAFloat64Reference()
    {
        var random = new Random(3);
        var head = Values(random, Vocab * Hidden);
        var norm = Values(random, Hidden, 0.5, 1.5);
        var hidden = Values(random, 4 * Hidden, -2, 2);
        int[] targets = [2, -1, 8, 0];
        var frozen = new FrozenHead(head, Vocab, Hidden, norm, Eps);
        var gradient = new float[hidden.Length];

        var sum = frozen.CrossEntropy(hidden, targets, divisor: 3, gradient);

        var x = hidden.Select(v => (double)v).ToArray();
        Assert.Equal(Reference(x, targets, head, norm) * 3, sum, 1e-4);
        const double step = 1e-6;
        for (var i = 0; i < x.Length; i++)
        {
            var saved = x[i];
            x[i] = saved + step;
            var plus = Reference(x, targets, head, norm);
            x[i] = saved - step;
            var minus = Reference(x, targets, head, norm);
            x[i] = saved;
            var expected = (plus - minus) / (2 * step);
            Assert.True(Math.Abs(expected - gradient[i]) <= 1e-4 + (1e-3 * Math.Abs(expected)), $"d/dhidden[{i}]: finite differences {expected}, backward {gradient[i]}");
        }

        // The row without a target gets no gradient.
        Assert.All(gradient.AsSpan(Hidden, Hidden).ToArray(), g => Assert.Equal(0f, g));
    }

    [Fact]
    public void RmsNormBackwardMatchesFiniteDifferences()
    {
        var random = new Random(5);
        var x = Values(random, Hidden, -3, 3);
        var w = Values(random, Hidden, 0.5, 1.5);
        var dy = Values(random, Hidden);
        var y = new float[Hidden];
        var r = FrozenHead.Normalize(x, w, Eps, y);
        var dx = new float[Hidden];
        FrozenHead.NormalizeBackward(x, w, r, dy, dx);

        double Objective(double[] v)
        {
            var ms = v.Sum(a => a * a) / v.Length;
            var rr = 1 / Math.Sqrt(ms + Eps);
            return v.Select((a, i) => a * rr * w[i] * dy[i]).Sum();
        }

        var xd = x.Select(v => (double)v).ToArray();
        for (var i = 0; i < Hidden; i++)
        {
            var saved = xd[i];
            xd[i] = saved + 1e-6;
            var plus = Objective(xd);
            xd[i] = saved - 1e-6;
            var minus = Objective(xd);
            xd[i] = saved;
            Assert.Equal((plus - minus) / 2e-6, dx[i], 1e-4);
        }
    }

    [Fact]
    public void ATargetOutsideTheVocabularyIsRefused()
    {
        var frozen = new FrozenHead(new float[Vocab * Hidden], Vocab, Hidden, new float[Hidden], Eps);
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => frozen.CrossEntropy(new float[Hidden], [Vocab], 1, default));
        Assert.Contains("outside the vocabulary", e.Message, StringComparison.Ordinal);
    }

    private static double Reference(double[] hidden, int[] targets, float[] head, float[] norm)
    {
        var total = 0.0;
        var count = 0;
        for (var row = 0; row < targets.Length; row++)
        {
            if (targets[row] < 0)
            {
                continue;
            }

            count++;
            var x = hidden.AsSpan(row * Hidden, Hidden).ToArray();
            var r = 1 / Math.Sqrt((x.Sum(a => a * a) / Hidden) + Eps);
            var n = x.Select((a, i) => a * r * norm[i]).ToArray();
            var logits = Enumerable.Range(0, Vocab).Select(v => n.Select((a, i) => a * head[(v * Hidden) + i]).Sum()).ToArray();
            var max = logits.Max();
            total += max + Math.Log(logits.Sum(l => Math.Exp(l - max))) - logits[targets[row]];
        }

        Assert.Equal(3, count);
        return total / 3;
    }

    private static float[] Values(Random random, int count, double low = -1, double high = 1) =>
        [.. Enumerable.Range(0, count).Select(_ => (float)(low + (random.NextDouble() * (high - low))))];
}
