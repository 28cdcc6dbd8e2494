using Petals.Client;
using Petals.Inference;

namespace Petals.Tests.Client.Faults;

/// <summary>Reads the diagnostics of a fault-tolerant session (a session of a chain connected through discovery).</summary>
internal sealed class SessionProbe(ITransformerSession session)
{
    private readonly RemoteTransformerBlocks.RoutedSession _session = session as RemoteTransformerBlocks.RoutedSession
        ?? throw new InvalidOperationException($"The session is a {session.GetType().FullName}, not a session of a chain connected through discovery.");

    /// <summary>The chain the session runs on now, in block order.</summary>
    public IReadOnlyList<RemoteSpanInfo> CurrentSpans => _session.CurrentSpans;

    /// <summary>The most positions of input history any span of the session holds.</summary>
    public int MaxHistoryPositions => _session.MaxHistoryPositions;
}
