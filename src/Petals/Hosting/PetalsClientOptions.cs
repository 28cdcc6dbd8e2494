using Microsoft.Extensions.DependencyInjection;
using Petals.Client;
using Petals.Protocol;

namespace Petals.Hosting;

/// <summary>
/// Settings of the client that <see cref="PetalsServiceCollectionExtensions.AddPetalsClient"/> registers;
/// validated when the host starts (every failure is listed, each naming the property at fault).
/// </summary>
public sealed class PetalsClientOptions
{
    private static readonly RemoteSequenceOptions Defaults = new();

    /// <summary>The model: the same .gguf file or Hugging Face directory the servers run; only its embeddings, final norm, head and tokenizer are read. Required.</summary>
    public string ModelPath { get; set; } = string.Empty;

    /// <summary>The servers' addresses, e.g. <c>tcp://127.0.0.1:5000</c>; together they must cover every block of the model. At least one.</summary>
    public IList<string> Peers { get; } = new List<string>();

    /// <summary>The model id to announce; null (the default) computes it with <see cref="Formats.ModelIdentity.Compute"/>.</summary>
    public string? ModelId { get; set; }

    /// <summary>The peer id this client announces; null (the default) picks <c>client-</c> and a random suffix.</summary>
    public string? PeerId { get; set; }

    /// <summary>The wire form of hidden states. Default <see cref="WireCodec.Fp32"/> (exact).</summary>
    public WireCodec Codec { get; set; } = Defaults.Codec;

    /// <summary>How long connecting to one server may take. Default 10 s.</summary>
    public TimeSpan ConnectTimeout { get; set; } = Defaults.ConnectTimeout;

    /// <summary>How long one server may take to answer a call. Default 120 s.</summary>
    public TimeSpan RequestTimeout { get; set; } = Defaults.RequestTimeout;

    /// <summary>
    /// How long a server with a call waiting may stay silent (pings unanswered) before it is declared dead; with
    /// discovery its blocks are then routed to other servers. Default 5 s.
    /// </summary>
    public TimeSpan LivenessTimeout { get; set; } = Defaults.LivenessTimeout;

    /// <summary>How many failed servers one step may replace before the failure reaches the caller (with discovery). Default 5.</summary>
    public int MaxRecoveryAttempts { get; set; } = Defaults.MaxRecoveryAttempts;

    /// <summary>
    /// With discovery: the only peers (by peer id) the client may route through; empty (the default) allows every peer.
    /// </summary>
    public ISet<string> AllowedPeers { get; } = new HashSet<string>(StringComparer.Ordinal);

    /// <summary>With discovery: peers (by peer id) the client never routes through. Default empty.</summary>
    public ISet<string> BlockedPeers { get; } = new HashSet<string>(StringComparer.Ordinal);

    /// <summary>This side's protocol limits. Default <see cref="ProtocolLimits.Default"/>.</summary>
    public ProtocolLimits Limits { get; set; } = ProtocolLimits.Default;

    /// <summary>The <see cref="SwarmSequenceOptions"/> these settings stand for (allow and block lists), used with discovery.</summary>
    /// <returns>The options.</returns>
    internal SwarmSequenceOptions ToSwarmOptions()
    {
        var options = new SwarmSequenceOptions();
        options.Router.AllowedPeers.UnionWith(AllowedPeers);
        options.Router.BlockedPeers.UnionWith(BlockedPeers);
        return options;
    }

    /// <summary>The <see cref="RemoteSequenceOptions"/> these settings stand for (not yet validated).</summary>
    /// <returns>The options.</returns>
    internal RemoteSequenceOptions ToSequenceOptions()
    {
        var options = new RemoteSequenceOptions
        {
            Codec = Codec,
            ConnectTimeout = ConnectTimeout,
            RequestTimeout = RequestTimeout,
            LivenessTimeout = LivenessTimeout,
            MaxRecoveryAttempts = MaxRecoveryAttempts,
            Limits = Limits,
        };
        if (PeerId is not null)
        {
            options.PeerId = PeerId;
        }

        return options;
    }
}
