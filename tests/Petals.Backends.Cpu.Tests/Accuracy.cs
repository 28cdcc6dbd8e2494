namespace Petals.Backends.Cpu.Tests;

/// <summary>Comparisons against the float64 reference.</summary>
internal static class Accuracy
{
    /// <summary>The bound on <c>max|ours - ref| / max|ref|</c>.</summary>
    public const double RelativeTolerance = 1e-5;

    /// <summary>
    /// Asserts <c>max|ours-ref| / max|ref| &lt;= 1e-5</c>, and elementwise <c>|ours-ref| &lt;= 1e-5 * max(|ref|, 0.25 * max|ref|)</c>
    /// (relative per element, with an absolute floor of <c>2.5e-6 * max|ref|</c> for values near zero: fp32 sums over
    /// thousands of products carry errors of that size whatever the element's own magnitude).
    /// </summary>
    public static void AssertClose(ReadOnlySpan<float> ours, ReadOnlySpan<double> reference, string what)
    {
        Assert.Equal(reference.Length, ours.Length);
        double maxRef = 0, maxErr = 0;
        for (var i = 0; i < reference.Length; i++)
        {
            Assert.True(float.IsFinite(ours[i]), $"{what}: element {i} is {ours[i]}");
            maxRef = Math.Max(maxRef, Math.Abs(reference[i]));
            maxErr = Math.Max(maxErr, Math.Abs(ours[i] - reference[i]));
        }

        Assert.True(maxRef > 0, $"{what}: the reference is all zeros");
        var rel = maxErr / maxRef;
        Assert.True(rel <= RelativeTolerance, $"{what}: max|ours-ref|/max|ref| = {rel:E3} > {RelativeTolerance:E0}");
        var floor = 0.25 * maxRef;
        for (var i = 0; i < reference.Length; i++)
        {
            var err = Math.Abs(ours[i] - reference[i]);
            var bound = RelativeTolerance * Math.Max(Math.Abs(reference[i]), floor);
            Assert.True(err <= bound, $"{what}: element {i}: ours {ours[i]:R}, reference {reference[i]:R}, error {err:E3} > {bound:E3}");
        }
    }

    public static float[] RandomHidden(int count, int seed)
    {
        var random = new Random(seed);
        var x = new float[count];
        for (var i = 0; i < count; i++)
        {
            x[i] = (float)((2 * random.NextDouble()) - 1);
        }

        return x;
    }

    /// <summary>The reference outputs of one sequence's positions (rows of <paramref name="input"/>, <c>[tokens, hidden]</c>).</summary>
    public static double[] Reference(RandomLlama model, int first, int count, ReadOnlySpan<float> input, int tokens)
    {
        var x = new double[input.Length];
        for (var i = 0; i < x.Length; i++)
        {
            x[i] = input[i];
        }

        ReferenceLlama.Run(model, first, count, x, tokens);
        return x;
    }
}
