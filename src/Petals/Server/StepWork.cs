using System.Buffers;
using Petals.Execution;
using Petals.Protocol;

namespace Petals.Server;

/// <summary>A step's inputs, copied out of the receive buffer, and after it ran, its outputs.</summary>
internal sealed class StepWork : IDisposable
{
    private float[]? _buffer;
    private BlockServer? _budget;

    private StepWork(ulong stepId, int startPosition, int batch, int tokens, int hidden, float[]? buffer, int[]? hypoIds, ProtocolException? error)
    {
        StepId = stepId;
        StartPosition = startPosition;
        Batch = batch;
        Tokens = tokens;
        Hidden = hidden;
        _buffer = buffer;
        HypoIds = hypoIds;
        Error = error;
    }

    public ulong StepId { get; }

    public int StartPosition { get; }

    public int Batch { get; }

    public int Tokens { get; }

    public int Hidden { get; }

    public int[]? HypoIds { get; }

    /// <summary>A validation error found on receipt, reported in order with the session's other steps.</summary>
    public ProtocolException? Error { get; }

    public int Position { get; set; }

    public IKvCache? Cache { get; set; }

    public IBlockExecutor? Executor { get; set; }

    /// <summary>The step's deep prompts (positions below their length) and its session's LoRA weights, or null.</summary>
    public BlockAdaptation? Adaptation { get; private init; }

    /// <summary>The blocks the step runs (its session's range).</summary>
    public Models.BlockRange Blocks { get; set; }

    private int Count => Batch * Tokens * Hidden;

    /// <summary>The step's hidden states as received (before it runs).</summary>
    public ReadOnlySpan<float> Inputs => _buffer.AsSpan(0, Count);

    /// <summary>
    /// Copies the step out of the message (which is valid only during the handler call). Its inputs were charged to
    /// <paramref name="budget"/>'s queued-input budget; <see cref="Dispose"/> returns them.
    /// </summary>
    public static StepWork FromMessage(InferenceStep step, int batch, int tokens, int hidden, BlockServer budget, BlockAdaptation? adaptation = null)
    {
        var buffer = ArrayPool<float>.Shared.Rent(batch * tokens * hidden);
        step.Hidden.CopyTo(buffer);
        var hypo = step.HypoIds is { } ids ? ids.Span.ToArray() : null;
        return new StepWork(step.StepId, step.StartPosition, batch, tokens, hidden, buffer, hypo, null) { _budget = budget, Adaptation = adaptation };
    }

    /// <summary>A step refused on receipt.</summary>
    public static StepWork Failed(ulong stepId, ProtocolException error) => new(stepId, 0, 0, 0, 0, null, null, error);

    /// <summary>Runs on the compute lane: rollback, reorder, forward.</summary>
    public void Execute()
    {
        var cache = Cache!;
        if (StartPosition < cache.Length)
        {
            cache.Truncate(StartPosition);
        }

        if (HypoIds is { } hypo)
        {
            cache.Reorder(hypo);
        }

        if (Adaptation is null)
        {
            Executor!.Forward(_buffer.AsSpan(0, Count), Batch, Tokens, cache, Blocks);
        }
        else
        {
            Executor!.Forward(_buffer.AsSpan(0, Count), Batch, Tokens, cache, Blocks, Adaptation);
        }
    }

    public InferenceStepResult ToResult(WireCodec codec) =>
        new(StepId, Position, WireTensor.FromValues(new TensorShape(Batch, Tokens, Hidden), _buffer.AsMemory(0, Count), codec));

    /// <summary>Returns the inputs' charge to the queued-input budget early (the buffer stays, e.g. for a re-send).</summary>
    public void ReleaseInputBudget() => Interlocked.Exchange(ref _budget, null)?.ReleaseInput((long)Count * sizeof(float));

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _buffer, null) is { } buffer)
        {
            ArrayPool<float>.Shared.Return(buffer);
            ReleaseInputBudget();
        }
    }
}
