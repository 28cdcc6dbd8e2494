using Petals.Protocol;

namespace Petals.Tests.Server;

/// <summary>The block server and the 8-bit blockwise wire codec: advertised from protocol 1.2 on, accepted both ways, non-finite values still refused.</summary>
public sealed class Int8WireServerTests
{
    [Fact]
    public async Task TheServerAdvertisesInt8ToProtocol12PeersOnly()
    {
        await using var h = await ServerHarness.StartAsync();
        Assert.Equal(WireCodecs.All, h.Server.CreateInfo(2).Codecs);
        Assert.True((h.Server.CreateInfo(2).Codecs & WireCodecs.Int8Blockwise) != 0);

        // A 1.0 or 1.1 peer refuses an info whose codecs set bit 3, so it is not told.
        Assert.Equal(WireCodecs.Protocol10, h.Server.CreateInfo(1).Codecs);
        Assert.Equal(WireCodecs.Protocol10, h.Server.CreateInfo(0).Codecs);

        await using var client = await h.ConnectAsync();
        var info = Assert.IsType<InfoResponse>((await client.CallAsync(InfoRequest.Instance)).Message);
        Assert.Equal(WireCodecs.All, info.Codecs);
    }

    [Fact]
    public async Task AnInt8ForwardIsTheExecutorsForwardOfTheDecodedInputEncodedAsInt8()
    {
        await using var h = await ServerHarness.StartAsync();
        await using var client = await h.ConnectAsync();
        var input = h.Input(2, 5, seed: 4);
        var reply = await client.CallAsync(new ForwardRequest(ServerHarness.Span, WireCodec.Int8Blockwise, h.Tensor(input, 2, 5, WireCodec.Int8Blockwise)));
        var response = Assert.IsType<ForwardResponse>(reply.Message);
        Assert.Equal(WireCodec.Int8Blockwise, response.Hidden.Codec);

        // The server computes on what the wire carried: the int8 round trip of the input.
        var expected = h.Tensor(input, 2, 5, WireCodec.Int8Blockwise).ToArrayRoundTrip();
        h.Reference.Forward(expected, 2, 5, cache: null);
        Assert.Equal(WireTensor.FromValues(response.Hidden.Shape, expected, WireCodec.Int8Blockwise).ToArrayRoundTrip(), reply.Hidden);
    }

    [Fact]
    public async Task ANaNSentAsInt8ReachesTheServerAsNonFiniteAndIsRefusedWithoutEndingTheConnection()
    {
        await using var h = await ServerHarness.StartAsync();
        await using var client = await h.ConnectAsync();
        var input = h.Input(1, 2, seed: 1);
        input[h.Hidden + 5] = float.PositiveInfinity;
        var reply = await client.CallAsync(new ForwardRequest(ServerHarness.Span, WireCodec.Fp32, h.Tensor(input, 1, 2, WireCodec.Int8Blockwise)));

        // The marker decodes to NaN (an infinity's sign does not cross an int8 wire), at the same index.
        BlockServerTests.AssertError(reply, "non_finite_input", $"hold NaN at index {h.Hidden + 5} ([0, 1, 5])");
        Assert.IsType<ForwardResponse>((await client.CallAsync(new ForwardRequest(ServerHarness.Span, WireCodec.Int8Blockwise, h.Tensor(h.Input(1, 1, 0), 1, 1, WireCodec.Int8Blockwise)))).Message);
    }

    [Fact]
    public async Task AServerWithoutInt8RefusesItBothWays()
    {
        await using var h = await ServerHarness.StartAsync(o => o.Codecs = WireCodecs.Protocol10);
        await using var client = await h.ConnectAsync();
        Assert.Equal(WireCodecs.Protocol10, Assert.IsType<InfoResponse>((await client.CallAsync(InfoRequest.Instance)).Message).Codecs);
        var reply = await client.CallAsync(new ForwardRequest(ServerHarness.Span, WireCodec.Int8Blockwise, h.Tensor(h.Input(1, 1, 0), 1, 1)));
        BlockServerTests.AssertError(reply, "bad_dtype", "the reply codec Int8Blockwise is not accepted");
        var input = await client.CallAsync(new ForwardRequest(ServerHarness.Span, WireCodec.Fp32, h.Tensor(h.Input(1, 1, 0), 1, 1, WireCodec.Int8Blockwise)));
        BlockServerTests.AssertError(input, "bad_dtype", "the hidden states codec Int8Blockwise is not accepted");
    }
}
