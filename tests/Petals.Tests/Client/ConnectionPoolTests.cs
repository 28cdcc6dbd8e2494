using Petals.Client;
using Petals.Models;
using Petals.Protocol;
using Petals.Server;
using Petals.Transport;

namespace Petals.Tests.Client;

/// <summary>The connection pool of a remote sequence, against real memory block servers.</summary>
public sealed class ConnectionPoolTests
{
    private static readonly TimeSpan Bound = ClientRig.Bound;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary>How a call can fail, by name (theory data stays serializable), and whether the pool keeps the connection.</summary>
    public static TheoryData<string, bool> Failures { get; } = new()
    {
        { "remote error", true },
        { "timeout", true },
        { "malformed answer", true },
        { "remote shutting_down", true }, // the connection marks itself failed when its server says so (RemoteTransformerBlocksTests)
        { "transport", false },
        { "io", false },
        { "disposed", false },
        { "fatal protocol", false },
    };

    [Fact]
    public async Task A_working_connection_is_handed_out_again_for_blocks_of_its_span_and_refused_for_others()
    {
        await using var rig = await ClientRig.StartAsync(4, [new(0, 3)]);
        var pool = rig.CreatePool();
        var first = await AcquireAsync(pool, rig.Swarm.Info(0), new BlockRange(0, 3));
        Assert.Same(first, await AcquireAsync(pool, rig.Swarm.Info(0), new BlockRange(1, 2)));
        Assert.True(pool.Pools(first));
        Assert.Equal(1, rig.Swarm.Servers[0].GetStatistics().ConnectionsAccepted);

        var error = await Assert.ThrowsAsync<RemoteChainException>(() => AcquireAsync(pool, rig.Swarm.Info(0), new BlockRange(2, 4)));
        Assert.Equal($"{first.Name} serves blocks 0:3; it is announced with 0:3 and asked for 2:4.", error.Message);
        Assert.True(pool.Pools(first));
    }

    [Fact]
    public async Task A_handshake_that_is_not_the_announced_peer_is_refused_naming_both_ids_unless_peer_ids_are_not_checked()
    {
        await using var rig = await ClientRig.StartAsync(2, [new(0, 2)]);
        var announced = rig.Swarm.Info(0) with { PeerId = "announced-peer" };

        var error = await Assert.ThrowsAsync<RemoteChainException>(() => AcquireAsync(rig.CreatePool(), announced, new BlockRange(0, 2)));
        Assert.Equal($"the server at {announced.Address} is announced as peer announced-peer but its handshake says 'server-0'.", error.Message);
        await rig.WaitForNoConnectionsAsync();

        var lenient = rig.CreatePool(checkPeerIds: false);
        var connection = await AcquireAsync(lenient, announced, new BlockRange(0, 2));
        Assert.True(lenient.Pools(connection));
        Assert.Same(connection, await AcquireAsync(lenient, announced, new BlockRange(0, 2)));
    }

    [Fact]
    public async Task A_server_that_does_not_serve_its_announced_span_or_the_blocks_asked_is_refused()
    {
        await using var rig = await ClientRig.StartAsync(4, [new(0, 2)]);
        var pool = rig.CreatePool();
        var name = $"server 'server-0' at {rig.Swarm.Addresses[0]}";

        var wider = await Assert.ThrowsAsync<RemoteChainException>(() => AcquireAsync(pool, rig.Swarm.Info(0) with { Span = new BlockRange(0, 4) }, new BlockRange(0, 2)));
        Assert.Equal($"{name} is announced with blocks 0:4 but serves 0:2.", wider.Message);

        var outside = await Assert.ThrowsAsync<RemoteChainException>(() => AcquireAsync(pool, rig.Swarm.Info(0), new BlockRange(1, 3)));
        Assert.Equal($"{name} is asked for blocks 1:3 but serves only 0:2.", outside.Message);
        await rig.WaitForNoConnectionsAsync();
    }

