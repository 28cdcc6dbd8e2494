namespace Petals.Generation;

/// <summary>
/// Chooses tokens from logits according to <see cref="SamplingOptions"/>. Buffers are allocated once per
/// vocabulary size, so sampling allocates nothing per token.
/// </summary>
/// <remarks>Not thread-safe: use one sampler per generation.</remarks>
public sealed class Sampler
{
    private readonly SamplingOptions _options;
    private readonly Random _random;
    private int[] _seen = [];
    private int[] _counts = [];
    private int _stamp;
    private int[] _indices = [];
    private double[] _probabilities = [];
    private readonly PriorityQueue<int, (float Logit, int NegativeId)> _heap = new();

    /// <summary>Creates a sampler.</summary>
    /// <param name="options">The sampling options (validated here).</param>
    /// <param name="random">A random source; by default one seeded with <see cref="SamplingOptions.Seed"/>.</param>
    /// <exception cref="ArgumentOutOfRangeException">When an option is out of range.</exception>
    public Sampler(SamplingOptions options, Random? random = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _options = options;
        _random = random ?? (options.Seed is { } seed ? new Random(seed) : new Random());
    }

    /// <summary>
    /// Chooses the next token. <paramref name="logits"/> is modified (penalties, temperature). The frequency and presence
    /// penalties count every token of <paramref name="previousTokens"/> as generated; use
    /// <see cref="Sample(Span{float}, ReadOnlySpan{int}, int)"/> to exclude a prompt.
    /// </summary>
    /// <param name="logits">The logits of every token of the vocabulary.</param>
    /// <param name="previousTokens">The tokens of the sequence so far (prompt and generated), for the repetition penalty.</param>
    /// <returns>The chosen token id.</returns>
    /// <exception cref="ArgumentException">When <paramref name="logits"/> is empty or holds no finite value. NaN logits are never chosen.</exception>
    public int Sample(Span<float> logits, ReadOnlySpan<int> previousTokens) => Sample(logits, previousTokens, previousTokens.Length);

    /// <summary>Chooses the next token. <paramref name="logits"/> is modified (penalties, temperature).</summary>
    /// <param name="logits">The logits of every token of the vocabulary.</param>
    /// <param name="previousTokens">The tokens of the sequence so far (prompt and generated), for the repetition penalty.</param>
    /// <param name="generatedCount">
    /// How many of the last <paramref name="previousTokens"/> were generated (the rest is the prompt): the frequency and
    /// presence penalties count only those.
    /// </param>
    /// <returns>The chosen token id.</returns>
    /// <exception cref="ArgumentException">When <paramref name="logits"/> is empty or holds no finite value. NaN logits are never chosen.</exception>
    /// <exception cref="ArgumentOutOfRangeException">When <paramref name="generatedCount"/> is negative or more than <paramref name="previousTokens"/> holds.</exception>
    public int Sample(Span<float> logits, ReadOnlySpan<int> previousTokens, int generatedCount)
    {
        if (logits.IsEmpty)
        {
            throw new ArgumentException("There are no logits to sample from.", nameof(logits));
        }

        ArgumentOutOfRangeException.ThrowIfNegative(generatedCount);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(generatedCount, previousTokens.Length);
        if (_options.RepetitionPenalty != 1.0)
        {
            ApplyRepetitionPenalty(logits, previousTokens, (float)_options.RepetitionPenalty);
        }

        if (_options.FrequencyPenalty != 0 || _options.PresencePenalty != 0)
        {
            ApplyFrequencyAndPresencePenalties(logits, previousTokens[^generatedCount..]);
        }

        if (_options.Temperature == 0)
        {
            return ArgMax(logits);
        }

        var inverseTemperature = (float)(1.0 / _options.Temperature);
        var vocab = logits.Length;
        EnsureCapacity(vocab);

        // Candidates: every token, or the top-k by a selection over (-logit) keys.
        var count = vocab;
        for (var i = 0; i < vocab; i++)
        {
            // NaN never wins, as in ArgMax: it would otherwise sort first and poison the softmax.
            if (float.IsNaN(logits[i]))
            {
                logits[i] = float.NegativeInfinity;
            }

            _indices[i] = i;
        }

        var topK = _options.TopK;
        var nucleusMass = 0.0; // the mass TopP refers to when it is not the candidates' own (top-p over the whole vocabulary)
        if (topK > 0 && topK < vocab)
        {
            // O(V log k) selection instead of sorting the whole vocabulary (16 ms a token at 128k before).
            SelectTopK(logits, topK);
            count = topK;
        }
        else if (_options.TopP < 1.0)
        {
            // Nucleus without top-k: the nucleus is a prefix of the tokens sorted by logit, so select the top k
            // (k = 64, 256, ...) until their probability mass reaches TopP of the whole vocabulary's; sorting all
            // of a 128k vocabulary every token costs milliseconds.
            var globalMax = double.NegativeInfinity;
            for (var i = 0; i < vocab; i++)
            {
                globalMax = Math.Max(globalMax, logits[i] * (double)inverseTemperature);
            }

            var total = 0.0;
            for (var i = 0; i < vocab; i++)
            {
                total += Math.Exp((logits[i] * (double)inverseTemperature) - globalMax);
            }

            var k = Math.Min(64, vocab);
            while (true)
            {
                SelectTopK(logits, k);
                var mass = 0.0;
                for (var c = 0; c < k; c++)
                {
                    mass += Math.Exp((logits[_indices[c]] * (double)inverseTemperature) - globalMax);
                }

                if (k == vocab || mass >= _options.TopP * total)
                {
                    break;
                }

                k = (int)Math.Min(vocab, 4L * k);
            }

            count = k;
            nucleusMass = total;
        }

        // Softmax over candidates in double precision, with the max subtracted.
        var max = double.NegativeInfinity;
        for (var c = 0; c < count; c++)
        {
            max = Math.Max(max, logits[_indices[c]] * (double)inverseTemperature);
        }

        if (double.IsNegativeInfinity(max) || double.IsNaN(max))
        {
            throw new ArgumentException("The logits hold no finite value to sample from.", nameof(logits));
        }

        var sum = 0.0;
        for (var c = 0; c < count; c++)
        {
            var p = Math.Exp((logits[_indices[c]] * (double)inverseTemperature) - max);
            _probabilities[c] = p;
            sum += p;
        }

        if (_options.TopP < 1.0)
        {
            // Candidates are sorted by decreasing probability: keep the shortest prefix reaching TopP.
            var threshold = _options.TopP * (nucleusMass > 0 ? nucleusMass : sum);
            var cumulative = 0.0;
            var keep = 0;
            while (keep < count)
            {
                cumulative += _probabilities[keep];
                keep++;
                if (cumulative >= threshold)
                {
                    break;
                }
            }

            count = keep;
            sum = cumulative;
        }

        var draw = _random.NextDouble() * sum;
        var acc = 0.0;
        for (var c = 0; c < count; c++)
        {
            acc += _probabilities[c];
            if (draw < acc)
            {
                return _indices[c];
            }
        }

        return _indices[count - 1];
    }

