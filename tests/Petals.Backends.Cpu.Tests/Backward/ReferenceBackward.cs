using Petals.Execution;
using Petals.Models;

namespace Petals.Backends.Cpu.Tests.Backward;

/// <summary>
/// A float64 Llama block with a hand-derived backward pass, written independently of the executor with plain loops:
/// forward with a tape per sequence, then reverse-mode through every operation (RMSNorm, linear layers with optional
/// LoRA, rotary, causal GQA softmax attention, SwiGLU, residuals), deep prompts added at each block's input.
/// </summary>
internal sealed class ReferenceBackward
{
    private readonly ModelConfig _c;
    private readonly Func<string, double[]> _weight;
    private readonly double[] _invFreq;
    private readonly Dictionary<string, double[]> _cache = new(StringComparer.Ordinal);

    /// <param name="config">The model.</param>
    /// <param name="weight">The values of a tensor by name (float64: the stored or dequantized weights).</param>
    public ReferenceBackward(ModelConfig config, Func<string, double[]> weight)
    {
        _c = config;
        _weight = weight;
        _invFreq = ReferenceLlama.InverseFrequencies(config);
    }

    /// <summary>Sent LoRA weights in float64 (<c>[block][target] → (A, B)</c>), or null.</summary>
    public Dictionary<(int Block, LoraTarget Target), (double[] A, double[] B)>? Lora { get; set; }

    /// <summary>The LoRA scale.</summary>
    public double LoraScale { get; set; }

    /// <summary>The LoRA rank.</summary>
    public int LoraRank { get; set; }

    /// <summary>Deep prompts <c>[blocks, batch, promptLength, hidden]</c> for the blocks run, or null.</summary>
    public double[]? Prompts { get; set; }

    public int PromptLength { get; set; }

    /// <summary>Sets <see cref="Lora"/> from sent adapters.</summary>
    public void UseLora(LoraWeights lora)
    {
        Lora = [];
        LoraScale = lora.Scale;
        LoraRank = lora.Rank;
        for (var b = lora.Blocks.Start; b < lora.Blocks.End; b++)
        {
            foreach (var t in lora.Targets)
            {
                Lora[(b, t)] = (ToDouble(lora.A(b, t).Span), ToDouble(lora.B(b, t).Span));
            }
        }
    }

    public static double[] ToDouble(ReadOnlySpan<float> x)
    {
        var r = new double[x.Length];
        for (var i = 0; i < x.Length; i++)
        {
            r[i] = x[i];
        }

        return r;
    }

    /// <summary>The outputs of blocks <c>[first, first+count)</c> over <paramref name="x"/> <c>[batch, tokens, hidden]</c>.</summary>
    public double[] Forward(int first, int count, double[] x, int batch, int tokens)
    {
        var hs = _c.HiddenSize;
        var result = new double[x.Length];
        for (var b = 0; b < batch; b++)
        {
            var seq = x.AsSpan(b * tokens * hs, tokens * hs).ToArray();
            for (var i = 0; i < count; i++)
            {
                AddPrompts(seq, i, b, batch, tokens);
                seq = BlockForward(first + i, seq, tokens).Output;
            }

            seq.CopyTo(result, b * tokens * hs);
        }

        return result;
    }

    /// <summary>
    /// dLoss/dInput for dLoss/dOutput <paramref name="gradOut"/>, and the gradients of the prompts
    /// (<c>[blocks, batch, promptLength, hidden]</c>) and the LoRA weights (same keys as <see cref="Lora"/>).
    /// </summary>
    public (double[] Input, double[] Prompts, Dictionary<(int Block, LoraTarget Target), (double[] A, double[] B)> Lora) Backward(
        int first, int count, double[] x, double[] gradOut, int batch, int tokens)
    {
        var hs = _c.HiddenSize;
        var dInput = new double[x.Length];
        var dPrompts = new double[count * batch * PromptLength * hs];
        var dLora = new Dictionary<(int, LoraTarget), (double[] A, double[] B)>();
        if (Lora is not null)
        {
            foreach (var (key, (a, bb)) in Lora)
            {
                dLora[key] = (new double[a.Length], new double[bb.Length]);
            }
        }

        for (var b = 0; b < batch; b++)
        {
            var tapes = new Tape[count];
            var seq = x.AsSpan(b * tokens * hs, tokens * hs).ToArray();
            for (var i = 0; i < count; i++)
            {
                AddPrompts(seq, i, b, batch, tokens);
                tapes[i] = BlockForward(first + i, seq, tokens);
                seq = tapes[i].Output;
            }

            var g = gradOut.AsSpan(b * tokens * hs, tokens * hs).ToArray();
            for (var i = count - 1; i >= 0; i--)
            {
                g = BlockBackward(first + i, tapes[i], g, tokens, dLora);
                for (var p = 0; p < PromptLength; p++)
                {
                    for (var e = 0; e < hs; e++)
                    {
                        dPrompts[((((i * batch) + b) * PromptLength) + p) * hs + e] = g[(p * hs) + e];
                    }
                }
            }

            g.CopyTo(dInput, b * tokens * hs);
        }

        return (dInput, dPrompts, dLora);
    }

