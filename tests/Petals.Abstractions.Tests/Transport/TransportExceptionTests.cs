using Petals.Transport;

namespace Petals.Abstractions.Tests.Transport;

public sealed class TransportExceptionTests
{
    [Fact]
    public void Abort_errors_carry_the_kind_the_address_and_the_reason_in_the_documented_words()
    {
        var address = PeerAddress.Parse("tcp://10.0.0.1:31337");
        var local = TransportException.AbortedLocally(address, "done here");
        var remote = TransportException.AbortedByPeer(address, "server gave up");
        Assert.Equal(TransportErrorKind.Aborted, local.Kind);
        Assert.Equal(TransportErrorKind.Aborted, remote.Kind);
        Assert.Equal("Stream with tcp://10.0.0.1:31337 aborted locally: done here", local.Message);
        Assert.Equal("Stream with tcp://10.0.0.1:31337 aborted by peer: server gave up", remote.Message);
    }
}
