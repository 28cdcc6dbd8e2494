using Petals.Discovery;

namespace Petals.Server;

/// <summary>A snapshot of a <see cref="ServerAnnouncer"/>'s counters.</summary>
/// <param name="State">The state announced last.</param>
/// <param name="Announcements">Announcements accepted by the discovery (by at least one node for at least one block).</param>
/// <param name="Failures">Announcements that failed or that no node accepted (each retried at the next period).</param>
/// <param name="Skipped">Periodic republications skipped because the previous one was still in progress.</param>
/// <param name="LastAnnouncedAt">When the last accepted announcement was made, or null.</param>
/// <param name="ExpiresAt">When the last announcement sent expires unless republished, or null before the first.</param>
/// <param name="NextServersMeasured">How many next-block servers the last round-trip measurement reached.</param>
public sealed record ServerAnnouncerStatistics(
    ServerState State,
    long Announcements,
    long Failures,
    long Skipped,
    DateTimeOffset? LastAnnouncedAt,
    DateTimeOffset? ExpiresAt,
    int NextServersMeasured);