    private void AddPrompts(double[] seq, int blockIndex, int b, int batch, int tokens)
    {
        var hs = _c.HiddenSize;
        for (var p = 0; p < Math.Min(PromptLength, tokens); p++)
        {
            for (var e = 0; e < hs; e++)
            {
                seq[(p * hs) + e] += Prompts![((((blockIndex * batch) + b) * PromptLength) + p) * hs + e];
            }
        }
    }

    private double[] W(int block, string suffix)
    {
        var name = LlamaTensorNames.Block(block, suffix);
        if (!_cache.TryGetValue(name, out var w))
        {
            w = _weight(name);
            _cache[name] = w;
        }

        return w;
    }

    private sealed class Tape
    {
        public double[] X = [], N1 = [], Inv1 = [], Q = [], K = [], V = [], Attn = [], H = [], N2 = [], Inv2 = [], G = [], U = [], M = [], Output = [];
        public double[][] P = [];
    }

    private Tape BlockForward(int block, double[] x, int tokens)
    {
        var c = _c;
        var hs = c.HiddenSize;
        var d = c.HeadDim;
        var nh = c.NumHeads;
        var nkv = c.NumKeyValueHeads;
        var tape = new Tape { X = x };
        (tape.N1, tape.Inv1) = Norm(x, tokens, W(block, LlamaTensorNames.InputNorm));
        tape.Q = Lin(block, LoraTarget.Query, tape.N1, tokens, W(block, LlamaTensorNames.QProj), hs, nh * d);
        tape.K = Lin(block, LoraTarget.Key, tape.N1, tokens, W(block, LlamaTensorNames.KProj), hs, nkv * d);
        tape.V = Lin(block, LoraTarget.Value, tape.N1, tokens, W(block, LlamaTensorNames.VProj), hs, nkv * d);
        Rope(tape.Q, tokens, nh, d, 1);
        Rope(tape.K, tokens, nkv, d, 1);
        tape.Attn = new double[tokens * nh * d];
        tape.P = new double[nh * tokens][];
        var group = nh / nkv;
        for (var h = 0; h < nh; h++)
        {
            var g = h / group;
            for (var t = 0; t < tokens; t++)
            {
                var p = new double[t + 1];
                for (var j = 0; j <= t; j++)
                {
                    double s = 0;
                    for (var e = 0; e < d; e++)
                    {
                        s += tape.Q[(t * nh * d) + (h * d) + e] * tape.K[(j * nkv * d) + (g * d) + e];
                    }

                    p[j] = s / Math.Sqrt(d);
                }

                var max = p.Max();
                double total = 0;
                for (var j = 0; j <= t; j++)
                {
                    p[j] = Math.Exp(p[j] - max);
                    total += p[j];
                }

                for (var j = 0; j <= t; j++)
                {
                    p[j] /= total;
                    for (var e = 0; e < d; e++)
                    {
                        tape.Attn[(t * nh * d) + (h * d) + e] += p[j] * tape.V[(j * nkv * d) + (g * d) + e];
                    }
                }

                tape.P[(h * tokens) + t] = p;
            }
        }

        var o = Lin(block, LoraTarget.Output, tape.Attn, tokens, W(block, LlamaTensorNames.OProj), nh * d, hs);
        tape.H = new double[tokens * hs];
        for (var i = 0; i < tape.H.Length; i++)
        {
            tape.H[i] = x[i] + o[i];
        }

        (tape.N2, tape.Inv2) = Norm(tape.H, tokens, W(block, LlamaTensorNames.PostAttentionNorm));
        var inter = c.IntermediateSize;
        tape.G = Lin(block, LoraTarget.Gate, tape.N2, tokens, W(block, LlamaTensorNames.GateProj), hs, inter);
        tape.U = Lin(block, LoraTarget.Up, tape.N2, tokens, W(block, LlamaTensorNames.UpProj), hs, inter);
        tape.M = new double[tape.G.Length];
        for (var i = 0; i < tape.M.Length; i++)
        {
            tape.M[i] = tape.G[i] / (1 + Math.Exp(-tape.G[i])) * tape.U[i];
        }

        var down = Lin(block, LoraTarget.Down, tape.M, tokens, W(block, LlamaTensorNames.DownProj), inter, hs);
        tape.Output = new double[tokens * hs];
        for (var i = 0; i < tape.Output.Length; i++)
        {
            tape.Output[i] = tape.H[i] + down[i];
        }

        return tape;
    }

