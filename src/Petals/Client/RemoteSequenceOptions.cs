using Petals.Protocol;

namespace Petals.Client;

/// <summary>How a client talks to the servers of a remote chain.</summary>
public sealed class RemoteSequenceOptions
{
    /// <summary>The peer id this client announces. Default: <c>client-</c> and a random suffix.</summary>
    public string PeerId { get; set; } = "client-" + Guid.NewGuid().ToString("N")[..12];

    /// <summary>
    /// The wire form of the hidden states in both directions. Default fp32 (exact); fp16 and bf16 halve the bytes;
    /// <see cref="WireCodec.Int8Blockwise"/> takes 1.0625 bytes per element (lossy, within absmax/254 per block of 64).
    /// Every server of the chain must advertise the codec (protocol 1.2 for int8): a server that does not is refused
    /// with a message naming it and the codec (no silent fallback to another codec).
    /// </summary>
    public WireCodec Codec { get; set; } = WireCodec.Fp32;

    /// <summary>
    /// How gradients travel in backward calls (the gradients of the outputs sent, those of the inputs, prompts and LoRA
    /// weights received). Default <see cref="WireCodec.Fp32"/>: gradients span many orders of magnitude and shrink
    /// through the blocks, so fp16 underflows the small ones (below about 6e-8) and bf16 or int8 keep only 2-3 digits,
    /// which makes remote training drift from local training; a training step is compute-bound, so the bytes saved
    /// would buy little. Prompts and LoRA weights are always sent as fp32 (they are the trained values).
    /// </summary>
    public WireCodec GradientCodec { get; set; } = WireCodec.Fp32;

    /// <summary>How long connecting to one server and its info call may take. Default 10 s.</summary>
    public TimeSpan ConnectTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>How long one server may take to answer a step or forward call. Default 120 s.</summary>
    public TimeSpan RequestTimeout { get; set; } = TimeSpan.FromSeconds(120);

    /// <summary>
    /// How long a connection with a call waiting for its answer may stay silent (no byte received) before the server is
    /// declared dead and the connection aborted; pings are sent after a third of it, and a live server answers them even
    /// while it computes. This bounds how long a frozen or unreachable server can hold a step, independently of
    /// <see cref="RequestTimeout"/> (which bounds a slow but live server). Default 5 s.
    /// </summary>
    public TimeSpan LivenessTimeout { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// How many times one step (or stateless forward call) may re-route a failed span before the failure is reported to
    /// the caller; 0 turns recovery off (the first failure reaches the caller as the server's own error). Applies to every
    /// remote sequence, over a discovery or fixed addresses. Default 5.
    /// </summary>
    public int MaxRecoveryAttempts { get; set; } = 5;

    /// <summary>
    /// The wait before the second attempt to recover the same step; it doubles with each further attempt (at most 32
    /// times this). The first recovery starts at once. Default 100 ms.
    /// </summary>
    public TimeSpan RecoveryBackoff { get; set; } = TimeSpan.FromMilliseconds(100);

    /// <summary>This side's protocol limits. Default <see cref="ProtocolLimits.Default"/>.</summary>
    public ProtocolLimits Limits { get; set; } = ProtocolLimits.Default;

    /// <summary>
    /// Spot checks of the servers' outputs: how often a span's answer is recomputed elsewhere and compared, and by whom
    /// (<see cref="VerificationOptions"/>, <c>docs/verification.md</c>). Default: off (<see cref="VerificationOptions.Rate"/> 0).
    /// </summary>
    public VerificationOptions Verification { get; set; } = new();

    /// <summary>
    /// When set, the only weight quantization the client runs its blocks on (<c>petals generate --require-quant</c>):
    /// routes use only servers announcing exactly this <see cref="Discovery.ServerInfo.Quantization"/> (<c>"none"</c>,
    /// <c>"int8"</c>, <c>"nf4"</c>, <c>"q8_0"</c>, <c>"q4_k"</c>, <c>"q4_k+q6_k"</c>, …; ordinal), every server's info is
    /// checked against it on connecting, and when none is left for some blocks the error names the requirement and what
    /// the swarm offers. Servers that state no quantization (protocol before 1.2) never match. Quantized blocks give other
    /// outputs, so a client comparing or reproducing results pins it. Applies over a discovery and over fixed addresses
    /// (servers given by address with another quantization are left out). Default null: any.
    /// </summary>
    public string? RequiredQuantization { get; set; }

    /// <summary>A copy whose changes do not affect this instance (<see cref="Verification"/> is copied too).</summary>
    /// <returns>The copy.</returns>
    public RemoteSequenceOptions Clone()
    {
        var clone = (RemoteSequenceOptions)MemberwiseClone();
        clone.Verification = Verification?.Clone()!;
        return clone;
    }

    /// <summary>Checks the options.</summary>
    /// <exception cref="ArgumentException">When a value is out of range; the message names it.</exception>
    public void Validate()
    {
        ArgumentException.ThrowIfNullOrEmpty(PeerId, nameof(PeerId));
        if (!HiddenStateCodec.IsDefined((byte)GradientCodec))
        {
            throw new ArgumentOutOfRangeException(nameof(GradientCodec), GradientCodec, "GradientCodec must be Fp32, Fp16, Bf16 or Int8Blockwise.");
        }

        if (!HiddenStateCodec.IsDefined((byte)Codec))
        {
            throw new ArgumentOutOfRangeException(nameof(Codec), Codec, "Codec must be Fp32, Fp16, Bf16 or Int8Blockwise.");
        }

        if (ConnectTimeout <= TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(ConnectTimeout), ConnectTimeout, "ConnectTimeout must be positive.");
        }

        if (RequestTimeout <= TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(RequestTimeout), RequestTimeout, "RequestTimeout must be positive.");
        }

        if (LivenessTimeout <= TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(LivenessTimeout), LivenessTimeout, "LivenessTimeout must be positive.");
        }

        if (MaxRecoveryAttempts < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxRecoveryAttempts), MaxRecoveryAttempts, "MaxRecoveryAttempts must not be negative (0 disables recovery).");
        }

        if (RecoveryBackoff < TimeSpan.Zero || RecoveryBackoff > TimeSpan.FromMinutes(1))
        {
            throw new ArgumentOutOfRangeException(nameof(RecoveryBackoff), RecoveryBackoff, "RecoveryBackoff must be between 0 and 1 minute.");
        }

        Server.BlockServerOptions.CheckTimerRange(ConnectTimeout, nameof(ConnectTimeout));
        Server.BlockServerOptions.CheckTimerRange(LivenessTimeout, nameof(LivenessTimeout));
        Server.BlockServerOptions.CheckTimerRange(RequestTimeout, nameof(RequestTimeout));
        if (RequiredQuantization is not null && !Discovery.AnnouncementLimits.IsValidQuantization(RequiredQuantization, out var fault))
        {
            throw new ArgumentException($"RequiredQuantization is invalid: {fault}", nameof(RequiredQuantization));
        }

        ArgumentNullException.ThrowIfNull(Limits, nameof(Limits));
        Limits.Validate();
        ArgumentNullException.ThrowIfNull(Verification, nameof(Verification));
        Verification.Validate();
    }
}
