using System.Buffers.Binary;
using System.Diagnostics;
using Petals.Testing.Time;
using Petals.Testing.Transport;
using Petals.Transport;
using static Petals.Discovery.Tests.DhtTestKit;

namespace Petals.Discovery.Tests.Network;

/// <summary>Protocol v2: signed requests and responses, the timestamp window, replays, the identity puzzle, old versions, rate limits and verified addresses.</summary>
public sealed class DhtAuthenticationTests
{
    private static readonly TimeSpan Bound = DhtTestNetwork.Bound;

    private static Task<DhtMessage> ExchangeAsync(DhtTestNetwork network, DhtNode node, byte[] frame, CancellationToken ct) =>
        DhtNodeTests.ExchangeAsync(network, node.LocalAddress, frame, ct);

    [Fact]
    public async Task A_request_signed_by_another_key_or_tampered_is_refused_as_Unauthenticated_and_never_remembered()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var network = new DhtTestNetwork();
        var node = await network.AddAsync(null, ct);
        var sender = new DhtSender(Identities[0].NodeId, Identities[0].PublicKey, PeerAddress.Parse("mem://signed"));

        // Signed by identity 1 while carrying identity 0's key and id.
        var forged = await ExchangeAsync(network, node, Frame(new DhtMessage(DhtMessageType.Ping, 1, sender), signer: Identities[1], puzzleNonce: Identities[0].SolvePuzzle(DhtNodeOptions.Default.PuzzleDifficulty)), ct);
        Assert.Equal(DhtErrorCode.Unauthenticated, forged.ErrorCode);
        Assert.Equal(1UL, forged.RequestId);

        // Signed by the right key, then one byte of the request id changed on the way.
        var tampered = Frame(new DhtMessage(DhtMessageType.Ping, 2, sender));
        tampered[4 + 2] ^= 1;
        Assert.Equal(DhtErrorCode.Unauthenticated, (await ExchangeAsync(network, node, tampered, ct)).ErrorCode);

