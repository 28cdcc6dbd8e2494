using System.Globalization;
using Petals.Formats;
using Petals.Models;

namespace Petals.Server;

/// <summary>
/// What serving blocks of a model costs in memory, per block and once, and so how many blocks fit a budget: the
/// weights in the dtype they are held in, the attention cache the server offers, and the executor's working buffers.
/// </summary>
/// <param name="WeightBytesPerBlock">The largest block's weights as held in memory (the span's tensors as loaded).</param>
/// <param name="CacheBytesPerBlock">The attention cache per block: the cache tokens offered × keys and values × key/value width × 4 bytes (fp32).</param>
/// <param name="WorkingBytes">
/// The working buffers, once per server: activations of the largest request (<c>MaxBatchTokens</c> × (4 × hidden + 3 ×
/// intermediate) fp32 values) plus attention scores of one request row over the longest session for every head.
/// </param>
public sealed record BlockMemoryEstimate(long WeightBytesPerBlock, long CacheBytesPerBlock, long WorkingBytes)
{
    /// <summary>The share of available memory the default budget takes (<see cref="DefaultBudget"/>).</summary>
    public const double DefaultBudgetShare = 0.5;

    /// <summary>One block's weights and cache.</summary>
    public long BytesPerBlock => WeightBytesPerBlock + CacheBytesPerBlock;

    /// <summary>What a span of <paramref name="blocks"/> blocks costs in all.</summary>
    /// <param name="blocks">The number of blocks.</param>
    /// <returns>The bytes.</returns>
    public long BytesFor(int blocks) => WorkingBytes + (BytesPerBlock * blocks);

    /// <summary>Estimates the cost of serving <paramref name="weights"/> with <paramref name="server"/>'s cache and request limits.</summary>
    /// <param name="weights">The model (its header: shapes and dtypes; nothing is read).</param>
    /// <param name="server">The cache tokens, batch-token and session-length limits the server offers.</param>
    /// <returns>The estimate.</returns>
    public static BlockMemoryEstimate For(IModelWeights weights, BlockServerOptions server)
    {
        ArgumentNullException.ThrowIfNull(weights);
        ArgumentNullException.ThrowIfNull(server);
        var config = weights.Config;
        long weightBytes = 0;
        for (var b = 0; b < config.NumLayers; b++)
        {
            weightBytes = Math.Max(weightBytes, weights.SpanBytes(new BlockRange(b, b + 1)));
        }

        var kvWidth = (long)config.NumKeyValueHeads * config.HeadDim;
        var cache = checked(server.CacheTokens * 2 * kvWidth * sizeof(float));
        var activations = (long)server.MaxBatchTokens * ((4L * config.HiddenSize) + (3L * config.IntermediateSize)) * sizeof(float);
        var scores = (long)config.NumHeads * server.MaxSessionLength * sizeof(float) * Math.Min(server.MaxBatchTokens, server.MaxSessionLength);
        return new BlockMemoryEstimate(weightBytes, cache, activations + scores);
    }

    /// <summary>How many blocks fit <paramref name="budget"/> bytes, at most <paramref name="maxBlocks"/>.</summary>
    /// <param name="budget">The memory budget in bytes.</param>
    /// <param name="maxBlocks">The model's number of blocks.</param>
    /// <returns>The number of blocks, 0 when not even one fits.</returns>
    public int BlocksWithin(long budget, int maxBlocks)
    {
        if (budget <= WorkingBytes || BytesPerBlock <= 0)
        {
            return BytesPerBlock <= 0 && budget > WorkingBytes ? maxBlocks : 0;
        }

        return (int)Math.Min(maxBlocks, (budget - WorkingBytes) / BytesPerBlock);
    }

    /// <summary>
    /// The default memory budget: <see cref="DefaultBudgetShare"/> of the memory available now (Linux <c>MemAvailable</c>,
    /// what new work can take without swapping; elsewhere the runtime's total available memory).
    /// </summary>
    /// <returns>The budget and where its figure came from, e.g. <c>50% of 20.1 GiB available (MemAvailable)</c>.</returns>
    public static (long Bytes, string Why) DefaultBudget()
    {
        var (available, source) = AvailableMemory();
        var budget = (long)(available * DefaultBudgetShare);
        return (budget, string.Create(CultureInfo.InvariantCulture, $"{DefaultBudgetShare * 100:0}% of {FormatBytes(available)} available ({source})"));
    }

    /// <summary>Formats a byte count for people, e.g. <c>1.5 GiB</c>.</summary>
    /// <param name="bytes">The bytes.</param>
    /// <returns>The text.</returns>
    public static string FormatBytes(long bytes) => bytes switch
    {
        >= 1L << 30 => string.Create(CultureInfo.InvariantCulture, $"{bytes / (double)(1L << 30):0.0#} GiB"),
        >= 1L << 20 => string.Create(CultureInfo.InvariantCulture, $"{bytes / (double)(1L << 20):0.0#} MiB"),
        >= 1L << 10 => string.Create(CultureInfo.InvariantCulture, $"{bytes / 1024.0:0.0#} KiB"),
        _ => string.Create(CultureInfo.InvariantCulture, $"{bytes} B"),
    };

    /// <summary>Parses a byte count: a whole number with an optional unit (<c>B</c>, <c>KB</c>/<c>MB</c>/<c>GB</c>/<c>TB</c> in powers of 1000, <c>KiB</c>/<c>MiB</c>/<c>GiB</c>/<c>TiB</c> in powers of 1024), e.g. <c>8GiB</c> or <c>512MiB</c>.</summary>
    /// <param name="text">The text.</param>
    /// <returns>The bytes.</returns>
    /// <exception cref="FormatException">The text is not a positive byte count.</exception>
    public static long ParseBytes(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var trimmed = text.Trim();
        var digits = 0;
        while (digits < trimmed.Length && (char.IsAsciiDigit(trimmed[digits]) || trimmed[digits] == '.'))
        {
            digits++;
        }

        var unit = trimmed[digits..].Trim().ToUpperInvariant();
        long scale = unit switch
        {
            "" or "B" => 1,
            "K" or "KB" => 1000,
            "M" or "MB" => 1000 * 1000,
            "G" or "GB" => 1000L * 1000 * 1000,
            "T" or "TB" => 1000L * 1000 * 1000 * 1000,
            "KIB" => 1L << 10,
            "MIB" => 1L << 20,
            "GIB" => 1L << 30,
            "TIB" => 1L << 40,
            _ => 0,
        };
        if (scale == 0 || !double.TryParse(trimmed[..digits], NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var value)
            || !(value * scale is > 0 and < long.MaxValue))
        {
            throw new FormatException($"'{text}' is not a positive byte count (e.g. 8GiB, 512MiB, 4000000000).");
        }

        return (long)(value * scale);
    }

    private static (long Bytes, string Source) AvailableMemory()
    {
        try
        {
            foreach (var line in File.ReadLines("/proc/meminfo"))
            {
                // "MemAvailable:   20123456 kB"
                if (line.StartsWith("MemAvailable:", StringComparison.Ordinal)
                    && long.TryParse(line["MemAvailable:".Length..].Replace("kB", string.Empty, StringComparison.Ordinal).Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var kb))
                {
                    return (kb * 1024, "MemAvailable");
                }
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // Not Linux, or /proc hidden: the runtime's figure below.
        }

        return (GC.GetGCMemoryInfo().TotalAvailableMemoryBytes, "runtime total available memory");
    }
}
