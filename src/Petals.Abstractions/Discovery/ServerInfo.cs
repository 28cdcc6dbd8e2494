using Petals.Models;
using Petals.Tensors;
using Petals.Transport;

namespace Petals.Discovery;

/// <summary>
/// What a block server announces for each block it serves (one signed sub-record per server under the block's key,
/// e.g. <c>"{model}.{block}"</c>): where to reach it, its state and span, and the figures a client routes by.
/// </summary>
public sealed record ServerInfo
{
    /// <summary>
    /// The announcing peer's id: in the DHT, the 40-digit hex node id derived from its public key (the sub-key its
    /// records are signed under). Readers get the id the record was signed by, never a claimed one.
    /// </summary>
    public required string PeerId { get; init; }

    /// <summary>Where the block server accepts wire-protocol connections, e.g. <c>tcp://10.0.0.5:31337</c>.</summary>
    public required PeerAddress Address { get; init; }

    /// <summary>The server's state.</summary>
    public required ServerState State { get; init; }

    /// <summary>The whole span of blocks the server runs (a request must name exactly this span).</summary>
    public required BlockRange Span { get; init; }

    /// <summary>
    /// Decode throughput per block, in tokens per second: one inference step through the whole span takes about
    /// <c>Span.Count / Throughput</c> seconds. Zero when not measured.
    /// </summary>
    public double Throughput { get; init; }

    /// <summary>Attention-cache tokens still free when the announcement was made (a session costs batch × max length).</summary>
    public long CacheTokensLeft { get; init; }

    /// <summary>The dtype the blocks' weights are held in.</summary>
    public TensorDType DType { get; init; } = TensorDType.F32;

    /// <summary>The server software's version, e.g. <c>"0.4.0"</c>.</summary>
    public string Version { get; init; } = string.Empty;

    /// <summary>A name the operator chose to show in swarm monitors, or null.</summary>
    public string? PublicName { get; init; }

    /// <summary>
    /// How <see cref="Throughput"/> was obtained, in a short line (at most 128 UTF-8 bytes), e.g.
    /// <c>measured: 5 rounds, spread 3%, busy</c>, <c>cached: …</c> or <c>given</c>; null when not said (servers before
    /// this field). An optional trailing field of the record: older readers ignore it.
    /// </summary>
    public string? ThroughputMethod { get; init; }

    /// <summary>
    /// How the server holds its blocks' weights, which changes its outputs (a client may require one,
    /// <c>RemoteSequenceOptions.RequiredQuantization</c>): <c>"none"</c> for fp32/fp16/bf16 weights, a quantize-at-load name
    /// (<c>"int8"</c>, <c>"nf4"</c>, <c>"q8_0"</c>, <c>"q4_k"</c>) or a file's block types joined by <c>'+'</c>
    /// (<c>"q4_k+q6_k"</c>), as its executor reports it (<c>Petals.Execution.ExecutorWeightsInfo</c>); null when not said
    /// (servers before this field, or a server still loading). At most <see cref="AnnouncementLimits.MaxQuantizationBytes"/>
    /// characters of a-z, 0-9, '_' and '+' (<see cref="AnnouncementLimits.IsValidQuantization"/>). An optional trailing
    /// field of the record: older readers ignore it.
    /// </summary>
    public string? Quantization { get; init; }

    /// <summary>
    /// The names of the LoRA adapters this server holds for its span (<c>petals serve --adapters NAME=DIR</c>); a client
    /// that names an adapter is routed only to servers listing it. Empty when none (and from servers before this field).
    /// At most <see cref="AnnouncementLimits.MaxAdapters"/> distinct names, each valid
    /// (<see cref="AnnouncementLimits.IsValidAdapterName"/>). An optional trailing field of the record: older readers ignore it.
    /// </summary>
    public IReadOnlyList<string> Adapters { get; init; } = [];

    /// <summary>
    /// Measured round-trip times from this server to servers of the block right after its span, by their peer id
    /// (what a router adds as the cost of the hop from this server to that one).
    /// </summary>
    public IReadOnlyDictionary<string, TimeSpan> NextServerRtts { get; init; } = new Dictionary<string, TimeSpan>();

    /// <summary>When the announcement expires unless it is republished (set by discovery when reading; ignored when announcing).</summary>
    public DateTimeOffset ExpiresAt { get; init; }
}
