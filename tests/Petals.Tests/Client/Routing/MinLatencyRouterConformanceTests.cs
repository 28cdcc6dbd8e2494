using Petals.Client.Routing;
using Petals.Routing;

namespace Petals.Tests.Client.Routing;

/// <summary>The conformance suite for <see cref="MinLatencyRouter"/>.</summary>
public sealed class MinLatencyRouterConformanceTests : RouterConformanceTests
{
    /// <inheritdoc />
    protected override IRouter CreateRouter() => new MinLatencyRouter(new RouterOptions(), new Random(5));
}
