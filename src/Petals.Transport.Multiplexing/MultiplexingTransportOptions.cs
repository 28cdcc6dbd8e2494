namespace Petals.Transport.Multiplexing;

/// <summary>
/// Options of the multiplexing transport decorator (<c>UseMultiplexing(o =&gt; …)</c> or
/// <see cref="TransportMultiplexingExtensions.WithMultiplexing"/>): how many logical streams one physical connection
/// carries, when an idle connection is closed, and how much each stream buffers.
/// </summary>
/// <remarks>Both ends of a connection apply their own options: the listening side refuses channels beyond its limit.</remarks>
public sealed class MultiplexingTransportOptions
{
    /// <summary>
    /// The most logical streams one physical connection carries at a time, in each direction of opening: a connecting
    /// side opens no more than this many on one connection (it fails the connect with
    /// <see cref="TransportErrorKind.ConnectionRefused"/>), and a listening side refuses channels beyond it, so one
    /// peer cannot open unbounded streams. Default 256; at least 1.
    /// </summary>
    public int MaxChannelsPerConnection { get; set; } = 256;

    /// <summary>
    /// How long a physical connection stays open while it carries no stream; then it is closed (both sides apply their
    /// own). A connect after that opens a new connection. Default 60 s; more than zero.
    /// </summary>
    public TimeSpan IdleTimeout { get; set; } = TimeSpan.FromSeconds(60);

    /// <summary>
    /// How many received bytes one stream buffers before its sender waits (back-pressure per stream, so a slow reader
    /// of one stream does not stall the others). Default 256 KiB; at least 16 KiB.
    /// </summary>
    public int ChannelReceiveWindowBytes { get; set; } = 256 * 1024;

    /// <summary>
    /// How long a stream disposed after ending its writes waits for the peer to end its own (so that no data in
    /// flight is cut) before its channel is closed regardless. Default 10 s; not negative.
    /// </summary>
    public TimeSpan CloseLinger { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>The clock of the idle timeout and the close linger. Default <see cref="TimeProvider.System"/>.</summary>
    public TimeProvider TimeProvider { get; set; } = TimeProvider.System;

    /// <summary>Checks every option.</summary>
    /// <exception cref="ArgumentOutOfRangeException">An option is out of range; the message names it.</exception>
    /// <exception cref="ArgumentNullException"><see cref="TimeProvider"/> is null.</exception>
    public void Validate()
    {
        if (MaxChannelsPerConnection < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxChannelsPerConnection), MaxChannelsPerConnection, "MaxChannelsPerConnection must be at least 1.");
        }

        if (IdleTimeout <= TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(IdleTimeout), IdleTimeout, "IdleTimeout must be more than zero.");
        }

        if (ChannelReceiveWindowBytes < 16 * 1024)
        {
            throw new ArgumentOutOfRangeException(nameof(ChannelReceiveWindowBytes), ChannelReceiveWindowBytes, "ChannelReceiveWindowBytes must be at least 16 KiB (16384).");
        }

        if (CloseLinger < TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(CloseLinger), CloseLinger, "CloseLinger must not be negative.");
        }

        ArgumentNullException.ThrowIfNull(TimeProvider, nameof(TimeProvider));
    }

    internal MultiplexingTransportOptions Clone() => (MultiplexingTransportOptions)MemberwiseClone();
}
