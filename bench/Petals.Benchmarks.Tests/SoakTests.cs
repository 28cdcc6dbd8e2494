using System.Net;
using Petals.Benchmarks.Soak;
using Petals.Protocol;
using Petals.Transport;
using Petals.Transport.Tcp;

namespace Petals.Benchmarks.Tests;

/// <summary>The soak's options, and that its hostile clients speak the real transport framing and protocol (the processes run in bench/soak.sh).</summary>
public sealed class SoakTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(60);

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public void Options_parse_with_defaults_and_pass_server_arguments_through()
    {
        var o = SoakOptions.Parse([]);
        Assert.Equal(SoakOptions.AllPhases, o.Phases);
        Assert.Equal(TimeSpan.FromSeconds(20), o.PhaseDuration);
        Assert.Equal(2000, o.IdleConnections);
        Assert.Equal(IPAddress.Parse("127.0.0.2"), o.HogAddress);
        var custom = SoakOptions.Parse(["--phases", "hog, nan", "--phase-seconds", "5", "--serve-arg", "--max-cache-share", "--serve-arg", "1", "--dht-arg", "--x"]);
        Assert.Equal(["hog", "nan"], custom.Phases);
        Assert.Equal(TimeSpan.FromSeconds(5), custom.PhaseDuration);
        Assert.Equal(["--max-cache-share", "1"], custom.ServeArgs);
        Assert.Equal(["--x"], custom.DhtArgs);
    }

    [Theory]
    [InlineData(new[] { "--phases", "idle,bogus" }, "--phases: unknown phase 'bogus'")]
    [InlineData(new[] { "--phase-seconds", "0" }, "must be positive")]
    [InlineData(new[] { "--hog-sessions" }, "--hog-sessions needs a value")]
    [InlineData(new[] { "--idle" }, "soak: unknown option '--idle'")]
    public void Bad_options_are_named(string[] args, string message)
    {
        var e = Assert.Throws<ArgumentException>(() => SoakOptions.Parse(args));
        Assert.Contains(message, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_raw_transport_speaks_the_tcp_framing_and_the_protocol_from_its_own_source_address()
    {
        await using var listener = await new TcpTransport().ListenAsync(PeerAddress.Parse("tcp://127.0.0.1:0"), Ct);
        var accepted = Task.Run(async () =>
        {
            var stream = await listener.AcceptAsync(Ct);
            var remote = stream.RemoteAddress;
            await using var connection = await ProtocolConnection.AcceptAsync(stream, new ConnectionPreamble("server", "m"), cancellationToken: Ct);
            return remote;
        }, Ct);
        await using var client = await ProtocolConnection.ConnectAsync(new RawTcpTransport(IPAddress.Parse("127.0.0.2")), listener.LocalAddress, new ConnectionPreamble("soak", "m"), cancellationToken: Ct).WaitAsync(Bound, Ct);
        Assert.Equal("server", client.Remote.PeerId);
        var remote = await accepted.WaitAsync(Bound, Ct);
        Assert.Equal("127.0.0.2", remote.Host);
    }

    [Fact]
    public async Task A_raw_client_completes_the_handshake_and_its_raw_bytes_reach_the_server_as_protocol_frames()
    {
        await using var listener = await new TcpTransport().ListenAsync(PeerAddress.Parse("tcp://127.0.0.1:0"), Ct);
        var served = Task.Run(async () =>
        {
            var stream = await listener.AcceptAsync(Ct);
            await using var connection = await ProtocolConnection.AcceptAsync(stream, new ConnectionPreamble("server", "m"), cancellationToken: Ct);
            var inbox = new StreamRouter();
            var run = connection.RunAsync(inbox, Ct);
            return await inbox.NextAsync(1, Bound, Ct);
        }, Ct);
        await using var raw = await RawProtocolClient.ConnectAsync(listener.LocalAddress, "m", null, Ct).WaitAsync(Bound, Ct);
        var ping = RawProtocolClient.Header(8, FrameType.Ping, FrameFlags.None, 1).Concat(BitConverter.GetBytes(42UL)).ToArray();
        foreach (var b in ping)
        {
            Assert.True(await raw.TryWriteAsync(new[] { b }, Ct)); // a byte per transport frame, as the slowloris phase sends
        }

        var received = Assert.IsType<PingMessage>(await served.WaitAsync(Bound, Ct));
        Assert.Equal(42UL, received.Nonce);
    }
}
