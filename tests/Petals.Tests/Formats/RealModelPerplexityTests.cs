using System.Runtime.InteropServices;
using Petals.Formats.Gguf;
using Petals.Models;
using Petals.Testing;

namespace Petals.Tests.Formats;

/// <summary>
/// Checks the direction of the Q/K un-permutation on the real trained stories260K model: a plain reference Llama
/// forward pass with Hugging Face rotate-half rotary embeddings over the served weights must model TinyStories text
/// well (low perplexity), equal the interleaved rotation over the raw GGUF rows, and beat the wrong layout clearly.
/// </summary>
public sealed class RealModelPerplexityTests
{
    private const string Text = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big red ball.";

    [Fact]
    public void ServedLayoutGivesLowPerplexityOnRealText()
    {
        if (!TestData.SharedAvailable)
        {
            Assert.Skip(TestData.MissingMessage);
        }

        using var w = GgufModelWeights.Open(TestData.Stories260KGguf);
        var tokens = GreedyTokenize(w.File.Tokenizer.Tokens!, Text);
        Assert.True(tokens.Length > 20);

        var served = Perplexity(w, tokens, name => Floats(w.GetTensor(name).Data.Span), rotateHalf: true);
        var raw = Perplexity(w, tokens, name => Floats(w.File.GetTensorData(w.File.Tensors.First(t => t.Name == GgufModelWeights.GgufName(name))).Span), rotateHalf: false);
        var wrong = Perplexity(w, tokens, name => Floats(w.GetTensor(name).Data.Span), rotateHalf: false);

        Assert.Equal(raw, served, 6);
        Assert.True(served < 6, $"perplexity {served} with the served layout");
        Assert.True(wrong > served * 3, $"the wrong layout should be much worse: {wrong} vs {served}");
    }

    private static float[] Floats(ReadOnlySpan<byte> bytes) => MemoryMarshal.Cast<byte, float>(bytes).ToArray();

    /// <summary>Longest-match tokenization over the SentencePiece vocabulary (spaces as U+2581, a leading space), after BOS.</summary>
    private static int[] GreedyTokenize(IReadOnlyList<string> vocab, string text)
    {
        var index = new Dictionary<string, int>();
        for (var i = 0; i < vocab.Count; i++)
        {
            index.TryAdd(vocab[i], i);
        }

        var s = "\u2581" + text.Replace(' ', '\u2581');
        var result = new List<int> { 1 };
        var pos = 0;
        while (pos < s.Length)
        {
            var found = false;
            for (var len = Math.Min(16, s.Length - pos); len > 0; len--)
            {
                if (index.TryGetValue(s.Substring(pos, len), out var id))
                {
                    result.Add(id);
                    pos += len;
                    found = true;
                    break;
                }
            }

            if (!found)
            {
                foreach (var b in System.Text.Encoding.UTF8.GetBytes(s.Substring(pos, 1)))
                {
                    result.Add(index[$"<0x{b:X2}>"]);
                }

                pos++;
            }
        }

        return [.. result];
    }

