using System.IO.Pipelines;
using FsCheck;
using FsCheck.Fluent;
using Petals.Testing.Transport;
using Petals.Transport;

namespace Petals.Testing.Tests.Transport;

public sealed class MemoryTransportTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public void Any_sequence_of_write_sizes_arrives_as_the_same_bytes()
    {
        Prop.ForAll(
            Gen.ListOf(Gen.Choose(1, 200_000)).Select(l => l.Take(12).ToArray()).ToArbitrary(),
            Gen.Choose(1, 70_000).ToArbitrary(),
            (sizes, readSize) =>
            {
                var result = Task.Run(async () =>
                {
                    var transport = new MemoryTransport(bufferBytes: 64 * 1024);
                    await using var listener = await transport.ListenAsync(PeerAddress.Parse("mem://p"));
                    await using var client = await transport.ConnectAsync(listener.LocalAddress);
                    await using var server = await listener.AcceptAsync();
                    var sent = new byte[sizes.Sum()];
                    new Random(sizes.Length).NextBytes(sent);
                    var writer = Task.Run(async () =>
                    {
                        var offset = 0;
                        foreach (var size in sizes)
                        {
                            await client.WriteAsync(sent.AsMemory(offset, size));
                            offset += size;
                        }

                        await client.CompleteWritesAsync();
                    });
                    var received = new List<byte>(sent.Length);
                    var buffer = new byte[readSize];
                    int n;
                    while ((n = await server.ReadAsync(buffer)) > 0)
                    {
                        received.AddRange(buffer.AsSpan(0, n).ToArray());
                    }

                    await writer;
                    return sent.AsSpan().SequenceEqual(received.ToArray());
                }).WaitAsync(TimeSpan.FromSeconds(30)).GetAwaiter().GetResult();
                return result;
            }).QuickCheckThrowOnFailure();
    }

    [Fact]
    public async Task Writes_wait_for_the_reader_beyond_the_buffer()
    {
        var transport = new MemoryTransport(bufferBytes: 64 * 1024);
        await using var listener = await transport.ListenAsync(PeerAddress.Parse("mem://p"), Ct);
        await using var client = await transport.ConnectAsync(listener.LocalAddress, Ct);
        await using var server = await listener.AcceptAsync(Ct);
        var write = client.WriteAsync(new byte[256 * 1024], Ct).AsTask();
        await Task.Delay(100, Ct);
        Assert.False(write.IsCompleted, "a write four times the buffer completed with nobody reading");
        var buffer = new byte[300 * 1024];
        var total = 0;
        while (total < 256 * 1024)
        {
            total += await server.ReadAsync(buffer, Ct);
        }

        await write.WaitAsync(TimeSpan.FromSeconds(10), Ct);
    }

    [Fact]
    public async Task Listening_twice_on_a_name_is_refused_and_the_name_frees_on_dispose()
    {
        var transport = new MemoryTransport();
        var first = await transport.ListenAsync(PeerAddress.Parse("mem://same"), Ct);
        var error = await Assert.ThrowsAsync<TransportException>(async () => await transport.ListenAsync(PeerAddress.Parse("mem://same"), Ct));
        Assert.Equal(TransportErrorKind.AddressUnavailable, error.Kind);
        Assert.Contains("mem://same", error.Message, StringComparison.Ordinal);
        await first.DisposeAsync();
        await using var second = await transport.ListenAsync(PeerAddress.Parse("mem://same"), Ct);
        await Assert.ThrowsAsync<ArgumentException>(async () => await transport.ConnectAsync(PeerAddress.Parse("tcp://127.0.0.1:1"), Ct));
    }

    [Fact]
    public async Task Streams_not_yet_accepted_are_aborted_when_the_listener_closes()
    {
        var transport = new MemoryTransport();
        var listener = await transport.ListenAsync(PeerAddress.Parse("mem://l"), Ct);
        await using var client = await transport.ConnectAsync(listener.LocalAddress, Ct);
        await listener.DisposeAsync();
        var error = await Assert.ThrowsAsync<TransportException>(async () => await client.ReadAsync(new byte[1], Ct));
        Assert.Contains("aborted by peer: listener closed before accepting the stream", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task As_stream_works_with_pipelines_and_completes_writes_on_dispose()
    {
        var transport = new MemoryTransport();
        await using var listener = await transport.ListenAsync(PeerAddress.Parse("mem://s"), Ct);
        var client = await transport.ConnectAsync(listener.LocalAddress, Ct);
        await using var server = await listener.AcceptAsync(Ct);

        await using (var stream = client.AsStream())
        {
            var writer = PipeWriter.Create(stream);
            await writer.WriteAsync("through a pipe writer"u8.ToArray(), Ct);
            await writer.CompleteAsync();
            Assert.False(stream.CanSeek);
            Assert.Throws<NotSupportedException>(() => stream.Length);
        }

        var reader = PipeReader.Create(server.AsStream(leaveOpen: true));
        var all = new List<byte>();
        while (true)
        {
            var result = await reader.ReadAsync(Ct);
            all.AddRange(System.Buffers.BuffersExtensions.ToArray(result.Buffer));
            reader.AdvanceTo(result.Buffer.End);
            if (result.IsCompleted)
            {
                break;
            }
        }

        Assert.Equal("through a pipe writer"u8.ToArray(), all.ToArray());
        await Assert.ThrowsAsync<ObjectDisposedException>(async () => await client.ReadAsync(new byte[1], Ct));
    }
}