    private double[] BlockBackward(int block, Tape tape, double[] gOut, int tokens, Dictionary<(int, LoraTarget), (double[] A, double[] B)> dLora)
    {
        var c = _c;
        var hs = c.HiddenSize;
        var d = c.HeadDim;
        var nh = c.NumHeads;
        var nkv = c.NumKeyValueHeads;
        var inter = c.IntermediateSize;

        // out = H + down(M)
        var dM = LinBack(block, LoraTarget.Down, tape.M, tokens, W(block, LlamaTensorNames.DownProj), inter, hs, gOut, dLora);
        var dG = new double[dM.Length];
        var dU = new double[dM.Length];
        for (var i = 0; i < dM.Length; i++)
        {
            var g = tape.G[i];
            var sig = 1 / (1 + Math.Exp(-g));
            dU[i] = dM[i] * g * sig;
            dG[i] = dM[i] * tape.U[i] * (sig + (g * sig * (1 - sig)));
        }

        var dN2 = LinBack(block, LoraTarget.Gate, tape.N2, tokens, W(block, LlamaTensorNames.GateProj), hs, inter, dG, dLora);
        var dN2u = LinBack(block, LoraTarget.Up, tape.N2, tokens, W(block, LlamaTensorNames.UpProj), hs, inter, dU, dLora);
        for (var i = 0; i < dN2.Length; i++)
        {
            dN2[i] += dN2u[i];
        }

        var dH = (double[])gOut.Clone();
        NormBack(tape.H, tape.Inv2, tokens, W(block, LlamaTensorNames.PostAttentionNorm), dN2, dH);

        // H = X + o(Attn)
        var dAttn = LinBack(block, LoraTarget.Output, tape.Attn, tokens, W(block, LlamaTensorNames.OProj), nh * d, hs, dH, dLora);
        var dQ = new double[tape.Q.Length];
        var dK = new double[tape.K.Length];
        var dV = new double[tape.V.Length];
        var group = nh / nkv;
        var scale = 1 / Math.Sqrt(d);
        for (var h = 0; h < nh; h++)
        {
            var g = h / group;
            for (var t = 0; t < tokens; t++)
            {
                var p = tape.P[(h * tokens) + t];
                var dp = new double[t + 1];
                for (var j = 0; j <= t; j++)
                {
                    for (var e = 0; e < d; e++)
                    {
                        dp[j] += dAttn[(t * nh * d) + (h * d) + e] * tape.V[(j * nkv * d) + (g * d) + e];
                        dV[(j * nkv * d) + (g * d) + e] += p[j] * dAttn[(t * nh * d) + (h * d) + e];
                    }
                }

                double sum = 0;
                for (var j = 0; j <= t; j++)
                {
                    sum += p[j] * dp[j];
                }

                for (var j = 0; j <= t; j++)
                {
                    var ds = p[j] * (dp[j] - sum) * scale;
                    for (var e = 0; e < d; e++)
                    {
                        dQ[(t * nh * d) + (h * d) + e] += ds * tape.K[(j * nkv * d) + (g * d) + e];
                        dK[(j * nkv * d) + (g * d) + e] += ds * tape.Q[(t * nh * d) + (h * d) + e];
                    }
                }
            }
        }

        Rope(dQ, tokens, nh, d, -1);
        Rope(dK, tokens, nkv, d, -1);
        var dN1 = LinBack(block, LoraTarget.Query, tape.N1, tokens, W(block, LlamaTensorNames.QProj), hs, nh * d, dQ, dLora);
        var dN1k = LinBack(block, LoraTarget.Key, tape.N1, tokens, W(block, LlamaTensorNames.KProj), hs, nkv * d, dK, dLora);
        var dN1v = LinBack(block, LoraTarget.Value, tape.N1, tokens, W(block, LlamaTensorNames.VProj), hs, nkv * d, dV, dLora);
        for (var i = 0; i < dN1.Length; i++)
        {
            dN1[i] += dN1k[i] + dN1v[i];
        }

        var dX = dH;
        NormBack(tape.X, tape.Inv1, tokens, W(block, LlamaTensorNames.InputNorm), dN1, dX);
        return dX;
    }

