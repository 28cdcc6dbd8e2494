using Petals.Client;
using Petals.Inference;

namespace Petals.Tests.Client.Faults;

/// <summary>Reads the diagnostics of a remote session.</summary>
internal sealed class SessionProbe(ITransformerSession session)
{
    private readonly RemoteSession _session = session as RemoteSession
        ?? throw new InvalidOperationException($"The session is a {session.GetType().FullName}, not a session of a remote sequence.");

    /// <summary>The chain the session runs on now, in block order.</summary>
    public IReadOnlyList<RemoteSpanInfo> CurrentSpans => _session.CurrentSpans;

    /// <summary>The most positions of input history any span of the session holds.</summary>
    public int MaxHistoryPositions => _session.MaxHistoryPositions;
}
