using Petals.Models;

namespace Petals.Backends.Cpu;

/// <summary>
/// Rotary position embeddings in the Hugging Face layout: in each head, element <c>j</c> pairs with
/// <c>j + headDim/2</c> (<c>rotate_half</c>). Inverse frequencies follow <c>rope_theta</c> and, when configured,
/// Llama 3 or linear <c>rope_scaling</c>, computed in float64 as Hugging Face's <c>_compute_llama3_parameters</c> does.
/// </summary>
internal sealed class RotaryEmbedding
{
    private readonly double[] _invFreq;

    public RotaryEmbedding(ModelConfig config, string source)
    {
        HeadDim = config.HeadDim;
        var half = HeadDim / 2;
        _invFreq = new double[half];
        for (var j = 0; j < half; j++)
        {
            _invFreq[j] = 1.0 / Math.Pow(config.RopeTheta, 2.0 * j / HeadDim);
        }

        if (config.RopeScaling is { } scaling)
        {
            Apply(scaling, _invFreq, source);
        }
    }

    /// <summary>The head width.</summary>
    public int HeadDim { get; }

    /// <summary>The inverse frequencies, <c>headDim/2</c> of them.</summary>
    public ReadOnlySpan<double> InverseFrequencies => _invFreq;

    /// <summary>Fills <c>cos</c>/<c>sin</c> tables <c>[count, headDim/2]</c> for positions <c>start..start+count-1</c>.</summary>
    public void Fill(int start, int count, Span<float> cos, Span<float> sin)
    {
        var half = _invFreq.Length;
        for (var t = 0; t < count; t++)
        {
            double pos = start + t;
            for (var j = 0; j < half; j++)
            {
                var (s, c) = Math.SinCos(pos * _invFreq[j]);
                cos[(t * half) + j] = (float)c;
                sin[(t * half) + j] = (float)s;
            }
        }
    }

    /// <summary>Rotates every head of <paramref name="x"/> (<c>[heads, headDim]</c> of one position) in place.</summary>
    public static void Rotate(Span<float> x, int heads, int headDim, ReadOnlySpan<float> cos, ReadOnlySpan<float> sin)
    {
        var half = headDim / 2;
        for (var h = 0; h < heads; h++)
        {
            var v = x.Slice(h * headDim, headDim);
            for (var j = 0; j < half; j++)
            {
                var x1 = v[j];
                var x2 = v[j + half];
                v[j] = (x1 * cos[j]) - (x2 * sin[j]);
                v[j + half] = (x2 * cos[j]) + (x1 * sin[j]);
            }
        }
    }

    /// <summary>
    /// The backward pass of <see cref="Rotate"/> on gradients <paramref name="x"/> (in place): a rotation's transpose is
    /// the inverse rotation, the same pairs turned by minus the angle.
    /// </summary>
    public static void RotateBack(Span<float> x, int heads, int headDim, ReadOnlySpan<float> cos, ReadOnlySpan<float> sin)
    {
        var half = headDim / 2;
        for (var h = 0; h < heads; h++)
        {
            var v = x.Slice(h * headDim, headDim);
            for (var j = 0; j < half; j++)
            {
                var x1 = v[j];
                var x2 = v[j + half];
                v[j] = (x1 * cos[j]) + (x2 * sin[j]);
                v[j + half] = (x2 * cos[j]) - (x1 * sin[j]);
            }
        }
    }

    private static void Apply(RopeScaling scaling, double[] invFreq, string source)
    {
        if (!(scaling.Factor > 0) || !double.IsFinite(scaling.Factor))
        {
            throw new InvalidDataException($"{source}: model configuration field 'rope_scaling.factor' has invalid value {scaling.Factor}.");
        }

        switch (scaling.Type)
        {
            case RopeScaling.Llama3:
                {
                    if (!(scaling.HighFreqFactor > scaling.LowFreqFactor) || !(scaling.LowFreqFactor > 0) || scaling.OriginalMaxPositionEmbeddings <= 0)
                    {
                        throw new InvalidDataException(
                            $"{source}: model configuration field 'rope_scaling' has invalid llama3 parameters (low_freq_factor {scaling.LowFreqFactor}, high_freq_factor {scaling.HighFreqFactor}, original_max_position_embeddings {scaling.OriginalMaxPositionEmbeddings}).");
                    }

                    double oldContext = scaling.OriginalMaxPositionEmbeddings;
                    var lowFreqWavelen = oldContext / scaling.LowFreqFactor;
                    var highFreqWavelen = oldContext / scaling.HighFreqFactor;
                    for (var j = 0; j < invFreq.Length; j++)
                    {
                        var f = invFreq[j];
                        var wavelen = 2 * Math.PI / f;
                        var scaled = wavelen > lowFreqWavelen ? f / scaling.Factor : f;
                        var medium = !(wavelen < highFreqWavelen) && !(wavelen > lowFreqWavelen);
                        if (medium)
                        {
                            var smooth = ((oldContext / wavelen) - scaling.LowFreqFactor) / (scaling.HighFreqFactor - scaling.LowFreqFactor);
                            scaled = ((1 - smooth) * scaled / scaling.Factor) + (smooth * scaled);
                        }

                        invFreq[j] = scaled;
                    }

                    break;
                }

            case "linear":
                for (var j = 0; j < invFreq.Length; j++)
                {
                    invFreq[j] /= scaling.Factor;
                }

                break;
            case "default":
                break;
            default:
                throw new InvalidDataException($"{source}: model configuration field 'rope_scaling.type' has unsupported value '{scaling.Type}' (supported: llama3, linear, default).");
        }
    }
}