    private (double[] Y, double[] Inv) Norm(double[] x, int tokens, double[] w)
    {
        var n = _c.HiddenSize;
        var y = new double[x.Length];
        var inv = new double[tokens];
        for (var t = 0; t < tokens; t++)
        {
            double ss = 0;
            for (var i = 0; i < n; i++)
            {
                ss += x[(t * n) + i] * x[(t * n) + i];
            }

            inv[t] = 1 / Math.Sqrt((ss / n) + _c.RmsNormEps);
            for (var i = 0; i < n; i++)
            {
                y[(t * n) + i] = x[(t * n) + i] * inv[t] * w[i];
            }
        }

        return (y, inv);
    }

    /// <summary>y_i = x_i r w_i with r = (mean x² + eps)^-1/2: dx_k += r w_k dy_k − x_k r³ / n · Σ_i x_i w_i dy_i.</summary>
    private void NormBack(double[] x, double[] inv, int tokens, double[] w, double[] dy, double[] dx)
    {
        var n = _c.HiddenSize;
        for (var t = 0; t < tokens; t++)
        {
            var r = inv[t];
            double s = 0;
            for (var i = 0; i < n; i++)
            {
                s += x[(t * n) + i] * w[i] * dy[(t * n) + i];
            }

            for (var k = 0; k < n; k++)
            {
                dx[(t * n) + k] += (r * w[k] * dy[(t * n) + k]) - (x[(t * n) + k] * r * r * r / n * s);
            }
        }
    }

    private double[] Lin(int block, LoraTarget target, double[] x, int rows, double[] w, int inF, int outF)
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

        if (Lora is not null && Lora.TryGetValue((block, target), out var ab))
        {
            var rank = LoraRank;
            for (var r = 0; r < rows; r++)
            {
                var z = new double[rank];
                for (var j = 0; j < rank; j++)
                {
                    for (var i = 0; i < inF; i++)
                    {
                        z[j] += x[(r * inF) + i] * ab.A[(j * inF) + i];
                    }
                }

                for (var o = 0; o < outF; o++)
                {
                    for (var j = 0; j < rank; j++)
                    {
                        y[(r * outF) + o] += LoraScale * z[j] * ab.B[(o * rank) + j];
                    }
                }
            }
        }

        return y;
    }

    /// <summary>dx = dy W (+ s (dy B) A); dA += s (dy B)ᵀ x, dB += s dyᵀ (x Aᵀ).</summary>
    private double[] LinBack(int block, LoraTarget target, double[] x, int rows, double[] w, int inF, int outF, double[] dy, Dictionary<(int, LoraTarget), (double[] A, double[] B)> dLora)
    {
        var dx = new double[rows * inF];
        for (var r = 0; r < rows; r++)
        {
            for (var o = 0; o < outF; o++)
            {
                var g = dy[(r * outF) + o];
                for (var i = 0; i < inF; i++)
                {
                    dx[(r * inF) + i] += g * w[(o * inF) + i];
                }
            }
        }

        if (Lora is not null && Lora.TryGetValue((block, target), out var ab))
        {
            var rank = LoraRank;
            var (dA, dB) = dLora[(block, target)];
            for (var r = 0; r < rows; r++)
            {
                var z = new double[rank];
                var dz = new double[rank];
                for (var j = 0; j < rank; j++)
                {
                    for (var i = 0; i < inF; i++)
                    {
                        z[j] += x[(r * inF) + i] * ab.A[(j * inF) + i];
                    }

                    for (var o = 0; o < outF; o++)
                    {
                        dz[j] += LoraScale * dy[(r * outF) + o] * ab.B[(o * rank) + j];
                    }
                }

                for (var j = 0; j < rank; j++)
                {
                    for (var i = 0; i < inF; i++)
                    {
                        dx[(r * inF) + i] += dz[j] * ab.A[(j * inF) + i];
                        dA[(j * inF) + i] += dz[j] * x[(r * inF) + i];
                    }

                    for (var o = 0; o < outF; o++)
                    {
                        dB[(o * rank) + j] += LoraScale * dy[(r * outF) + o] * z[j];
                    }
                }
            }
        }

        return dx;
    }

    /// <summary>Rotates (direction 1) or rotates back (direction −1, the transpose) every head of every position.</summary>
    private void Rope(double[] x, int tokens, int heads, int d, int direction)
    {
        var half = d / 2;
        for (var t = 0; t < tokens; t++)
        {
            for (var h = 0; h < heads; h++)
            {
                var off = (t * heads * d) + (h * d);
                for (var e = 0; e < half; e++)
                {
                    var angle = direction * t * _invFreq[e];
                    var (sin, cos) = Math.SinCos(angle);
                    var a = x[off + e];
                    var b = x[off + e + half];
                    x[off + e] = (a * cos) - (b * sin);
                    x[off + e + half] = (b * cos) + (a * sin);
                }
            }
        }
    }
}
