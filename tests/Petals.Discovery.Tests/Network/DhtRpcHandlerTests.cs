using Petals.Testing.Time;
using Petals.Testing.Transport;
using Petals.Transport;

namespace Petals.Discovery.Tests.Network;

/// <summary>The serving side on its own: what one decoded request is answered with.</summary>
public sealed class DhtRpcHandlerTests
{
    [Theory]
    [InlineData(16)]
    [InlineData(8 * 1024)]
    public async Task A_FIND_VALUE_answer_holds_as_many_records_as_fit_one_frame(int valueBytes)
    {
        var ct = TestContext.Current.CancellationToken;
        var time = new ManualTimeProvider(DhtTestKit.Start);
        var self = DhtTestNetwork.Identity(0);
        var storage = new RecordStorage(RecordStorageOptions.Default, new RecordValidator(null, time), time);
        var expires = time.GetUtcNow().AddHours(1);
        for (var i = 1; i <= 300; i++)
        {
            Assert.True(storage.Store(DhtTestKit.Signed(DhtTestNetwork.Identity(i), "crowded", new byte[valueBytes], expires)).IsAccepted);
        }

        // Small records: the codec's record count is the cap. Large ones (all of one encoded size): as many as fit one
        // frame less the 64 KiB kept for the header and contacts, about 117 of the 300.
        var encoded = DhtRecordCodec.GetEncodedLength(storage.Get("crowded")[0]);
        var expected = Math.Min(DhtMessageCodec.MaxRecords, (DhtMessageCodec.MaxFrameBytes - (64 * 1024)) / encoded);
        Assert.InRange(expected, 1, 299);

        var memory = new MemoryTransport();
        var listener = await memory.ListenAsync(PeerAddress.Parse("mem://handler"), ct);
        var sender = new DhtSender(self.NodeId, self.PublicKey, listener.LocalAddress);
        var routing = new RoutingTable(self.NodeId, 20, 20, time);
        await using var handler = new DhtRpcHandler(listener, sender, self, DhtNodeOptions.Default, time, routing, storage, (_, _) => { });

        var asker = DhtTestNetwork.Identity(301);
        var request = new DhtMessage(DhtMessageType.FindValue, 7, new DhtSender(asker.NodeId, asker.PublicKey, default)) { Key = "crowded" };
        var answer = handler.Handle(request);
        Assert.Equal(DhtMessageType.Value, answer.Type);
        Assert.Equal(7UL, answer.RequestId);
        Assert.Equal(expected, answer.Records.Count);
        Assert.True(DhtTestKit.Frame(answer).Length <= DhtMessageCodec.MaxFrameBytes + 4);
    }
}
