using Petals.Discovery;
using Petals.Models;

namespace Petals.Routing;

/// <summary>What a router chooses a route from: the servers, the blocks to cover and what the client knows and needs.</summary>
public sealed record RouteRequest
{
    /// <summary>
    /// The candidate servers, at most one entry per peer id. Servers that are not <see cref="ServerState.Online"/> or
    /// whose span does not meet <see cref="Blocks"/> are not used.
    /// </summary>
    public required IReadOnlyList<ServerInfo> Servers { get; init; }

    /// <summary>
    /// The blocks to route: the whole model (<c>0:N</c>) or a sub-range of it, e.g. to replace the servers of a failed
    /// segment without touching the rest of a route.
    /// </summary>
    public required BlockRange Blocks { get; init; }

    /// <summary>The model id, named in errors; may be empty.</summary>
    public string ModelId { get; init; } = string.Empty;

    /// <summary>
    /// The client's smoothed round-trip times to servers, by peer id; a server missing here is costed with the
    /// router's assumed round-trip time for unmeasured servers.
    /// </summary>
    public IReadOnlyDictionary<string, TimeSpan> ClientRtts { get; init; } = new Dictionary<string, TimeSpan>();

    /// <summary>
    /// The attention-cache tokens the inference session needs on each server of the route (batch × maximum length);
    /// 0 when there is no session (forward and backward batches). A server announcing fewer free tokens is avoided.
    /// </summary>
    public long CacheTokensNeeded { get; init; }

    /// <summary>
    /// Peers that failed recently: used only for blocks that no other usable server covers.
    /// </summary>
    public IReadOnlySet<string> BannedPeers { get; init; } = new HashSet<string>();

    /// <summary>
    /// When set, the only weight quantization the route may use: a router must leave out every server whose
    /// <see cref="ServerInfo.Quantization"/> is not exactly this (ordinal; a server that states none does not match), since
    /// quantized blocks give other outputs. Null (the default): any.
    /// </summary>
    public string? RequiredQuantization { get; init; }

    /// <summary>
    /// When set, the server-held adapter every server of the route must hold: a router leaves out every server whose
    /// <see cref="ServerInfo.Adapters"/> does not list this name (ordinal), since only those can apply it. Null (the default): any.
    /// </summary>
    public string? RequiredAdapter { get; init; }
}
