using System.Buffers.Binary;
using Petals.Testing.Transport;
using Petals.Transport;
using static Petals.Discovery.Tests.DhtTestKit;

namespace Petals.Discovery.Tests.Network;

/// <summary>Round trips of every message type, strict decoding, frame bounds and fuzzing of the DHT message codec.</summary>
public sealed class DhtMessageCodecTests
{
    private static DhtSender Sender(int i) => new(Identities[i].NodeId, Identities[i].PublicKey, PeerAddress.Parse($"mem://node-{i}"));

    private static DhtMessage[] Samples(Random random)
    {
        var sender = Sender(random.Next(Identities.Length));
        var id = (ulong)random.NextInt64();
        var records = Enumerable.Range(0, random.Next(0, 4))
            .Select(_ => Signed(Identities[random.Next(Identities.Length)], RandomKey(random), RandomBytes(random, random.Next(0, 200)), Start.AddMinutes(random.Next(1, 100))))
            .ToArray();
        var contacts = Enumerable.Range(0, random.Next(0, 21)).Select(_ => Contact(RandomId(random))).ToArray();
        return
        [
            new DhtMessage(DhtMessageType.Ping, id, sender),
            new DhtMessage(DhtMessageType.Pong, id, sender),
            new DhtMessage(DhtMessageType.Store, id, sender) { Records = records },
            new DhtMessage(DhtMessageType.StoreResult, id, sender)
            {
                StoreResults = [RecordValidationResult.Accepted, RecordValidationResult.Reject(RecordRejectionReason.ForgedSignature, "bad signature é")],
            },
            new DhtMessage(DhtMessageType.FindNode, id, sender) { Target = RandomId(random) },
            new DhtMessage(DhtMessageType.Nodes, id, sender) { Contacts = contacts },
            new DhtMessage(DhtMessageType.FindValue, id, sender) { Key = RandomKey(random) },
            new DhtMessage(DhtMessageType.Value, id, sender) { Records = records, Contacts = contacts },
            new DhtMessage(DhtMessageType.Error, id, sender) { ErrorCode = DhtErrorCode.IdentityMismatch, ErrorMessage = "no" },
        ];
    }

    private static byte[] Body(DhtMessage message) => DhtTestKit.Frame(message)[4..];

    private static void AssertSame(DhtMessage expected, DhtMessage actual)
    {
        Assert.Equal(expected.Type, actual.Type);
        Assert.Equal(expected.RequestId, actual.RequestId);
        Assert.Equal(expected.Sender.Id, actual.Sender.Id);
        Assert.Equal(expected.Sender.PublicKey.ToArray(), actual.Sender.PublicKey.ToArray());
        Assert.Equal(expected.Sender.Address, actual.Sender.Address);
        Assert.Equal(expected.Target, actual.Target);
        Assert.Equal(expected.Key, actual.Key);
        Assert.Equal(expected.ErrorCode, actual.ErrorCode);
        Assert.Equal(expected.ErrorMessage, actual.ErrorMessage);
        Assert.Equal(expected.Contacts, actual.Contacts);
        Assert.Equal(expected.StoreResults, actual.StoreResults);
        Assert.Equal(expected.Records.Count, actual.Records.Count);
        for (var i = 0; i < expected.Records.Count; i++)
        {
            Assert.True(expected.Records[i].ContentEquals(actual.Records[i]));
        }
    }

    [Fact]
    public void Every_message_type_round_trips()
    {
        var random = new Random(1);
        for (var round = 0; round < 50; round++)
        {
            foreach (var message in Samples(random))
            {
                var frame = DhtTestKit.Frame(message);
                Assert.Equal(frame.Length - 4, (int)BinaryPrimitives.ReadUInt32LittleEndian(frame));
                AssertSame(message, DhtMessageCodec.Decode(frame.AsSpan(4)));
            }
        }
    }

    [Fact]
    public void Sender_identity_consistency_is_the_hash_of_the_key()
    {
        Assert.True(Sender(0).IsIdentityConsistent);
        Assert.False((Sender(0) with { Id = Identities[1].NodeId }).IsIdentityConsistent);
    }

    [Fact]
    public void Every_truncation_and_trailing_byte_is_refused_with_a_field()
    {
        var random = new Random(2);
        foreach (var message in Samples(random))
        {
            var body = Body(message);
            for (var length = 0; length < body.Length; length++)
            {
                var e = Assert.Throws<DhtFormatException>(() => DhtMessageCodec.Decode(body.AsSpan(0, length)));
                Assert.NotNull(e.Message);
            }

            var longer = body.Append((byte)0).ToArray();
            Assert.Throws<DhtFormatException>(() => DhtMessageCodec.Decode(longer));
        }
    }

