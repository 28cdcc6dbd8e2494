using System.Text.Json.Serialization;

namespace Petals.Server.Http.Health;

/// <summary>The swarm as the health monitor last read it: the body of <c>GET /api/v1/state</c> (fields documented in the package README).</summary>
internal sealed record SwarmHealthState(
    DateTimeOffset? UpdatedAt,
    double RefreshSeconds,
    long Refreshes,
    string? Error,
    IReadOnlyList<ModelHealth> Models)
{
    /// <summary>Before the first read.</summary>
    public static SwarmHealthState Empty(double refreshSeconds) => new(null, refreshSeconds, 0, null, []);
}

/// <summary>One model of the swarm.</summary>
internal sealed record ModelHealth(
    string ModelId,
    int BlockCount,
    int ServerCount,
    bool ChainComplete,
    string? Problem,
    int BlocksCovered,
    IReadOnlyList<BlockHealth> Blocks,
    IReadOnlyList<ServerHealth> Servers,
    IReadOnlyList<string> Ignored);

/// <summary>One block of a model: how many online servers hold it and their summed throughput (tokens/s).</summary>
internal sealed record BlockHealth(int Block, int Servers, double Throughput);

/// <summary>One server of a model, as it announces itself.</summary>
internal sealed record ServerHealth(
    string PeerId,
    string? PublicName,
    string Address,
    string State,
    int SpanStart,
    int SpanEnd,
    double Throughput,
    string? ThroughputMethod,
    long CacheTokensLeft,
    string Dtype,
    string? Quantization,
    IReadOnlyList<string> Adapters,
    string Version,
    double ExpiresInSeconds,
    IReadOnlyDictionary<string, double> NextServerRttsMs);

/// <summary>The JSON shape of the state (snake_case, as the rest of the swarm's JSON).</summary>
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower, WriteIndented = false)]
[JsonSerializable(typeof(SwarmHealthState))]
[JsonSerializable(typeof(ServerModels))]
[JsonSerializable(typeof(ErrorBody))]
internal sealed partial class HealthJsonContext : JsonSerializerContext;

/// <summary>An error answer: <c>{"error": "…"}</c>.</summary>
internal sealed record ErrorBody(string Error);

/// <summary>A server's entry in one model.</summary>
internal sealed record ServerModel(string ModelId, ServerHealth Server);

/// <summary>The body of <c>GET /api/v1/servers/{peerId}</c>.</summary>
internal sealed record ServerModels(string PeerId, IReadOnlyList<ServerModel> Models);
