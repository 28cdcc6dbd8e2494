using System.Reflection;
using Petals.Tensors;

namespace Petals.Server;

/// <summary>Settings of a <see cref="ServerAnnouncer"/>; checked by <see cref="Validate"/> when the announcer is built.</summary>
/// <remarks>Set the properties, then hand the instance to the announcer; do not change it afterwards.</remarks>
public sealed class ServerAnnouncerOptions
{
    /// <summary>How often the announcement is republished (with fresh free cache and round-trip times). Default 60 s.</summary>
    public TimeSpan AnnounceInterval { get; set; } = TimeSpan.FromSeconds(60);

    /// <summary>
    /// How long each announcement stays valid unless republished; null means 3 × <see cref="AnnounceInterval"/>
    /// (so two lost republications in a row do not make the server disappear). Default null. At most 6 hours (the DHT's
    /// limit on how far a record may be dated into the future).
    /// </summary>
    public TimeSpan? TimeToLive { get; set; }

    /// <summary>The most servers of the next block (the one right after the span) whose round-trip time is measured and announced. 0 measures none. Default 5.</summary>
    public int MaxNextServers { get; set; } = 5;

    /// <summary>How long one connect-and-ping to a next server may take before that server is left out of the round-trip times. Default 5 s.</summary>
    public TimeSpan PingTimeout { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>A name the operator chooses to show in swarm monitors, or null. At most 64 characters. Default null.</summary>
    public string? PublicName { get; set; }

    /// <summary>The server software version announced. Default: the informational version of the Petals assembly.</summary>
    public string Version { get; set; } = DefaultVersion;

    /// <summary>The dtype the blocks' weights are held in, as announced. Default <see cref="TensorDType.F32"/>.</summary>
    public TensorDType DType { get; set; } = TensorDType.F32;

    /// <summary>
    /// The host announced in place of the listener's (e.g. a public IP or DNS name when the server binds
    /// <c>0.0.0.0</c> behind a NAT port-forward); the scheme and port stay the listener's. Null announces the listener's
    /// address as it is. Default null.
    /// </summary>
    public string? AnnounceHost { get; set; }

    /// <summary>The clock of the republication timer and of announcement expirations (tests pass a manual one). Default <see cref="TimeProvider.System"/>.</summary>
    public TimeProvider TimeProvider { get; set; } = TimeProvider.System;

    /// <summary>The informational version of the Petals assembly (what <see cref="Version"/> defaults to).</summary>
    public static string DefaultVersion { get; } =
        typeof(ServerAnnouncerOptions).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion
        ?? typeof(ServerAnnouncerOptions).Assembly.GetName().Version?.ToString()
        ?? "0.0.0";

    /// <summary>The time-to-live in effect: <see cref="TimeToLive"/>, or 3 × <see cref="AnnounceInterval"/> when it is null.</summary>
    public TimeSpan EffectiveTimeToLive => TimeToLive ?? AnnounceInterval * 3;

    /// <summary>A copy whose changes do not affect this instance (hosts fill in the fields they own on a copy).</summary>
    /// <returns>The copy.</returns>
    public ServerAnnouncerOptions Clone() => (ServerAnnouncerOptions)MemberwiseClone();

    /// <summary>Checks every setting.</summary>
    /// <exception cref="ArgumentException">When a setting is missing or out of range; the message names it.</exception>
    public void Validate()
    {
        if (AnnounceInterval <= TimeSpan.Zero || AnnounceInterval > BlockServerOptions.MaxTimeout)
        {
            throw new ArgumentOutOfRangeException(nameof(AnnounceInterval), AnnounceInterval, $"{nameof(AnnounceInterval)} must be positive and at most 49.7 days.");
        }

        var ttl = EffectiveTimeToLive;
        if (ttl <= TimeSpan.Zero || ttl > MaxTimeToLive)
        {
            throw new ArgumentOutOfRangeException(nameof(TimeToLive), ttl, $"{nameof(TimeToLive)} (3 x {nameof(AnnounceInterval)} when not set) must be positive and at most {MaxTimeToLive.TotalMinutes:0} minutes, not {ttl}.");
        }

        if (ttl < AnnounceInterval)
        {
            throw new ArgumentOutOfRangeException(nameof(TimeToLive), ttl, $"{nameof(TimeToLive)} {ttl} is shorter than {nameof(AnnounceInterval)} {AnnounceInterval}: the announcement would lapse between republications.");
        }

        ArgumentOutOfRangeException.ThrowIfNegative(MaxNextServers, nameof(MaxNextServers));
        if (PingTimeout <= TimeSpan.Zero || PingTimeout > BlockServerOptions.MaxTimeout)
        {
            throw new ArgumentOutOfRangeException(nameof(PingTimeout), PingTimeout, $"{nameof(PingTimeout)} must be positive and at most 49.7 days.");
        }

        if (PublicName is { Length: > MaxPublicNameLength })
        {
            throw new ArgumentException($"{nameof(PublicName)} has {PublicName.Length} characters; at most {MaxPublicNameLength} are allowed.", nameof(PublicName));
        }

        ArgumentNullException.ThrowIfNull(Version, nameof(Version));
        if (Version.Length > MaxVersionLength)
        {
            throw new ArgumentException($"{nameof(Version)} has {Version.Length} characters; at most {MaxVersionLength} are allowed.", nameof(Version));
        }

        if (AnnounceHost is not null && (AnnounceHost.Length == 0 || AnnounceHost.Any(char.IsWhiteSpace) || AnnounceHost.Contains('/', StringComparison.Ordinal)))
        {
            throw new ArgumentException($"{nameof(AnnounceHost)} '{AnnounceHost}' is not a host name or IP address.", nameof(AnnounceHost));
        }

        ArgumentNullException.ThrowIfNull(TimeProvider, nameof(TimeProvider));
    }

    /// <summary>
    /// The longest time-to-live allowed: a minute under the 6 hours the DHT accepts, so that an announcement made right
    /// after another (its expiration raised 1 ms past the previous one) is never beyond the DHT's limit.
    /// </summary>
    internal static readonly TimeSpan MaxTimeToLive = TimeSpan.FromHours(6) - TimeSpan.FromMinutes(1);

    internal const int MaxPublicNameLength = 64;

    internal const int MaxVersionLength = 128;
}
