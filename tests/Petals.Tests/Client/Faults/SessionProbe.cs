using System.Reflection;
using Petals.Client;
using Petals.Inference;

namespace Petals.Tests.Client.Faults;

/// <summary>
/// Reads the diagnostics of a fault-tolerant session (<c>CurrentSpans</c>, <c>MaxHistoryPositions</c>). The session type
/// is private to <see cref="RemoteTransformerBlocks"/>, so its internal members are read by reflection; a missing member
/// fails with its name.
/// </summary>
internal sealed class SessionProbe(ITransformerSession session)
{
    private const BindingFlags Members = BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic;

    private readonly PropertyInfo _spans = Find(session, "CurrentSpans");
    private readonly PropertyInfo _history = Find(session, "MaxHistoryPositions");

    /// <summary>The chain the session runs on now, in block order.</summary>
    public IReadOnlyList<RemoteSpanInfo> CurrentSpans => (IReadOnlyList<RemoteSpanInfo>)_spans.GetValue(session)!;

    /// <summary>The most positions of input history any span of the session holds.</summary>
    public int MaxHistoryPositions => (int)_history.GetValue(session)!;

    private static PropertyInfo Find(ITransformerSession session, string name) =>
        session.GetType().GetProperty(name, Members)
        ?? throw new InvalidOperationException($"The session type {session.GetType().FullName} has no property {name}; is it a session of a chain connected through discovery?");
}
