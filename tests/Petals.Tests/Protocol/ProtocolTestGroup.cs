namespace Petals.Tests.Protocol;

/// <summary>
/// The protocol tests allocate heavily (tens of thousands of fuzzed streams) and would skew tests elsewhere that count
/// process-wide allocations (<c>GC.GetTotalAllocatedBytes</c>), so they run on their own, after the parallel tests.
/// Their own allocation assertions use per-thread counters.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class ProtocolTestGroup
{
    public const string Name = "Protocol (not parallel)";
}