    [Fact]
    public async Task A_server_of_another_hidden_size_or_without_the_codec_is_refused_naming_it()
    {
        await using var rig = await ClientRig.StartAsync(2, [new(0, 2), new(0, 2)], o => o.Codecs = o.PeerId == "server-1" ? WireCodecs.Fp32 : WireCodecs.All);

        var wider = rig.CreatePool(config: rig.Config with { HiddenSize = 96 });
        var hidden = await Assert.ThrowsAsync<RemoteChainException>(() => AcquireAsync(wider, rig.Swarm.Info(0), new BlockRange(0, 2)));
        Assert.Equal($"server 'server-0' at {rig.Swarm.Addresses[0]} has hidden size 48, the model has 96.", hidden.Message);

        var bf16 = rig.CreatePool(new RemoteSequenceOptions { Codec = WireCodec.Bf16 });
        var codec = await Assert.ThrowsAsync<RemoteChainException>(() => AcquireAsync(bf16, rig.Swarm.Info(1), new BlockRange(0, 2)));
        Assert.Equal($"server 'server-1' at {rig.Swarm.Addresses[1]} does not accept hidden states as Bf16 (it accepts Fp32).", codec.Message);
        Assert.NotNull(await AcquireAsync(bf16, rig.Swarm.Info(0), new BlockRange(0, 2))); // server 0 takes every codec
    }

    [Fact]
    public async Task A_connection_that_failed_is_replaced_by_a_new_one_on_the_next_acquire()
    {
        await using var rig = await ClientRig.StartAsync(2, [new(0, 2)]);
        var pool = rig.CreatePool();
        var first = await AcquireAsync(pool, rig.Swarm.Info(0), new BlockRange(0, 2));
        first.Connection.Abort("test: the connection broke");
        await ClientRig.WaitUntilAsync(() => first.IsFailed, () => "the aborted connection is not failed");

        var second = await AcquireAsync(pool, rig.Swarm.Info(0), new BlockRange(0, 2));
        Assert.NotSame(first, second);
        Assert.False(second.IsFailed);
        Assert.True(pool.Pools(second));
        Assert.False(pool.Pools(first));
        Assert.Equal(2, rig.Swarm.Servers[0].GetStatistics().ConnectionsAccepted);
    }

    [Fact]
    public async Task Bytes_of_connections_retired_or_replaced_keep_counting()
    {
        await using var rig = await ClientRig.StartAsync(2, [new(0, 2)]);
        var pool = rig.CreatePool();
        var info = rig.Swarm.Info(0);
        var first = await AcquireAsync(pool, info, new BlockRange(0, 2));
        Assert.True(first.Connection.BytesSent > 0 && first.Connection.BytesReceived > 0);
        AssertCounts(pool, first);

        // Retired after a call failed on it: out of the pool, its bytes still counted.
        pool.Retire(first, new TransportException(TransportErrorKind.Aborted, "test: stream aborted"));
        var second = await AcquireAsync(pool, info, new BlockRange(0, 2));
        AssertCounts(pool, first, second);

        // Found failed by the next acquire: closed and replaced, its bytes still counted.
        second.Connection.Abort("test: the connection broke");
        await ClientRig.WaitUntilAsync(() => second.IsFailed, () => "the aborted connection is not failed");
        var third = await AcquireAsync(pool, info, new BlockRange(0, 2));
        Assert.NotSame(second, third);
        AssertCounts(pool, first, second, third);
    }

    [Theory]
    [MemberData(nameof(Failures))]
    public async Task Retire_keeps_a_connection_that_only_carried_a_failed_call_and_drops_one_that_broke(string failure, bool kept)
    {
        await using var rig = await ClientRig.StartAsync(2, [new(0, 2)]);
        var pool = rig.CreatePool();
        var connection = await AcquireAsync(pool, rig.Swarm.Info(0), new BlockRange(0, 2));

        pool.Retire(connection, Failure(failure));
        Assert.Equal(kept, pool.Pools(connection));
        if (kept)
        {
            Assert.False(connection.IsFailed);
            Assert.Same(connection, await AcquireAsync(pool, rig.Swarm.Info(0), new BlockRange(0, 2)));
        }
        else
        {
            await ClientRig.WaitUntilAsync(() => connection.IsFailed, () => "the dropped connection was not aborted");
            Assert.NotSame(connection, await AcquireAsync(pool, rig.Swarm.Info(0), new BlockRange(0, 2)));
        }
    }

