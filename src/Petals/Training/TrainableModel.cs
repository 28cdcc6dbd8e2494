using System.Globalization;
using System.Numerics.Tensors;
using Petals.Execution;
using Petals.Generation;
using Petals.Inference;
using Petals.Models;

namespace Petals.Training;

/// <summary>
/// A model being fine-tuned over any <see cref="ITransformerBlocks"/> (in this process or on remote servers): the frozen
/// blocks run forward and backward through <see cref="ITransformerBlocks.ForwardAsync(Memory{float}, int, int, BlockAdaptation?, CancellationToken)"/>
/// and <see cref="ITransformerBlocks.BackwardAsync"/>, while the trainable parameters (<see cref="Parameters"/>: a prefix,
/// deep prompts, LoRA, a classification head) and the frozen embeddings, final norm and LM head live here. Everything
/// computed on this side (loss, LM head, final RMSNorm, head, embedding gradient) runs in fp32.
/// </summary>
/// <remarks>
/// <para>
/// Parameters: <c>prompts</c> <c>[PromptTokens, hidden]</c> (prompt and deep prompt tuning), <c>deep_prompts</c>
/// <c>[layers, PromptTokens, hidden]</c> (deep prompt tuning; one set shared by every sequence of a batch), <c>lora</c>
/// <c>[layers, values per block]</c> in the <see cref="LoraWeights"/> layout, <c>classifier.weight</c> <c>[classes, hidden]</c>
/// and <c>classifier.bias</c> <c>[classes]</c>.
/// </para>
/// <para>
/// The causal-LM loss is the mean over a batch's predicted tokens of the cross-entropy of token <c>t+1</c> given the
/// prefix and tokens <c>0..t</c>; prefix positions and padding predict nothing. The classification loss is the mean
/// cross-entropy of the head's logits over the final-normed hidden state of each sequence's last real token
/// (<see cref="ClassificationPooling.LastToken"/>) or the mean of its tokens' (<see cref="ClassificationPooling.Mean"/>).
/// </para>
/// <para>Not thread-safe: one step at a time.</para>
/// </remarks>
public sealed class TrainableModel
{
    private readonly FrozenHead _frozen;
    private readonly List<TrainableParameter> _parameters = [];

    /// <summary>Creates a model with freshly initialised parameters (see <see cref="FineTuneOptions.Seed"/>).</summary>
    /// <param name="head">The frozen embeddings, final norm and LM head.</param>
    /// <param name="blocks">The frozen blocks.</param>
    /// <param name="options">What to train.</param>
    /// <exception cref="ArgumentException">The options are invalid or the head and blocks are of different models.</exception>
    public TrainableModel(LanguageModelHead head, ITransformerBlocks blocks, FineTuneOptions options)
    {
        ArgumentNullException.ThrowIfNull(head);
        ArgumentNullException.ThrowIfNull(blocks);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        if (head.Config.HiddenSize != blocks.Config.HiddenSize || head.Config.NumLayers != blocks.Config.NumLayers)
        {
            throw new ArgumentException($"The head (hidden {head.Config.HiddenSize}, {head.Config.NumLayers} layers) and the blocks (hidden {blocks.Config.HiddenSize}, {blocks.Config.NumLayers} layers) are of different models.", nameof(blocks));
        }

        Head = head;
        Blocks = blocks;
        Options = options;
        _frozen = FrozenHead.From(head);
        var config = Config;
        var h = config.HiddenSize;
        var random = new Random(options.Seed);
        if (options.Mode is FineTuneMode.PromptTuning or FineTuneMode.DeepPromptTuning)
        {
            Prompts = Add(new TrainableParameter("prompts", [options.PromptTokens, h]));
            for (var p = 0; p < options.PromptTokens; p++)
            {
                head.Embed([random.Next(config.VocabSize)], Prompts.Values.AsSpan(p * h, h));
            }
        }

        if (options.Mode == FineTuneMode.DeepPromptTuning)
        {
            DeepPrompts = Add(new TrainableParameter("deep_prompts", [config.NumLayers, options.PromptTokens, h]));
        }

        if (options.Mode == FineTuneMode.Lora)
        {
            var all = new BlockRange(0, config.NumLayers);
            var scale = options.LoraAlpha / options.LoraRank;
            var perBlock = new LoraWeights(config, new BlockRange(0, 1), options.LoraRank, scale, options.LoraTargets).ValuesPerBlock;
            LoraParameter = Add(new TrainableParameter("lora", [config.NumLayers, perBlock]));
            Lora = new LoraWeights(config, all, options.LoraRank, scale, options.LoraTargets, LoraParameter.Values);
            for (var block = 0; block < config.NumLayers; block++)
            {
                foreach (var target in options.LoraTargets)
                {
                    // kaiming_uniform(a=√5) as nn.Linear: bound 1/√in; B starts at zero so the adapted model equals the frozen one.
                    var bound = 1 / Math.Sqrt(LoraTargets.InFeatures(config, target));
                    var a = Lora.A(block, target).Span;
                    for (var i = 0; i < a.Length; i++)
                    {
                        a[i] = (float)(((random.NextDouble() * 2) - 1) * bound);
                    }
                }
            }
        }

        if (options.ClassCount > 0)
        {
            ClassifierWeight = Add(new TrainableParameter("classifier.weight", [options.ClassCount, h]));
            ClassifierBias = Add(new TrainableParameter("classifier.bias", [options.ClassCount], weightDecay: false));
            var bound = 1 / Math.Sqrt(h);
            for (var i = 0; i < ClassifierWeight.Values.Length; i++)
            {
                ClassifierWeight.Values[i] = (float)(((random.NextDouble() * 2) - 1) * bound);
            }
        }
    }