        Assert.Equal(2, node.RequestsUnauthenticated);
        await DhtTestNetwork.QuiesceAsync([node], ct);
        Assert.Equal(0, node.Routing.Count);
        Assert.Equal(0L, node.ContactsVerified + node.ContactsRejected);
    }

    [Fact]
    public async Task Requests_outside_the_timestamp_window_are_stale_and_a_replayed_request_is_refused()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var network = new DhtTestNetwork();
        var node = await network.AddAsync(null, ct);
        var sender = new DhtSender(Identities[0].NodeId, Identities[0].PublicKey, default);
        var now = network.Time.GetUtcNow();
        var skew = node.Options.RequestClockSkew;

        Assert.Equal(DhtErrorCode.StaleRequest, (await ExchangeAsync(network, node, Frame(new DhtMessage(DhtMessageType.Ping, 1, sender), now - skew - TimeSpan.FromSeconds(1)), ct)).ErrorCode);
        Assert.Equal(DhtErrorCode.StaleRequest, (await ExchangeAsync(network, node, Frame(new DhtMessage(DhtMessageType.Ping, 2, sender), now + skew + TimeSpan.FromSeconds(1)), ct)).ErrorCode);
        var edge = await ExchangeAsync(network, node, Frame(new DhtMessage(DhtMessageType.Ping, 3, sender), now - skew), ct);
        Assert.Equal(DhtMessageType.Pong, edge.Type);

        // The same signed frame delivered twice: the second is a replay, even though its signature and timestamp are fine.
        var frame = Frame(new DhtMessage(DhtMessageType.FindNode, 4, sender) { Target = Identities[3].NodeId }, now);
        Assert.Equal(DhtMessageType.Nodes, (await ExchangeAsync(network, node, frame, ct)).Type);
        var replay = await ExchangeAsync(network, node, frame, ct);
        Assert.Equal(DhtErrorCode.Replayed, replay.ErrorCode);
        Assert.Equal(3, node.RequestsUnauthenticated);
    }

    [Fact]
    public async Task Every_answer_is_signed_by_the_responder_and_bound_to_the_request_nonce()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var network = new DhtTestNetwork();
        var node = await network.AddAsync(null, ct);
        var nonce = new byte[DhtMessageCodec.NonceSize];
        nonce[0] = 42;
        var request = new DhtMessage(DhtMessageType.Ping, 9, new DhtSender(Identities[0].NodeId, Identities[0].PublicKey, default)) { Nonce = nonce };
        var pong = await ExchangeAsync(network, node, Frame(request), ct);
        Assert.Equal(node.Id, pong.Sender.Id);
        Assert.True(DhtMessageCodec.VerifySignature(pong, nonce));
        var other = (byte[])nonce.Clone();
        other[0] = 43;
        Assert.False(DhtMessageCodec.VerifySignature(pong, other));
        Assert.False(DhtMessageCodec.VerifySignature(pong, default));
    }

    [Fact]
    public async Task A_hostile_responder_whose_answer_is_not_bound_to_the_request_is_treated_as_failed()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var network = new DhtTestNetwork();
        var node = await network.AddAsync(null, ct);
        var evil = new DhtSender(Identities[2].NodeId, Identities[2].PublicKey, PeerAddress.Parse("mem://unbound"));
        await using var listener = await network.Transport.ListenAsync(evil.Address, ct);
        var serve = Task.Run(
            async () =>
            {
                var stream = await listener.AcceptAsync(ct);
                await using var _ = stream;
                var request = await DhtMessageCodec.ReadFrameAsync(stream, ct);

                // A well-signed PONG, but bound to no request (as if replayed from another exchange).
                await stream.WriteAsync(Frame(new DhtMessage(DhtMessageType.Pong, request!.RequestId, evil)), ct);
                await stream.CompleteWritesAsync(ct);
            },
            ct);
        var join = await node.JoinAsync([evil.Address], ct).WaitAsync(Bound, ct);
        await serve.WaitAsync(Bound, ct);
        Assert.Equal(0, join.Answered);
        Assert.Contains("signature", Assert.Single(join.Peers).Failure, StringComparison.Ordinal);
        Assert.Null(node.Routing.Find(evil.Id));
    }

    [Fact]
    public async Task A_sender_without_a_solution_of_the_identity_puzzle_is_refused_with_InsufficientWork()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var network = new DhtTestNetwork();
        var node = await network.AddAsync(null, ct);
        var key = Identities[0].PublicKey;
        ulong wrong = 0;
        while (IdentityPuzzle.IsSolved(key.Span, wrong, node.Options.PuzzleDifficulty))
        {
            wrong++;
        }

        var sender = new DhtSender(Identities[0].NodeId, key, default);
        var refused = await ExchangeAsync(network, node, Frame(new DhtMessage(DhtMessageType.Ping, 1, sender), puzzleNonce: wrong), ct);
        Assert.Equal(DhtErrorCode.InsufficientWork, refused.ErrorCode);
        var right = Identities[0].SolvePuzzle(node.Options.PuzzleDifficulty);
        Assert.True(IdentityPuzzle.IsSolved(key.Span, right, node.Options.PuzzleDifficulty));
        Assert.Equal(DhtMessageType.Pong, (await ExchangeAsync(network, node, Frame(new DhtMessage(DhtMessageType.Ping, 2, sender), puzzleNonce: right), ct)).Type);
    }

    [Fact]
    public void The_puzzle_solution_is_deterministic_and_needs_the_stated_zero_bits()
    {
        var identity = Identities[5];
        var nonce = identity.SolvePuzzle(12);
        Assert.Equal(nonce, IdentityPuzzle.Solve(identity.PublicKey.Span, 12));
        Assert.True(IdentityPuzzle.IsSolved(identity.PublicKey.Span, nonce, 12));
        for (ulong smaller = 0; smaller < nonce; smaller++)
        {
            Assert.False(IdentityPuzzle.IsSolved(identity.PublicKey.Span, smaller, 12));
        }

        Assert.True(IdentityPuzzle.IsSolved(identity.PublicKey.Span, 12345, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => identity.SolvePuzzle(IdentityPuzzle.MaxDifficulty + 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => identity.SolvePuzzle(-1));
    }

    [Fact]
    public async Task A_version_1_request_gets_an_UnsupportedVersion_error_in_version_1_format()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var network = new DhtTestNetwork();
        var node = await network.AddAsync(null, ct);

        // A version-1 PING: version, type, request id, sender id, key length, key, address (no signature).
        var key = Identities[0].PublicKey.Span;
        var body = new List<byte> { 1, (byte)DhtMessageType.Ping };
        body.AddRange(BitConverter.GetBytes(77UL));
        body.AddRange(Identities[0].NodeId.ToByteArray());
        body.Add((byte)key.Length);
        body.AddRange(key.ToArray());
        body.AddRange(new byte[] { 0, 0 });
        var frame = new byte[4 + body.Count];
        BinaryPrimitives.WriteUInt32LittleEndian(frame, (uint)body.Count);
        body.CopyTo(frame, 4);

        var stream = await network.Transport.ConnectAsync(node.LocalAddress, ct);
        await using var _ = stream;
        await stream.WriteAsync(frame, ct);
        await stream.CompleteWritesAsync(ct);
        var answer = await DhtMessageCodec.ReadFrameBodyAsync(stream, ct).AsTask().WaitAsync(Bound, ct);
        Assert.NotNull(answer);
        Assert.Equal(DhtMessageCodec.LegacyVersion, answer[0]);
        Assert.Equal((byte)DhtMessageType.Error, answer[1]);
        Assert.Equal(77UL, BinaryPrimitives.ReadUInt64LittleEndian(answer.AsSpan(2)));
        var at = 10 + NodeId.Size;
        at += 1 + answer[at];
        at += 2 + BinaryPrimitives.ReadUInt16LittleEndian(answer.AsSpan(at));
        Assert.Equal((ushort)DhtErrorCode.UnsupportedVersion, BinaryPrimitives.ReadUInt16LittleEndian(answer.AsSpan(at)));
        Assert.Equal(1, node.RequestsUnauthenticated);
    }

    [Fact]
    public async Task A_sender_over_its_request_or_record_rate_is_refused_with_RateLimited_until_its_bucket_refills()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var network = new DhtTestNetwork(new DhtNodeOptions { SenderRequestBurst = 5, SenderRequestsPerSecond = 2, SenderRecordBurst = 3, SenderRecordsPerSecond = 1 });
        var node = await network.AddAsync(null, ct);
        var sender = new DhtSender(Identities[0].NodeId, Identities[0].PublicKey, default);
        ulong id = 0;
        DhtMessage Ping() => new(DhtMessageType.Ping, ++id, sender);
        for (var i = 0; i < 5; i++)
        {
            Assert.Equal(DhtMessageType.Pong, (await ExchangeAsync(network, node, Frame(Ping(), network.Time.GetUtcNow()), ct)).Type);
        }

        var limited = await ExchangeAsync(network, node, Frame(Ping(), network.Time.GetUtcNow()), ct);
        Assert.Equal(DhtErrorCode.RateLimited, limited.ErrorCode);
        Assert.Contains("2 requests/s", limited.ErrorMessage, StringComparison.Ordinal);

        // Another sender is not affected; half a second later the first has one token again.
        var other = new DhtSender(Identities[1].NodeId, Identities[1].PublicKey, default);
        Assert.Equal(DhtMessageType.Pong, (await ExchangeAsync(network, node, Frame(new DhtMessage(DhtMessageType.Ping, 1, other), network.Time.GetUtcNow()), ct)).Type);
        network.Time.Advance(TimeSpan.FromMilliseconds(500));
        Assert.Equal(DhtMessageType.Pong, (await ExchangeAsync(network, node, Frame(Ping(), network.Time.GetUtcNow()), ct)).Type);
        Assert.Equal(DhtErrorCode.RateLimited, (await ExchangeAsync(network, node, Frame(Ping(), network.Time.GetUtcNow()), ct)).ErrorCode);

        // STORE also spends one record token per record: 4 records exceed a burst of 3.
        var expires = network.Time.GetUtcNow().AddMinutes(5);
        var records = Enumerable.Range(0, 4).Select(i => Signed(Identities[2], $"r{i}", [1], expires)).ToArray();
        var store = await ExchangeAsync(network, node, Frame(new DhtMessage(DhtMessageType.Store, 1, other) { Records = records }, network.Time.GetUtcNow()), ct);
        Assert.Equal(DhtErrorCode.RateLimited, store.ErrorCode);
        Assert.Contains("stored records/s", store.ErrorMessage, StringComparison.Ordinal);
        Assert.Equal(0, node.Storage.RecordCount);
        Assert.Equal(3, node.RequestsRateLimited);
    }

    [Fact]
    public async Task The_remote_host_is_rate_limited_across_all_its_sender_ids()
    {
        var ct = TestContext.Current.CancellationToken;
        var time = new ManualTimeProvider(Start);
        var memory = new MemoryTransport();
        var self = DhtTestNetwork.Identity(0);
        var listener = await memory.ListenAsync(PeerAddress.Parse("mem://host-limit"), ct);
        var options = new DhtNodeOptions { HostRequestBurst = 3, PuzzleDifficulty = 0 };
        await using var handler = new DhtRpcHandler(listener, DhtSender.For(self, listener.LocalAddress, 0), self, options, time, new RoutingTable(self.NodeId, 20, 20, time), new RecordStorage(null, null, time), (_, _) => { });
        var host = PeerAddress.Parse("tcp://10.1.2.3:40000");
        for (var i = 0; i < 4; i++)
        {
            var request = DhtMessageCodec.Decode(Frame(new DhtMessage(DhtMessageType.Ping, 1, new DhtSender(Identities[i].NodeId, Identities[i].PublicKey, default))).AsSpan(4));
            var refusal = handler.Authenticate(request, host);
            if (i < 3)
            {
                Assert.Null(refusal);
            }
            else
            {
                Assert.Equal(DhtErrorCode.RateLimited, refusal?.ErrorCode);
                Assert.Contains("10.1.2.3", refusal!.ErrorMessage, StringComparison.Ordinal);
            }
        }

        // Another host is not affected.
        var fresh = DhtMessageCodec.Decode(Frame(new DhtMessage(DhtMessageType.Ping, 2, new DhtSender(Identities[4].NodeId, Identities[4].PublicKey, default))).AsSpan(4));
        Assert.Null(handler.Authenticate(fresh, PeerAddress.Parse("tcp://10.1.2.4:40000")));
        Assert.Equal(1, handler.RequestsRateLimited);
    }

    [Theory]
    [InlineData("tcp://127.0.0.1:5000", "tcp://127.0.0.1:61234", true)]
    [InlineData("tcp://10.0.0.9:5000", "tcp://127.0.0.1:61234", false)]
    [InlineData("tcp://127.0.0.1:5000", "tcp://[::ffff:127.0.0.1]:61234", true)]
    [InlineData("tcp://[::1]:5000", "tcp://127.0.0.1:61234", false)]
    [InlineData("tcp://node.example:5000", "tcp://127.0.0.1:61234", true)]
    [InlineData("mem://dht-1", "mem://client-7", true)]
    public void A_claimed_IP_host_must_be_the_host_the_stream_came_from(string claimed, string remote, bool matches) =>
        Assert.Equal(matches, DhtMaintenance.HostMatches(PeerAddress.Parse(claimed), PeerAddress.Parse(remote)));

    [Fact]
    public async Task Impersonation_with_a_copy_of_a_nodes_key_and_id_and_a_false_address_does_not_change_its_entry()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var network = new DhtTestNetwork();
        var a = await network.AddAsync(null, ct);
        var b = await network.AddAsync(a, ct);
        Assert.Equal(b.LocalAddress, a.Routing.Find(b.Id)?.Address);
        var impostor = PeerIdentity.Generate();
        var evilAddress = PeerAddress.Parse("mem://impostor");
        await using var listener = await network.Transport.ListenAsync(evilAddress, ct);

        // The attack: a PING with a copy of B's public key and id and a false address, signed by the impostor
        // (it has no other key). Refused as Unauthenticated.
        var copy = new DhtSender(b.Id, b.Identity.PublicKey, evilAddress);
        var answer = await ExchangeAsync(network, a, Frame(new DhtMessage(DhtMessageType.Ping, 1, copy), network.Time.GetUtcNow(), impostor, puzzleNonce: b.Identity.SolvePuzzle(a.Options.PuzzleDifficulty)), ct);
        Assert.Equal(DhtErrorCode.Unauthenticated, answer.ErrorCode);

        // Even a request B really signed with a false address (a captured and redirected one cannot be made, but a
        // misconfigured B can) moves nothing until the claimed address answers as B: nobody there answers as B.
        var serve = Task.Run(
            async () =>
            {
                var stream = await listener.AcceptAsync(ct);
                await using var _ = stream;
                var request = await DhtMessageCodec.ReadFrameAsync(stream, ct);
                var reply = new DhtMessage(DhtMessageType.Pong, request!.RequestId, new DhtSender(impostor.NodeId, impostor.PublicKey, evilAddress));
                await stream.WriteAsync(Frame(reply, network.Time.GetUtcNow(), impostor, request.Nonce.Span, impostor.SolvePuzzle(a.Options.PuzzleDifficulty)), ct);
                await stream.CompleteWritesAsync(ct);
            },
            ct);
        var signedByB = await ExchangeAsync(network, a, Frame(new DhtMessage(DhtMessageType.Ping, 2, copy), network.Time.GetUtcNow(), b.Identity), ct);
        Assert.Equal(DhtMessageType.Pong, signedByB.Type);
        await serve.WaitAsync(Bound, ct);
        await DhtTestNetwork.QuiesceAsync([a], ct);
        Assert.Equal(b.LocalAddress, a.Routing.Find(b.Id)?.Address);
        Assert.Null(a.Routing.Find(impostor.NodeId));
        Assert.True(a.ContactsRejected >= 1);

        // The captured genuine request replayed: refused.
        var genuine = Frame(new DhtMessage(DhtMessageType.Ping, 3, new DhtSender(b.Id, b.Identity.PublicKey, b.LocalAddress)), network.Time.GetUtcNow(), b.Identity);
        Assert.Equal(DhtMessageType.Pong, (await ExchangeAsync(network, a, genuine, ct)).Type);
        Assert.Equal(DhtErrorCode.Replayed, (await ExchangeAsync(network, a, genuine, ct)).ErrorCode);
        Assert.Equal(b.LocalAddress, a.Routing.Find(b.Id)?.Address);
    }

    [Fact]
    public async Task A_legitimate_node_restarted_at_a_new_address_is_updated_once_the_new_address_answers_as_it()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var network = new DhtTestNetwork();
        var a = await network.AddAsync(null, ct);
        var b = await network.AddAsync(a, ct);
        Assert.Equal(b.LocalAddress, a.Routing.Find(b.Id)?.Address);
        await b.StopAsync();

        // Same identity, new port: it joins through A, A pings the new address back and moves the entry.
        await using var restarted = new DhtNode(b.Identity, network.Options, network.Time);
        await restarted.StartAsync(network.Transport, PeerAddress.Parse("mem://restarted"), ct).WaitAsync(Bound, ct);
        Assert.Equal(1, await restarted.BootstrapAsync([a.LocalAddress], ct).WaitAsync(Bound, ct));
        await DhtTestNetwork.QuiesceAsync([a, restarted], ct);
        Assert.Equal(PeerAddress.Parse("mem://restarted"), a.Routing.Find(b.Id)?.Address);
        Assert.True(a.ContactsVerified >= 2);
    }

    [Fact]
    public void Creating_an_identity_at_the_default_puzzle_difficulty_is_measured()
    {
        var output = TestContext.Current.TestOutputHelper;
        var difficulty = DhtNodeOptions.Default.PuzzleDifficulty;
        const int N = 8;
        var keys = TimeSpan.Zero;
        var puzzles = new List<double>();
        for (var i = 0; i < N; i++)
        {
            var clock = Stopwatch.StartNew();
            using var identity = PeerIdentity.Generate();
            keys += clock.Elapsed;
            clock.Restart();
            var nonce = identity.SolvePuzzle(difficulty);
            puzzles.Add(clock.Elapsed.TotalMilliseconds);
            Assert.True(IdentityPuzzle.IsSolved(identity.PublicKey.Span, nonce, difficulty));
        }

        // The expected cost is 2^difficulty tries (the number of tries is geometric, so a few samples scatter widely).
        const int Checks = 100_000;
        IdentityPuzzle.IsSolved(Identities[0].PublicKey.Span, 0, difficulty);
        var checking = Stopwatch.StartNew();
        for (var i = 0; i < Checks; i++)
        {
            IdentityPuzzle.IsSolved(Identities[0].PublicKey.Span, (ulong)i, difficulty);
        }

        var checkUs = checking.Elapsed.TotalMicroseconds / Checks;
        output?.WriteLine($"difficulty {difficulty}: key generation {keys.TotalMilliseconds / N:F2} ms, puzzle mean {puzzles.Average():F0} ms (min {puzzles.Min():F0}, max {puzzles.Max():F0}) over {N} identities; one check {checkUs:F2} us, so 2^{difficulty} tries expected {checkUs * Math.Pow(2, difficulty) / 1000:F0} ms");
        Assert.InRange(checkUs, 0, 1000);
    }

    [Fact]
    public void Signing_and_verifying_a_request_costs_well_under_a_millisecond_each()
    {
        var output = TestContext.Current.TestOutputHelper;
        var identity = Identities[0];
        var request = new DhtMessage(DhtMessageType.FindValue, 1, DhtSender.For(identity, PeerAddress.Parse("mem://x"), 0)) { Key = "llama-7b.12", TimestampUnixMilliseconds = 1 };
        for (var i = 0; i < 20; i++)
        {
            Assert.True(DhtMessageCodec.VerifySignature(DhtMessageCodec.Decode(DhtMessageCodec.EncodeFrame(request, identity).AsSpan(4)), default));
        }

        const int N = 500;
        var sign = Stopwatch.StartNew();
        var frames = new byte[N][];
        for (var i = 0; i < N; i++)
        {
            frames[i] = DhtMessageCodec.EncodeFrame(request, identity);
        }

        sign.Stop();
        var decoded = frames.Select(f => DhtMessageCodec.Decode(f.AsSpan(4))).ToArray();
        var verify = Stopwatch.StartNew();
        foreach (var message in decoded)
        {
            Assert.True(DhtMessageCodec.VerifySignature(message, default));
        }

        verify.Stop();
        var signUs = sign.Elapsed.TotalMicroseconds / N;
        var verifyUs = verify.Elapsed.TotalMicroseconds / N;
        output?.WriteLine($"encode+sign {signUs:F1} us/request, verify {verifyUs:F1} us/request ({N} requests, frame {frames[0].Length} bytes)");
        Assert.InRange(signUs + verifyUs, 0, 5_000);
    }
}
