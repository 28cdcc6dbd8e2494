using Petals.Testing.Conformance;
using Petals.Testing.Transport;
using Petals.Transport;

namespace Petals.Testing.Tests.Transport;

public sealed class MemoryTransportConformanceTests : TransportConformanceTests
{
    protected override ValueTask<TransportUnderTest> CreateTransportAsync()
    {
        var transport = new MemoryTransport();
        return ValueTask.FromResult(new TransportUnderTest(transport, transport, PeerAddress.Parse("mem://server")));
    }

    protected override ValueTask<PeerAddress> GetDeadAddressAsync() => ValueTask.FromResult(PeerAddress.Parse("mem://nobody-here"));
}

public sealed class ShapedMemoryTransportConformanceTests : TransportConformanceTests
{
    // Real clock, small latency and jitter, generous bandwidth: the conformance behaviour must survive shaping.
    protected override int LargePayloadBytes => 16 << 20;

    protected override ValueTask<TransportUnderTest> CreateTransportAsync()
    {
        var options = new NetworkShapingOptions
        {
            RoundTripLatency = TimeSpan.FromMilliseconds(2),
            Jitter = TimeSpan.FromMilliseconds(1),
            Seed = 7,
            BandwidthBytesPerSecond = 2L << 30,
        };
        var transport = new MemoryTransport().WithShaping(options);
        return ValueTask.FromResult(new TransportUnderTest(transport, transport, PeerAddress.Parse("mem://server")));
    }

    protected override ValueTask<PeerAddress> GetDeadAddressAsync() => ValueTask.FromResult(PeerAddress.Parse("mem://nobody-here"));
}