    /// <summary>The model configuration.</summary>
    public ModelConfig Config => Head.Config;

    /// <summary>The frozen head and final norm in fp32.</summary>
    internal FrozenHead Frozen => _frozen;

    /// <summary>The frozen embeddings, final norm and LM head.</summary>
    public LanguageModelHead Head { get; }

    /// <summary>The frozen blocks.</summary>
    public ITransformerBlocks Blocks { get; }

    /// <summary>What is trained.</summary>
    public FineTuneOptions Options { get; }

    /// <summary>Every trainable parameter, in checkpoint order.</summary>
    public IReadOnlyList<TrainableParameter> Parameters => _parameters;

    /// <summary>The prefix embeddings <c>[PromptTokens, hidden]</c>, or <see langword="null"/> in LoRA mode.</summary>
    public TrainableParameter? Prompts { get; }

    /// <summary>The deep prompts <c>[layers, PromptTokens, hidden]</c>, or <see langword="null"/> unless deep prompt tuning.</summary>
    public TrainableParameter? DeepPrompts { get; }

    /// <summary>The LoRA values <c>[layers, values per block]</c>, or <see langword="null"/> unless LoRA.</summary>
    public TrainableParameter? LoraParameter { get; }

    /// <summary>The LoRA adapters of all blocks (a view over <see cref="LoraParameter"/>), or <see langword="null"/>.</summary>
    public LoraWeights? Lora { get; }

    /// <summary>The classification head's weights <c>[classes, hidden]</c>, or <see langword="null"/>.</summary>
    public TrainableParameter? ClassifierWeight { get; }

    /// <summary>The classification head's bias <c>[classes]</c>, or <see langword="null"/>.</summary>
    public TrainableParameter? ClassifierBias { get; }

    /// <summary>Positions prepended to every sequence (the prefix).</summary>
    public int PrefixLength => Options.PrefixLength;

    /// <summary>
    /// The adaptation the blocks run with for <paramref name="batchSize"/> sequences: the deep prompts repeated for each
    /// sequence and the LoRA adapters (views of the current values), or <see langword="null"/> when there is none.
    /// </summary>
    /// <param name="batchSize">Sequences, at least 1.</param>
    /// <returns>The adaptation for all blocks.</returns>
    public BlockAdaptation? CreateAdaptation(int batchSize)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(batchSize, 1);
        if (DeepPrompts is null && Lora is null)
        {
            return null;
        }

