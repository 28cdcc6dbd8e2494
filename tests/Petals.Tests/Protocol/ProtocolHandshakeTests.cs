using System.Buffers;
using System.IO.Pipelines;
using FsCheck;
using FsCheck.Fluent;
using Petals.Protocol;

namespace Petals.Tests.Protocol;

[Collection(ProtocolTestGroup.Name)]
public sealed class ProtocolHandshakeTests
{
    private static CancellationToken Token => TestContext.Current.CancellationToken;

    [Fact]
    public async Task BothSidesLearnThePeerAndNegotiateMinorVersionAndFrameLimit()
    {
        var (left, right) = ProtocolTestKit.CreatePair();
        var a = ProtocolHandshake.PerformAsync(left, new ConnectionPreamble("client-é", "meta-llama/Llama-2-70b", 4096, 1, 3), cancellationToken: Token).AsTask();
        var b = ProtocolHandshake.PerformAsync(right, new ConnectionPreamble("server", "meta-llama/Llama-2-70b", 1 << 20, 1, 0), cancellationToken: Token).AsTask();
        var (ra, rb) = (await a.WaitAsync(TimeSpan.FromSeconds(10), Token), await b.WaitAsync(TimeSpan.FromSeconds(10), Token));
        Assert.Equal(new ConnectionPreamble("server", "meta-llama/Llama-2-70b", 1 << 20, 1, 0), ra.Remote);
        Assert.Equal(new ConnectionPreamble("client-é", "meta-llama/Llama-2-70b", 4096, 1, 3), rb.Remote);
        Assert.Equal(0, ra.VersionMinor);
        Assert.Equal(0, rb.VersionMinor);
        Assert.Equal(4096, ra.FrameLimit);
        Assert.Equal(4096, rb.FrameLimit);

        // Frames flow right after the preambles.
        var writer = new ProtocolWriter(left.Output, peerMaxFrameSize: ra.Remote.MaxFrameSize);
        await writer.SendAsync(0, new PingMessage(42), Token);
        using var reader = new ProtocolReader(right.Input);
        Assert.Equal(new ReceivedMessage(0, new PingMessage(42)), await reader.ReadAsync(Token));
    }

    [Fact]
    public async Task AnEmptyModelIdMatchesAnyModel()
    {
        var (left, right) = ProtocolTestKit.CreatePair();
        var a = ProtocolHandshake.PerformAsync(left, new ConnectionPreamble("dht-peer", string.Empty), cancellationToken: Token).AsTask();
        var b = ProtocolHandshake.PerformAsync(right, new ConnectionPreamble("server", "m"), cancellationToken: Token).AsTask();
        Assert.Equal("m", (await a).Remote.ModelId);
        Assert.Equal(string.Empty, (await b).Remote.ModelId);
    }

    [Theory]
    [InlineData(2, "m", "m", "version_mismatch", "protocol 2.0")]
    [InlineData(1, "llama-70b", "llama-7b", "model_mismatch", "'llama-7b'")]
    public async Task MismatchesFailOnBothSidesWithAnErrorFrame(ushort otherMajor, string model, string otherModel, string code, string fragment)
    {
        var (left, right) = ProtocolTestKit.CreatePair();
        var a = ProtocolHandshake.PerformAsync(left, new ConnectionPreamble("a", model), cancellationToken: Token).AsTask();
        var b = ProtocolHandshake.PerformAsync(right, new ConnectionPreamble("b", otherModel, VersionMajor: otherMajor, VersionMinor: 0), cancellationToken: Token).AsTask();
        var ea = await Assert.ThrowsAsync<ProtocolException>(() => a.WaitAsync(TimeSpan.FromSeconds(10), Token));
        var eb = await Assert.ThrowsAsync<ProtocolException>(() => b.WaitAsync(TimeSpan.FromSeconds(10), Token));
        Assert.Equal(code, ea.Code.Value);
        Assert.Equal(code, eb.Code.Value);
        Assert.Contains(fragment, ea.Message + eb.Message, StringComparison.Ordinal);

        // Each side also sent the error on stream 0, readable by the peer.
        using var reader = new ProtocolReader(right.Input);
        var error = Assert.IsType<ErrorMessage>((await reader.ReadAsync(Token))!.Value.Message);
        Assert.Equal(code, error.Code.Value);
    }

    private static async Task<ProtocolException> PreambleFails(byte[] bytes, bool complete, ProtocolLimits? limits = null)
    {
        var pipe = new Pipe();
        await pipe.Writer.WriteAsync(bytes, Token);
        if (complete)
        {
            await pipe.Writer.CompleteAsync();
        }

        var read = ProtocolHandshake.ReadPreambleAsync(pipe.Reader, limits ?? ProtocolLimits.Default, Token).AsTask();
        return await Assert.ThrowsAsync<ProtocolException>(() => read.WaitAsync(TimeSpan.FromSeconds(10), Token));
    }

    private static byte[] Preamble(ushort bodyLength, params byte[] body) =>
        [.. "PTLS"u8.ToArray(), .. BitConverter.GetBytes(bodyLength), .. body];