    private static double Perplexity(GgufModelWeights w, int[] tokens, Func<string, float[]> get, bool rotateHalf)
    {
        var c = w.Config;
        int hidden = c.HiddenSize, d = c.HeadDim, n = tokens.Length;
        var embed = get(LlamaTensorNames.Embeddings);
        var x = new double[n][];
        for (var t = 0; t < n; t++)
        {
            x[t] = new double[hidden];
            for (var i = 0; i < hidden; i++)
            {
                x[t][i] = embed[(tokens[t] * hidden) + i];
            }
        }

        for (var l = 0; l < c.NumLayers; l++)
        {
            var inNorm = get(LlamaTensorNames.Block(l, LlamaTensorNames.InputNorm));
            var wq = get(LlamaTensorNames.Block(l, LlamaTensorNames.QProj));
            var wk = get(LlamaTensorNames.Block(l, LlamaTensorNames.KProj));
            var wv = get(LlamaTensorNames.Block(l, LlamaTensorNames.VProj));
            var wo = get(LlamaTensorNames.Block(l, LlamaTensorNames.OProj));
            var postNorm = get(LlamaTensorNames.Block(l, LlamaTensorNames.PostAttentionNorm));
            var wg = get(LlamaTensorNames.Block(l, LlamaTensorNames.GateProj));
            var wu = get(LlamaTensorNames.Block(l, LlamaTensorNames.UpProj));
            var wd = get(LlamaTensorNames.Block(l, LlamaTensorNames.DownProj));
            var q = new double[n][];
            var k = new double[n][];
            var v = new double[n][];
            for (var t = 0; t < n; t++)
            {
                var h = RmsNorm(x[t], inNorm, c.RmsNormEps);
                q[t] = MatVec(wq, h);
                k[t] = MatVec(wk, h);
                v[t] = MatVec(wv, h);
                Rotate(q[t], d, t, c.RopeTheta, rotateHalf);
                Rotate(k[t], d, t, c.RopeTheta, rotateHalf);
            }

            for (var t = 0; t < n; t++)
            {
                var attn = new double[c.NumHeads * d];
                for (var h = 0; h < c.NumHeads; h++)
                {
                    var kvh = h / c.GroupSize;
                    var scores = new double[t + 1];
                    var max = double.NegativeInfinity;
                    for (var s = 0; s <= t; s++)
                    {
                        double dot = 0;
                        for (var i = 0; i < d; i++)
                        {
                            dot += q[t][(h * d) + i] * k[s][(kvh * d) + i];
                        }

                        scores[s] = dot / Math.Sqrt(d);
                        max = Math.Max(max, scores[s]);
                    }

                    double sum = 0;
                    for (var s = 0; s <= t; s++)
                    {
                        scores[s] = Math.Exp(scores[s] - max);
                        sum += scores[s];
                    }

                    for (var s = 0; s <= t; s++)
                    {
                        for (var i = 0; i < d; i++)
                        {
                            attn[(h * d) + i] += scores[s] / sum * v[s][(kvh * d) + i];
                        }
                    }
                }

                var o = MatVec(wo, attn);
                for (var i = 0; i < hidden; i++)
                {
                    x[t][i] += o[i];
                }

                var h2 = RmsNorm(x[t], postNorm, c.RmsNormEps);
                var g = MatVec(wg, h2);
                var u = MatVec(wu, h2);
                for (var i = 0; i < g.Length; i++)
                {
                    g[i] = g[i] / (1 + Math.Exp(-g[i])) * u[i];
                }

                var down = MatVec(wd, g);
                for (var i = 0; i < hidden; i++)
                {
                    x[t][i] += down[i];
                }
            }
        }

        var norm = get(LlamaTensorNames.FinalNorm);
        var head = c.TieWordEmbeddings ? embed : get(LlamaTensorNames.LmHead);
        double nll = 0;
        for (var t = 0; t < n - 1; t++)
        {
            var logits = MatVec(head, RmsNorm(x[t], norm, c.RmsNormEps));
            var max = logits.Max();
            var logSum = Math.Log(logits.Sum(z => Math.Exp(z - max))) + max;
            nll += logSum - logits[tokens[t + 1]];
        }

        return Math.Exp(nll / (n - 1));
    }

    private static double[] RmsNorm(double[] x, float[] weight, double eps)
    {
        var ms = x.Sum(z => z * z) / x.Length;
        var scale = 1 / Math.Sqrt(ms + eps);
        var result = new double[x.Length];
        for (var i = 0; i < x.Length; i++)
        {
            result[i] = x[i] * scale * weight[i];
        }

        return result;
    }

    private static double[] MatVec(float[] w, double[] x)
    {
        var rows = w.Length / x.Length;
        var result = new double[rows];
        for (var r = 0; r < rows; r++)
        {
            double s = 0;
            for (var i = 0; i < x.Length; i++)
            {
                s += w[(r * x.Length) + i] * x[i];
            }

            result[r] = s;
        }

        return result;
    }

    private static void Rotate(double[] v, int d, int pos, double theta, bool rotateHalf)
    {
        for (var h = 0; h < v.Length / d; h++)
        {
            for (var i = 0; i < d / 2; i++)
            {
                var angle = pos * Math.Pow(theta, -2.0 * i / d);
                var (ia, ib) = rotateHalf ? ((h * d) + i, (h * d) + (d / 2) + i) : ((h * d) + (2 * i), (h * d) + (2 * i) + 1);
                var (a, b) = (v[ia], v[ib]);
                v[ia] = (a * Math.Cos(angle)) - (b * Math.Sin(angle));
                v[ib] = (a * Math.Sin(angle)) + (b * Math.Cos(angle));
            }
        }
    }
}