        var prompts = ReadOnlyMemory<float>.Empty;
        var promptLength = 0;
        if (DeepPrompts is not null)
        {
            var per = Options.PromptTokens * Config.HiddenSize;
            var expanded = new float[Config.NumLayers * batchSize * per];
            for (var layer = 0; layer < Config.NumLayers; layer++)
            {
                for (var b = 0; b < batchSize; b++)
                {
                    DeepPrompts.Values.AsSpan(layer * per, per).CopyTo(expanded.AsSpan(((layer * batchSize) + b) * per, per));
                }
            }

            prompts = expanded;
            promptLength = Options.PromptTokens;
        }

        return new BlockAdaptation { Prompts = prompts, PromptLength = promptLength, Lora = Lora };
    }

    /// <summary>
    /// Writes the block-0 inputs of one sequence: the prefix embeddings then the embeddings of <paramref name="tokenIds"/>.
    /// </summary>
    /// <param name="tokenIds">The sequence's tokens.</param>
    /// <param name="hidden">Destination of <c>(PrefixLength + tokens) × hidden</c> values.</param>
    public void Embed(ReadOnlySpan<int> tokenIds, Span<float> hidden)
    {
        var h = Config.HiddenSize;
        if (hidden.Length != (PrefixLength + tokenIds.Length) * h)
        {
            throw new ArgumentException($"Destination holds {hidden.Length} values; a prefix of {PrefixLength} and {tokenIds.Length} tokens need {(PrefixLength + tokenIds.Length) * h}.", nameof(hidden));
        }

        Prompts?.Values.AsSpan().CopyTo(hidden);
        Head.Embed(tokenIds, hidden[(PrefixLength * h)..]);
    }

    /// <summary>
    /// Runs <paramref name="batch"/> forward and backward and writes every parameter's <see cref="TrainableParameter.Gradient"/>.
    /// </summary>
    /// <param name="batch">The batch (labelled when the model has a classification head).</param>
    /// <param name="cancellationToken">Cancels the step.</param>
    /// <returns>The batch's mean loss in nats (per predicted token, or per sequence with a head).</returns>
    /// <exception cref="ArgumentException">The batch does not fit the model (labels missing or out of range, ids outside the vocabulary).</exception>
    public async Task<double> ComputeGradientsAsync(TrainingBatch batch, CancellationToken cancellationToken = default)
    {
        var result = await RunAsync(batch, backward: true, adapted: true, cancellationToken).ConfigureAwait(false);
        return result.Sum / result.Count;
    }

    /// <summary>Runs <paramref name="batch"/> forward only and returns its loss.</summary>
    /// <param name="batch">The batch.</param>
    /// <param name="adapted">Whether the trained parameters apply (false: the frozen model; with a head, the head still applies).</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>The summed loss, the number of terms, and (with a head) the predicted class per sequence.</returns>
    public Task<BatchEvaluation> EvaluateAsync(TrainingBatch batch, bool adapted = true, CancellationToken cancellationToken = default) =>
        RunAsync(batch, backward: false, adapted, cancellationToken);

    /// <summary>
    /// Evaluates a whole data set in batches of <paramref name="batchSize"/> (in order, the last batch smaller): the mean
    /// loss over all its terms (per predicted token, or per sequence with a head) and, with a head, the accuracy.
    /// </summary>
    /// <param name="examples">The examples, at least one.</param>
    /// <param name="batchSize">Sequences per forward pass, at least 1.</param>
    /// <param name="sequenceLength">Positions per sequence (examples are at most this long).</param>
    /// <param name="padId">The padding id.</param>
    /// <param name="adapted">Whether the trained parameters apply (false: the frozen model).</param>
    /// <param name="cancellationToken">Cancels the evaluation.</param>
    /// <returns>The evaluation.</returns>
    public async Task<DatasetEvaluation> EvaluateAsync(IReadOnlyList<TextExample> examples, int batchSize, int sequenceLength, int padId, bool adapted = true, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(examples);
        ArgumentOutOfRangeException.ThrowIfZero(examples.Count, nameof(examples));
        ArgumentOutOfRangeException.ThrowIfLessThan(batchSize, 1);
        var sum = 0.0;
        var count = 0;
        var correct = 0;
        for (var start = 0; start < examples.Count; start += batchSize)
        {
            var part = examples.Skip(start).Take(batchSize).ToArray();
            var batch = TrainingBatch.From(part, sequenceLength, padId);
            var result = await RunAsync(batch, backward: false, adapted, cancellationToken).ConfigureAwait(false);
            sum += result.Sum;
            count += result.Count;
            if (result.Predictions is { } predictions)
            {
                for (var i = 0; i < part.Length; i++)
                {
                    correct += predictions[i] == part[i].Label ? 1 : 0;
                }
            }
        }

        return new DatasetEvaluation(sum / count, count, ClassifierWeight is null ? null : correct / (double)examples.Count);
    }

    private TrainableParameter Add(TrainableParameter parameter)
    {
        _parameters.Add(parameter);
        return parameter;
    }

    private async Task<BatchEvaluation> RunAsync(TrainingBatch batch, bool backward, bool adapted, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(batch);
        var config = Config;
        var h = config.HiddenSize;
        var prefix = adapted ? PrefixLength : 0;
        var t = batch.SequenceLength;
        var total = prefix + t;
        var b = batch.BatchSize;
        var classify = ClassifierWeight is not null;
        if (classify && batch.Labels is null)
        {
            throw new ArgumentException("The model has a classification head but the batch has no labels.", nameof(batch));
        }

        if (total > config.MaxPositionEmbeddings)
        {
            throw new ArgumentException(string.Create(CultureInfo.InvariantCulture, $"A prefix of {prefix} and {t} tokens exceed the model's context of {config.MaxPositionEmbeddings}."), nameof(batch));
        }

        var hidden = new float[b * total * h];
        for (var s = 0; s < b; s++)
        {
            var row = hidden.AsSpan(s * total * h, total * h);
            if (prefix > 0)
            {
                Prompts!.Values.AsSpan().CopyTo(row);
            }

            Head.Embed(batch.TokenIds.AsSpan(s * t, t), row[(prefix * h)..]);
        }

        var adaptation = adapted ? CreateAdaptation(b) : null;
        using var activations = await Blocks.ForwardAsync(hidden, b, total, adaptation, cancellationToken).ConfigureAwait(false);
        var gradient = backward ? new float[hidden.Length] : null;
        BatchEvaluation result;
        if (classify)
        {
            result = Classify(hidden, batch, prefix, gradient);
        }
        else
        {
            var targets = new int[b * total];
            Array.Fill(targets, -1);
            var count = 0;
            for (var s = 0; s < b; s++)
            {
                for (var i = 0; i + 1 < batch.Lengths[s]; i++)
                {
                    targets[(s * total) + prefix + i] = batch.TokenIds[(s * t) + i + 1];
                    count++;
                }
            }

            if (count == 0)
            {
                throw new ArgumentException("The batch has no token to predict: every sequence is a single token.", nameof(batch));
            }

            var sum = _frozen.CrossEntropy(hidden, targets, count, gradient);
            result = new BatchEvaluation(sum, count, null);
        }

        if (gradient is null)
        {
            return result;
        }

        var blockGradients = DeepPrompts is null && Lora is null
            ? null
            : new BlockGradients
            {
                Prompts = DeepPrompts is null ? Memory<float>.Empty : new float[config.NumLayers * b * Options.PromptTokens * h],
                Lora = Lora?.CreateZeros(),
            };
        await Blocks.BackwardAsync(activations, gradient, blockGradients, cancellationToken).ConfigureAwait(false);
        if (Prompts is not null)
        {
            var g = Prompts.Gradient.AsSpan();
            g.Clear();
            for (var s = 0; s < b; s++)
            {
                TensorPrimitives.Add(g, gradient.AsSpan(s * total * h, prefix * h), g);
            }
        }

        if (DeepPrompts is not null)
        {
            var per = Options.PromptTokens * h;
            var g = DeepPrompts.Gradient.AsSpan();
            g.Clear();
            var sent = blockGradients!.Prompts.Span;
            for (var layer = 0; layer < config.NumLayers; layer++)
            {
                for (var s = 0; s < b; s++)
                {
                    TensorPrimitives.Add(g.Slice(layer * per, per), sent.Slice(((layer * b) + s) * per, per), g.Slice(layer * per, per));
                }
            }
        }

        if (LoraParameter is not null)
        {
            blockGradients!.Lora!.Values.Span.CopyTo(LoraParameter.Gradient);
        }

        return result;
    }

    private BatchEvaluation Classify(float[] hidden, TrainingBatch batch, int prefix, float[]? gradient)
    {
        var h = Config.HiddenSize;
        var classes = Options.ClassCount;
        var b = batch.BatchSize;
        var total = prefix + batch.SequenceLength;
        var w = ClassifierWeight!;
        var bias = ClassifierBias!;
        if (gradient is not null)
        {
            Array.Clear(w.Gradient);
            Array.Clear(bias.Gradient);
        }

        var predictions = new int[b];
        var normed = new float[h];
        var pooled = new float[h];
        var logits = new double[classes];
        var dPooled = new float[h];
        var dNormed = new float[h];
        var sum = 0.0;
        for (var s = 0; s < b; s++)
        {
            var label = batch.Labels![s];
            if ((uint)label >= (uint)classes)
            {
                throw new ArgumentException(string.Create(CultureInfo.InvariantCulture, $"Sequence {s} has label {label}; the head has {classes} classes [0, {classes})."), nameof(batch));
            }

            var length = batch.Lengths[s];
            var first = Options.Pooling == ClassificationPooling.LastToken ? length - 1 : 0;
            var count = length - first;
            Array.Clear(pooled);
            for (var i = first; i < length; i++)
            {
                FrozenHead.Normalize(hidden.AsSpan(((s * total) + prefix + i) * h, h), _frozen.NormWeight, _frozen.NormEpsilon, normed);
                TensorPrimitives.Add(pooled, normed, pooled);
            }

            TensorPrimitives.Multiply(pooled, 1f / count, pooled);
            var max = double.NegativeInfinity;
            for (var c = 0; c < classes; c++)
            {
                logits[c] = TensorPrimitives.Dot(w.Values.AsSpan(c * h, h), pooled) + bias.Values[c];
                if (logits[c] > max)
                {
                    max = logits[c];
                    predictions[s] = c;
                }
            }

            var exp = 0.0;
            for (var c = 0; c < classes; c++)
            {
                exp += Math.Exp(logits[c] - max);
            }

            var logSum = max + Math.Log(exp);
            sum += logSum - logits[label];
            if (gradient is null)
            {
                continue;
            }

            Array.Clear(dPooled);
            for (var c = 0; c < classes; c++)
            {
                var d = (float)((Math.Exp(logits[c] - logSum) - (c == label ? 1 : 0)) / b);
                TensorPrimitives.MultiplyAdd(pooled, d, w.Gradient.AsSpan(c * h, h), w.Gradient.AsSpan(c * h, h));
                bias.Gradient[c] += d;
                TensorPrimitives.MultiplyAdd(w.Values.AsSpan(c * h, h), d, dPooled, dPooled);
            }

            TensorPrimitives.Multiply(dPooled, 1f / count, dNormed);
            for (var i = first; i < length; i++)
            {
                var offset = ((s * total) + prefix + i) * h;
                var x = hidden.AsSpan(offset, h);
                var r = FrozenHead.Normalize(x, _frozen.NormWeight, _frozen.NormEpsilon, normed);
                FrozenHead.NormalizeBackward(x, _frozen.NormWeight, r, dNormed, gradient.AsSpan(offset, h));
            }
        }

        return new BatchEvaluation(sum, b, predictions);
    }
}
