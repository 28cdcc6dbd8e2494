using Petals.Protocol;

namespace Petals.Client;

/// <summary>How a client talks to the servers of a remote chain.</summary>
public sealed class RemoteSequenceOptions
{
    /// <summary>The peer id this client announces. Default: <c>client-</c> and a random suffix.</summary>
    public string PeerId { get; set; } = "client-" + Guid.NewGuid().ToString("N")[..12];

    /// <summary>The wire form of the hidden states in both directions. Default fp32 (exact); fp16 and bf16 halve the bytes.</summary>
    public WireCodec Codec { get; set; } = WireCodec.Fp32;

    /// <summary>How long connecting to one server and its info call may take. Default 10 s.</summary>
    public TimeSpan ConnectTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>How long one server may take to answer a step or forward call. Default 120 s.</summary>
    public TimeSpan RequestTimeout { get; set; } = TimeSpan.FromSeconds(120);

    /// <summary>This side's protocol limits. Default <see cref="ProtocolLimits.Default"/>.</summary>
    public ProtocolLimits Limits { get; set; } = ProtocolLimits.Default;

    /// <summary>Checks the options.</summary>
    /// <exception cref="ArgumentException">When a value is out of range; the message names it.</exception>
    public void Validate()
    {
        ArgumentException.ThrowIfNullOrEmpty(PeerId, nameof(PeerId));
        if (!HiddenStateCodec.IsDefined((byte)Codec))
        {
            throw new ArgumentOutOfRangeException(nameof(Codec), Codec, "Codec must be Fp32, Fp16 or Bf16.");
        }

        if (ConnectTimeout <= TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(ConnectTimeout), ConnectTimeout, "ConnectTimeout must be positive.");
        }

        if (RequestTimeout <= TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(RequestTimeout), RequestTimeout, "RequestTimeout must be positive.");
        }

        Server.BlockServerOptions.CheckTimerRange(ConnectTimeout, nameof(ConnectTimeout));
        Server.BlockServerOptions.CheckTimerRange(RequestTimeout, nameof(RequestTimeout));
        ArgumentNullException.ThrowIfNull(Limits, nameof(Limits));
        Limits.Validate();
    }
}