    [Fact]
    public void Bad_version_type_and_counts_are_named()
    {
        var body = Body(new DhtMessage(DhtMessageType.Nodes, 7, Sender(0)) { Contacts = [Contact(NodeId.MaxValue)] });
        var badVersion = (byte[])body.Clone();
        badVersion[0] = 3;
        Assert.Equal("version", Assert.Throws<DhtFormatException>(() => DhtMessageCodec.Decode(badVersion)).Field);
        var badType = (byte[])body.Clone();
        badType[1] = 42;
        Assert.Equal("message type", Assert.Throws<DhtFormatException>(() => DhtMessageCodec.Decode(badType)).Field);

        // The contact count sits right after the sender (whose puzzle nonce ends it); claim 60000 contacts.
        var countAt = 1 + 1 + 8 + NodeId.Size + 1 + Identities[0].PublicKey.Length + 2 + "mem://node-0".Length + 8;
        Assert.Equal(1, BinaryPrimitives.ReadUInt16LittleEndian(body.AsSpan(countAt)));
        var many = (byte[])body.Clone();
        BinaryPrimitives.WriteUInt16LittleEndian(many.AsSpan(countAt), 60000);
        Assert.Equal("contact count", Assert.Throws<DhtFormatException>(() => DhtMessageCodec.Decode(many)).Field);
        BinaryPrimitives.WriteUInt16LittleEndian(many.AsSpan(countAt), 60);
        Assert.Equal("contact count", Assert.Throws<DhtFormatException>(() => DhtMessageCodec.Decode(many)).Field);
    }

    [Fact]
    public void Random_and_mutated_input_only_ever_throws_DhtFormatException()
    {
        var random = new Random(3);
        var valid = Enumerable.Range(0, 10).SelectMany(_ => Samples(random)).Select(Body).ToArray();
        for (var i = 0; i < 30_000; i++)
        {
            byte[] input;
            if (i % 5 == 0)
            {
                input = RandomBytes(random, random.Next(0, 300));
                if (input.Length > 1)
                {
                    input[0] = DhtMessageCodec.Version;
                }
            }
            else
            {
                input = (byte[])valid[random.Next(valid.Length)].Clone();
                var mutations = random.Next(1, 4);
                for (var m = 0; m < mutations && input.Length > 0; m++)
                {
                    var at = random.Next(input.Length);
                    switch (random.Next(4))
                    {
                        case 0:
                            input[at] ^= (byte)(1 << random.Next(8));
                            break;
                        case 1:
                            input[at] = (byte)random.Next(256);
                            break;
                        case 2:
                            input = input[..at];
                            break;
                        default:
                            input[at] = 0xFF;
                            break;
                    }
                }
            }

            try
            {
                DhtMessageCodec.Decode(input);
            }
            catch (DhtFormatException)
            {
            }
        }
    }

    [Fact]
    public async Task Oversized_and_truncated_frames_are_refused_before_allocation()
    {
        var ct = TestContext.Current.CancellationToken;
        var transport = new MemoryTransport();
        await using var listener = await transport.ListenAsync(PeerAddress.Parse("mem://codec-frames"), ct);
        async Task<DhtFormatException> Send(byte[] bytes)
        {
            var client = await transport.ConnectAsync(listener.LocalAddress, ct);
            await using var _ = client;
            var server = await listener.AcceptAsync(ct).AsTask().WaitAsync(TimeSpan.FromSeconds(10), ct);
            await using var __ = server;
            await client.WriteAsync(bytes, ct);
            await client.CompleteWritesAsync(ct);
            return await Assert.ThrowsAsync<DhtFormatException>(() => DhtMessageCodec.ReadFrameAsync(server, ct).AsTask().WaitAsync(TimeSpan.FromSeconds(10), ct));
        }

        var huge = new byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(huge, 0xFFFF_FFF0);
        Assert.Equal("frame length", (await Send(huge)).Field);
        var justOver = new byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(justOver, DhtMessageCodec.MaxFrameBytes + 1);
        Assert.Equal("frame length", (await Send(justOver)).Field);
        Assert.Equal("frame length", (await Send([1, 0])).Field);
        var frame = DhtTestKit.Frame(new DhtMessage(DhtMessageType.Ping, 1, Sender(0)));
        Assert.Equal("frame body", (await Send(frame[..^3])).Field);
    }

    [Fact]
    public void Encoding_refuses_what_the_limits_forbid()
    {
        var tooMany = Enumerable.Range(0, DhtMessageCodec.MaxContacts + 1).Select(i => Contact(NodeId.CreateRandom(new Random(i)))).ToArray();
        Assert.Throws<ArgumentException>(() => DhtTestKit.Frame(new DhtMessage(DhtMessageType.Nodes, 1, Sender(0)) { Contacts = tooMany }));
        Assert.Throws<ArgumentException>(() => DhtTestKit.Frame(new DhtMessage(DhtMessageType.FindValue, 1, Sender(0)) { Key = new string('k', 300) }));
    }
}