    /// <summary>The index of the largest value; the first one on ties. NaN never wins.</summary>
    /// <param name="values">The values.</param>
    /// <returns>The index.</returns>
    public static int ArgMax(ReadOnlySpan<float> values)
    {
        var best = -1;
        var bestValue = float.NegativeInfinity;
        for (var i = 0; i < values.Length; i++)
        {
            if (values[i] > bestValue || (best < 0 && !float.IsNaN(values[i])))
            {
                best = i;
                bestValue = values[i];
            }
        }

        if (best < 0)
        {
            throw new ArgumentException("The logits hold no value that is not NaN.", nameof(values));
        }

        return best;
    }

    private void ApplyRepetitionPenalty(Span<float> logits, ReadOnlySpan<int> previousTokens, float penalty)
    {
        if (_seen.Length < logits.Length)
        {
            _seen = new int[logits.Length];
            _stamp = 0;
        }

        _stamp++;
        foreach (var token in previousTokens)
        {
            if ((uint)token >= (uint)logits.Length || _seen[token] == _stamp)
            {
                continue;
            }

            _seen[token] = _stamp;
            var value = logits[token];
            logits[token] = value > 0 ? value / penalty : value * penalty;
        }
    }

    /// <summary>
    /// <c>logit -= frequency * count + presence * (count &gt; 0)</c> for every token of <paramref name="generated"/>, as the
    /// OpenAI API defines them. Counts live in <c>_counts</c>, cleared afterwards for only the tokens touched.
    /// </summary>
    private void ApplyFrequencyAndPresencePenalties(Span<float> logits, ReadOnlySpan<int> generated)
    {
        if (_counts.Length < logits.Length)
        {
            _counts = new int[logits.Length];
        }

        foreach (var token in generated)
        {
            if ((uint)token < (uint)logits.Length)
            {
                _counts[token]++;
            }
        }

        var frequency = _options.FrequencyPenalty;
        var presence = _options.PresencePenalty;
        foreach (var token in generated)
        {
            if ((uint)token >= (uint)logits.Length || _counts[token] == 0)
            {
                continue;
            }

            logits[token] = (float)(logits[token] - (frequency * _counts[token]) - presence);
            _counts[token] = 0;
        }
    }

    /// <summary>
    /// Writes the <paramref name="k"/> largest logits' ids into <c>_indices[0..k)</c>, largest first, the lower id
    /// first on ties, with a min-heap of the best k seen so far.
    /// </summary>
    private void SelectTopK(ReadOnlySpan<float> logits, int k)
    {
        var heap = _heap;
        heap.Clear();
        for (var i = 0; i < logits.Length; i++)
        {
            var priority = (logits[i], -i);
            if (heap.Count < k)
            {
                heap.Enqueue(i, priority);
            }
            else if (heap.TryPeek(out _, out var worst) && priority.CompareTo(worst) > 0)
            {
                heap.DequeueEnqueue(i, priority);
            }
        }

        for (var c = k - 1; c >= 0; c--)
        {
            _indices[c] = heap.Dequeue();
        }
    }

    private void EnsureCapacity(int vocab)
    {
        if (_indices.Length < vocab)
        {
            _indices = new int[vocab];
            _probabilities = new double[vocab];
        }
    }
}
