using Microsoft.Extensions.DependencyInjection;
using Petals.Models;
using Petals.Protocol;
using Petals.Server;

namespace Petals.Hosting;

/// <summary>
/// Settings of the block server that <see cref="PetalsServiceCollectionExtensions.AddPetalsServer"/> runs as a hosted service;
/// validated when the host starts (every failure is listed, each naming the property at fault).
/// </summary>
public sealed class PetalsServerOptions
{
    private static readonly BlockServerOptions Defaults = new();

    /// <summary>The model: a .gguf file or a Hugging Face directory. Required; only the tensors of <see cref="Blocks"/> are read.</summary>
    public string ModelPath { get; set; } = string.Empty;

    /// <summary>The span of blocks to serve (end exclusive). Required, at least one block, within the model's blocks.</summary>
    public BlockRange Blocks { get; set; }

    /// <summary>
    /// Where to listen, e.g. <c>tcp://127.0.0.1:0</c> (port 0 picks a free port; read the bound address from
    /// <see cref="IPetalsServer.LocalAddress"/>), <c>quic://0.0.0.0:4433</c> or <c>mem://server-1</c>. Default <c>tcp://127.0.0.1:0</c>.
    /// </summary>
    public string ListenAddress { get; set; } = "tcp://127.0.0.1:0";

    /// <summary>The model id clients must name; null (the default) computes it with <see cref="Formats.ModelIdentity.Compute"/>.</summary>
    public string? ModelId { get; set; }

    /// <summary>
    /// The server's peer id in the handshake. Default <c>"petals-server"</c>. Ignored when a discovery is registered
    /// (<c>UseDiscovery</c>, <c>UseDhtDiscovery</c>): the server then introduces itself with the discovery's
    /// <see cref="Discovery.IPeerDiscovery.LocalPeerId"/>, so clients can match its announcement with its handshake.
    /// </summary>
    public string PeerId { get; set; } = Defaults.PeerId;

    /// <summary>The attention cache budget in tokens (see <see cref="BlockServerOptions.CacheTokens"/>). Default 16384.</summary>
    public long CacheTokens { get; set; } = Defaults.CacheTokens;

    /// <summary>The most <c>batch × tokens</c> per request (see <see cref="BlockServerOptions.MaxBatchTokens"/>). Default 4096.</summary>
    public int MaxBatchTokens { get; set; } = Defaults.MaxBatchTokens;

    /// <summary>The longest session a client may open (see <see cref="BlockServerOptions.MaxSessionLength"/>). Default 2048.</summary>
    public int MaxSessionLength { get; set; } = Defaults.MaxSessionLength;

    /// <summary>How long a session waits for cache tokens (see <see cref="BlockServerOptions.CacheWaitTimeout"/>). Default 30 s.</summary>
    public TimeSpan CacheWaitTimeout { get; set; } = Defaults.CacheWaitTimeout;

    /// <summary>How long a session may stay idle before its cache is freed (see <see cref="BlockServerOptions.SessionIdleTimeout"/>). Default 60 s.</summary>
    public TimeSpan SessionIdleTimeout { get; set; } = Defaults.SessionIdleTimeout;

    /// <summary>The limits enforced on what clients send. Default <see cref="ProtocolLimits.Default"/>.</summary>
    public ProtocolLimits Limits { get; set; } = ProtocolLimits.Default;

    /// <summary>The codecs clients may use. Default <see cref="WireCodecs.All"/>.</summary>
    public WireCodecs Codecs { get; set; } = WireCodecs.All;

    /// <summary>With a discovery: a name to show in swarm monitors, or null (see <see cref="ServerAnnouncerOptions.PublicName"/>). Default null.</summary>
    public string? PublicName { get; set; }

    /// <summary>
    /// With a discovery: the host announced in place of the listener's, e.g. a public IP when listening on <c>0.0.0.0</c>
    /// (see <see cref="ServerAnnouncerOptions.AnnounceHost"/>). Default null (the listener's address as it is).
    /// </summary>
    public string? AnnounceHost { get; set; }

    /// <summary>With a discovery: how often the announcement is republished (see <see cref="ServerAnnouncerOptions.AnnounceInterval"/>). Default 60 s.</summary>
    public TimeSpan AnnounceInterval { get; set; } = AnnouncerDefaults.AnnounceInterval;

    /// <summary>With a discovery: how long an announcement stays valid unless republished; null means 3 × <see cref="AnnounceInterval"/>. Default null.</summary>
    public TimeSpan? AnnounceTimeToLive { get; set; }

    /// <summary>With a discovery: how many servers of the next block to measure round-trip times to (see <see cref="ServerAnnouncerOptions.MaxNextServers"/>). Default 5.</summary>
    public int MaxNextServers { get; set; } = AnnouncerDefaults.MaxNextServers;

    private static readonly ServerAnnouncerOptions AnnouncerDefaults = new();

    /// <summary>The <see cref="ServerAnnouncerOptions"/> these settings stand for.</summary>
    /// <param name="timeProvider">The clock of the republication timer.</param>
    /// <returns>The announcer's options (not yet validated).</returns>
    internal ServerAnnouncerOptions ToAnnouncerOptions(TimeProvider timeProvider) => new()
    {
        PublicName = PublicName,
        AnnounceHost = AnnounceHost,
        AnnounceInterval = AnnounceInterval,
        TimeToLive = AnnounceTimeToLive,
        MaxNextServers = MaxNextServers,
        TimeProvider = timeProvider,
    };

    /// <summary>The <see cref="BlockServerOptions"/> these settings stand for.</summary>
    /// <param name="modelId">The model id to announce.</param>
    /// <param name="timeProvider">The clock for timeouts.</param>
    /// <returns>The block server's options (not yet validated).</returns>
    internal BlockServerOptions ToBlockServerOptions(string modelId, TimeProvider timeProvider) => new()
    {
        Blocks = Blocks,
        ModelId = modelId,
        PeerId = PeerId,
        CacheTokens = CacheTokens,
        MaxBatchTokens = MaxBatchTokens,
        MaxSessionLength = MaxSessionLength,
        CacheWaitTimeout = CacheWaitTimeout,
        SessionIdleTimeout = SessionIdleTimeout,
        Limits = Limits,
        Codecs = Codecs,
        TimeProvider = timeProvider,
    };
}