    [Fact]
    public async Task BadPreamblesAreRejectedPrecisely()
    {
        var wrongMagic = await PreambleFails([.. "GET / HTTP/1.1\r\n"u8.ToArray()], complete: false);
        Assert.Equal(ProtocolErrorCode.BadPreamble, wrongMagic.Code);
        Assert.Contains("magic", wrongMagic.Message, StringComparison.Ordinal);

        // Declared too long: rejected from the 6-byte prefix, without waiting for the body (the writer stays open).
        var tooLong = await PreambleFails(Preamble(2000), complete: false);
        Assert.Equal(ProtocolErrorCode.PreambleTooLarge, tooLong.Code);
        Assert.Contains("2006", tooLong.Message, StringComparison.Ordinal);

        var truncated = await PreambleFails(Preamble(20, 1, 0, 0, 0), complete: true);
        Assert.Equal(ProtocolErrorCode.BadPreamble, truncated.Code);
        Assert.Contains("closed after 10 bytes", truncated.Message, StringComparison.Ordinal);

        var frame = BitConverter.GetBytes(512u);
        var emptyPeer = await PreambleFails(Preamble(10, [1, 0, 0, 0, 0, 4, 0, 0, 0, 0]), complete: true);
        Assert.Contains("'peerId' is empty", emptyPeer.Message, StringComparison.Ordinal);

        var smallFrames = await PreambleFails(Preamble(10, [1, 0, 0, 0, .. frame, 0, 0]), complete: true);
        Assert.Contains("'maxFrameSize' is 512", smallFrames.Message, StringComparison.Ordinal);

        var idPastEnd = await PreambleFails(Preamble(11, [1, 0, 0, 0, 0, 4, 0, 0, 5, (byte)'a', (byte)'b']), complete: true);
        Assert.Contains("'peerId' declares 5 bytes but 2 remain", idPastEnd.Message, StringComparison.Ordinal);

        var badUtf8 = await PreambleFails(Preamble(12, [1, 0, 0, 0, 0, 4, 0, 0, 2, 0xC3, 0x28, 0]), complete: true);
        Assert.Contains("'peerId' is not valid UTF-8", badUtf8.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ExtraBodyBytesFromLaterMinorVersionsAreIgnoredAndFollowingBytesKept()
    {
        var pipe = new Pipe();
        byte[] body = [1, 0, 7, 0, 0, 4, 0, 0, 1, (byte)'p', 1, (byte)'m', 0xEE, 0xEE];
        await pipe.Writer.WriteAsync(Preamble((ushort)body.Length, body), Token);
        await pipe.Writer.WriteAsync(new byte[] { 0x99 }, Token);
        await pipe.Writer.CompleteAsync();
        var preamble = await ProtocolHandshake.ReadPreambleAsync(pipe.Reader, ProtocolLimits.Default, Token);
        Assert.Equal(new ConnectionPreamble("p", "m", 1024, 1, 7), preamble);
        var rest = await pipe.Reader.ReadAsync(Token);
        Assert.Equal(new byte[] { 0x99 }, rest.Buffer.ToArray());
    }

    [Fact]
    public async Task InvalidLocalPreamblesAreRefusedBeforeSending()
    {
        var (left, _) = ProtocolTestKit.CreatePair();
        await Assert.ThrowsAsync<ArgumentException>(async () => await ProtocolHandshake.PerformAsync(left, new ConnectionPreamble(string.Empty, "m"), cancellationToken: Token));
        await Assert.ThrowsAsync<ArgumentException>(async () => await ProtocolHandshake.PerformAsync(left, new ConnectionPreamble("p", new string('m', 256)), cancellationToken: Token));
        await Assert.ThrowsAsync<ArgumentException>(async () => await ProtocolHandshake.PerformAsync(left, new ConnectionPreamble("p", "m", 100), cancellationToken: Token));
    }

    [Fact]
    public void MutatedPreamblesOnlyRaiseProtocolErrorsAndNeverWaitOnceTheStreamEnds() =>
        Prop.ForAll(Gen.Choose(0, int.MaxValue).ToArbitrary(), seed =>
        {
            var random = new Random(seed);
            var preamble = new ConnectionPreamble(ProtocolTestKit.RandomString(random, 20) + "p", ProtocolTestKit.RandomString(random, 30), random.Next(1024, int.MaxValue - 10), (ushort)random.Next(3), (ushort)random.Next(3));
            var bytes = new byte[preamble.GetSize()];
            preamble.Write(bytes);
            var list = new List<byte>(bytes);
            for (var m = random.Next(0, 4); m > 0 && list.Count > 0; m--)
            {
                var at = random.Next(list.Count);
                switch (random.Next(3))
                {
                    case 0:
                        list[at] = (byte)random.Next(256);
                        break;
                    case 1:
                        list.RemoveRange(at, list.Count - at);
                        break;
                    default:
                        list.Insert(at, (byte)random.Next(256));
                        break;
                }
            }

            var pipe = new Pipe();
            pipe.Writer.Write([.. list]);
            pipe.Writer.Complete();
            var read = ProtocolHandshake.ReadPreambleAsync(pipe.Reader, ProtocolLimits.Default, CancellationToken.None).AsTask();
            Assert.True(read.IsCompleted, "The preamble reader waited although the stream was complete.");
            if (read.IsFaulted)
            {
                Assert.IsType<ProtocolException>(read.Exception!.InnerException);
            }
            else if (list.Count == bytes.Length && list.SequenceEqual(bytes))
            {
                Assert.Equal(preamble, read.GetAwaiter().GetResult());
            }
        }).Check(Config.QuickThrowOnFailure.WithMaxTest(3000));
}
