namespace Petals.Discovery;

/// <summary>Orders ids by their XOR distance from a fixed <see cref="Target"/>, closest first. Thread-safe.</summary>
internal sealed class NodeIdDistanceComparer : IComparer<NodeId>
{
    /// <summary>Creates a comparer relative to <paramref name="target"/>.</summary>
    /// <param name="target">The id distances are measured from.</param>
    public NodeIdDistanceComparer(NodeId target) => Target = target;

    /// <summary>The id distances are measured from.</summary>
    public NodeId Target { get; }

    /// <inheritdoc/>
    public int Compare(NodeId x, NodeId y) => Target.CompareDistance(x, y);
}
