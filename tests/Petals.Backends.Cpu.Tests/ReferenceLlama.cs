using Petals.Models;

namespace Petals.Backends.Cpu.Tests;

/// <summary>
/// A naive float64 Llama decoder block, written independently of the executor with plain loops: used as the
/// ground truth. Runs one sequence from position 0.
/// </summary>
internal static class ReferenceLlama
{
    /// <summary>Runs blocks <c>[first, first+count)</c> over one sequence <paramref name="x"/> <c>[tokens, hidden]</c> in place.</summary>
    public static void Run(RandomLlama model, int first, int count, double[] x, int tokens)
    {
        var c = model.Config;
        var invFreq = InverseFrequencies(c);
        for (var b = first; b < first + count; b++)
        {
            Block(model, b, x, tokens, invFreq);
        }
    }

    /// <summary>Inverse rotary frequencies, with Llama 3 scaling as written in Meta's reference (per-band branches).</summary>
    public static double[] InverseFrequencies(ModelConfig c)
    {
        var half = c.HeadDim / 2;
        var result = new double[half];
        for (var i = 0; i < half; i++)
        {
            var freq = Math.Pow(c.RopeTheta, -(2.0 * i) / c.HeadDim);
            if (c.RopeScaling is { Type: "llama3" } s)
            {
                var lowWavelen = s.OriginalMaxPositionEmbeddings / s.LowFreqFactor;
                var highWavelen = s.OriginalMaxPositionEmbeddings / s.HighFreqFactor;
                var wavelen = 2 * Math.PI / freq;
                if (wavelen < highWavelen)
                {
                    // high frequency: unchanged
                }
                else if (wavelen > lowWavelen)
                {
                    freq /= s.Factor;
                }
                else
                {
                    var smooth = ((s.OriginalMaxPositionEmbeddings / wavelen) - s.LowFreqFactor) / (s.HighFreqFactor - s.LowFreqFactor);
                    freq = ((1 - smooth) * freq / s.Factor) + (smooth * freq);
                }
            }

            result[i] = freq;
        }

        return result;
    }

    private static void Block(RandomLlama m, int b, double[] x, int tokens, double[] invFreq)
    {
        var c = m.Config;
        var hs = c.HiddenSize;
        var d = c.HeadDim;
        var nh = c.NumHeads;
        var nkv = c.NumKeyValueHeads;
        string N(string suffix) => LlamaTensorNames.Block(b, suffix);

        var normed = Norm(x, tokens, hs, m.Values(N(LlamaTensorNames.InputNorm)), c.RmsNormEps);
        var q = MatMulT(normed, tokens, hs, m.Values(N(LlamaTensorNames.QProj)), nh * d);
        var k = MatMulT(normed, tokens, hs, m.Values(N(LlamaTensorNames.KProj)), nkv * d);
        var v = MatMulT(normed, tokens, hs, m.Values(N(LlamaTensorNames.VProj)), nkv * d);
        Rope(q, tokens, nh, d, invFreq);
        Rope(k, tokens, nkv, d, invFreq);

        var attn = new double[tokens * nh * d];
        var perGroup = nh / nkv;
        for (var h = 0; h < nh; h++)
        {
            var g = h / perGroup;
            for (var t = 0; t < tokens; t++)
            {
                var scores = new double[t + 1];
                for (var j = 0; j <= t; j++)
                {
                    double s = 0;
                    for (var e = 0; e < d; e++)
                    {
                        s += q[(t * nh * d) + (h * d) + e] * k[(j * nkv * d) + (g * d) + e];
                    }

                    scores[j] = s / Math.Sqrt(d);
                }

                var max = scores.Max();
                double total = 0;
                for (var j = 0; j <= t; j++)
                {
                    scores[j] = Math.Exp(scores[j] - max);
                    total += scores[j];
                }

                for (var e = 0; e < d; e++)
                {
                    double s = 0;
                    for (var j = 0; j <= t; j++)
                    {
                        s += scores[j] / total * v[(j * nkv * d) + (g * d) + e];
                    }

                    attn[(t * nh * d) + (h * d) + e] = s;
                }
            }
        }

        var o = MatMulT(attn, tokens, nh * d, m.Values(N(LlamaTensorNames.OProj)), hs);
        for (var i = 0; i < tokens * hs; i++)
        {
            x[i] += o[i];
        }

        normed = Norm(x, tokens, hs, m.Values(N(LlamaTensorNames.PostAttentionNorm)), c.RmsNormEps);
        var inter = c.IntermediateSize;
        var gate = MatMulT(normed, tokens, hs, m.Values(N(LlamaTensorNames.GateProj)), inter);
        var up = MatMulT(normed, tokens, hs, m.Values(N(LlamaTensorNames.UpProj)), inter);
        for (var i = 0; i < gate.Length; i++)
        {
            gate[i] = gate[i] / (1 + Math.Exp(-gate[i])) * up[i];
        }

        var down = MatMulT(gate, tokens, inter, m.Values(N(LlamaTensorNames.DownProj)), hs);
        for (var i = 0; i < tokens * hs; i++)
        {
            x[i] += down[i];
        }
    }

    private static double[] Norm(double[] x, int tokens, int width, double[] w, double eps)
    {
        var result = new double[tokens * width];
        for (var t = 0; t < tokens; t++)
        {
            double ss = 0;
            for (var i = 0; i < width; i++)
            {
                ss += x[(t * width) + i] * x[(t * width) + i];
            }

            var inv = 1 / Math.Sqrt((ss / width) + eps);
            for (var i = 0; i < width; i++)
            {
                result[(t * width) + i] = x[(t * width) + i] * inv * w[i];
            }
        }

        return result;
    }

    /// <summary><c>x[rows, inF] W^T</c> with W <c>[outF, inF]</c>.</summary>
    private static double[] MatMulT(double[] x, int rows, int inF, double[] w, int outF)
    {
        var y = new double[rows * outF];
        for (var r = 0; r < rows; r++)
        {
            for (var o = 0; o < outF; o++)
            {
                double s = 0;
                for (var i = 0; i < inF; i++)
                {
                    s += x[(r * inF) + i] * w[(o * inF) + i];
                }

                y[(r * outF) + o] = s;
            }
        }

        return y;
    }

    /// <summary>Hugging Face rotary: <c>x * cos + rotate_half(x) * sin</c>, <c>rotate_half(x) = cat(-x2, x1)</c>, cos/sin = cat(freqs, freqs).</summary>
    private static void Rope(double[] x, int tokens, int heads, int d, double[] invFreq)
    {
        var half = d / 2;
        var rotated = new double[d];
        for (var t = 0; t < tokens; t++)
        {
            for (var h = 0; h < heads; h++)
            {
                var off = (t * heads * d) + (h * d);
                for (var e = 0; e < d; e++)
                {
                    rotated[e] = e < half ? -x[off + e + half] : x[off + e - half];
                }

                for (var e = 0; e < d; e++)
                {
                    var angle = t * invFreq[e % half];
                    x[off + e] = (x[off + e] * Math.Cos(angle)) + (rotated[e] * Math.Sin(angle));
                }
            }
        }
    }
}
