using Petals.Models;

namespace Petals.Benchmarks;

/// <summary>
/// Bytes read and floating-point operations of one block step. The same formulas are in
/// <c>bench/pytorch_block.py</c> (<c>metrics</c>), so both sides report comparable GB/s and GFLOP/s.
/// </summary>
/// <param name="WeightBytes">Bytes of weights read once per step.</param>
/// <param name="KvBytesRead">Bytes of keys and values read per step (all cached positions plus the new ones).</param>
/// <param name="Flops">
/// 2 * parameters * tokens plus attention (QK^T and PV) flops over the causally visible keys; for a backward pass, the
/// forward's flops plus the input-gradient products (as many again) and twice the attention's (what PyTorch autograd
/// does with frozen weights): 4 * parameters * tokens + 3 * attention.
/// </param>
internal sealed record BlockMetrics(long WeightBytes, long KvBytesRead, long Flops)
{
    public static BlockMetrics For(ModelConfig c, int weightElementBytes, int kvElementBytes, bool decode, int position, int tokens, bool backward = false)
    {
        var parameters = BlockShapes.ParameterCount(c);
        long kvDim = (long)c.NumKeyValueHeads * c.HeadDim;
        // Key rows attended, summed over the new queries: decode sees position+1 rows; a prefill from
        // position 0 sees 1, 2, ..., tokens rows.
        long attended = decode ? position + tokens : (long)tokens * (tokens + 1) / 2;
        long kvRead = 2 * kvDim * (position + tokens) * kvElementBytes;
        long attentionFlops = 4L * c.NumHeads * c.HeadDim * attended;
        var flops = backward ? (4 * parameters * tokens) + (3 * attentionFlops) : (2 * parameters * tokens) + attentionFlops;
        return new BlockMetrics(parameters * weightElementBytes, kvRead, flops);
    }

    public double GigabytesPerSecond(double milliseconds) => (WeightBytes + KvBytesRead) / (milliseconds / 1000.0) / 1e9;

    public double GigaflopsPerSecond(double milliseconds) => Flops / (milliseconds / 1000.0) / 1e9;
}