    [Fact]
    public async Task A_connection_added_for_a_peer_id_is_handed_out_for_that_peer_and_a_second_one_is_only_owned()
    {
        await using var rig = await ClientRig.StartAsync(2, [new(0, 2)]);
        var pool = rig.CreatePool(checkPeerIds: false);
        var fixedPeer = rig.Swarm.Info(0) with { PeerId = $"server-0@{rig.Swarm.Addresses[0]}" };
        var added = await pool.ConnectAsync(fixedPeer.Address, Ct).WaitAsync(Bound, Ct);
        pool.Add(fixedPeer.PeerId, added);
        var extra = await pool.ConnectAsync(fixedPeer.Address, Ct).WaitAsync(Bound, Ct);
        pool.Add(fixedPeer.PeerId, extra);

        Assert.True(pool.Pools(added));
        Assert.False(pool.Pools(extra));
        Assert.Same(added, await AcquireAsync(pool, fixedPeer, new BlockRange(0, 2)));
        AssertCounts(pool, added, extra);

        // The pool owns both: disposing it closes them.
        await pool.DisposeAsync();
        await rig.WaitForNoConnectionsAsync();
    }

    [Fact]
    public async Task A_disposed_pool_refuses_every_use_with_object_disposed_and_has_closed_its_connections()
    {
        await using var rig = await ClientRig.StartAsync(2, [new(0, 2)]);
        var pool = rig.CreatePool();
        var connection = await AcquireAsync(pool, rig.Swarm.Info(0), new BlockRange(0, 2));
        pool.ThrowIfDisposed();

        await pool.DisposeAsync();
        await Assert.ThrowsAsync<ObjectDisposedException>(() => AcquireAsync(pool, rig.Swarm.Info(0), new BlockRange(0, 2)));
        Assert.Throws<ObjectDisposedException>(pool.ThrowIfDisposed);
        Assert.Throws<ObjectDisposedException>(() => pool.Add("server-0", connection));
        await rig.WaitForNoConnectionsAsync();
        Assert.Equal(1, rig.Swarm.Servers[0].GetStatistics().ConnectionsAccepted); // no connection was made after the dispose
    }

    private static Task<RemoteSpanConnection> AcquireAsync(ConnectionPool pool, Petals.Discovery.ServerInfo server, BlockRange blocks) =>
        pool.AcquireAsync(server, blocks, Ct).WaitAsync(Bound, Ct);

    /// <summary>The pool counts exactly the bytes of <paramref name="connections"/>.</summary>
    private static void AssertCounts(ConnectionPool pool, params RemoteSpanConnection[] connections)
    {
        Assert.Equal(connections.Sum(c => c.Connection.BytesSent), pool.BytesSent);
        Assert.Equal(connections.Sum(c => c.Connection.BytesReceived), pool.BytesReceived);
    }

    private static Exception Failure(string name) => name switch
    {
        "remote error" => new ProtocolException(ProtocolErrorCode.Internal, "test: the step failed") { IsRemoteError = true },
        "timeout" => new TimeoutException("test: no answer in time"),
        "malformed answer" => new ProtocolException(ProtocolErrorCode.Internal, "test: a malformed answer"),
        "remote shutting_down" => new ProtocolException(BlockServerErrors.ShuttingDown, "test: the server is shutting down") { IsRemoteError = true },
        "transport" => new TransportException(TransportErrorKind.Aborted, "test: stream aborted"),
        "io" => new IOException("test: broken pipe"),
        "disposed" => new ObjectDisposedException("test: the stream"),
        "fatal protocol" => new ProtocolException(ProtocolErrorCode.Internal, "test: a corrupt frame") { IsConnectionFatal = true },
        _ => throw new ArgumentOutOfRangeException(nameof(name), name, "no such failure"),
    };
}
