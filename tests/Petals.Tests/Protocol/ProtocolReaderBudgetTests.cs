using System.IO.Pipelines;
using Petals.Protocol;

namespace Petals.Tests.Protocol;

/// <summary>
/// The reassembly buffers of a <see cref="ProtocolReader"/>: charged to a shared budget as they grow, refused on their
/// stream (the connection goes on) when the budget is full, and given back once the message was consumed.
/// </summary>
[Collection(ProtocolTestGroup.Name)]
public sealed class ProtocolReaderBudgetTests
{
    private static readonly ProtocolLimits Limits = new() { MaxFrameSize = 64 * 1024, MaxMessageSize = 8 << 20 };

    private static ForwardRequest Forward(int tokens) =>
        new(new Models.BlockRange(0, 1), WireCodec.Fp32, WireTensor.FromValues(new TensorShape(1, tokens, 256), new float[tokens * 256]));

    [Fact]
    public async Task ALargeMessageIsChargedWhileHeldAndItsBufferIsGivenBackAtTheNextRead()
    {
        var pipe = new Pipe(new PipeOptions(pauseWriterThreshold: 0, resumeWriterThreshold: 0));
        var writer = new ProtocolWriter(pipe.Writer, Limits);
        var budget = new ReassemblyBudget(8 << 20);
        using var reader = new ProtocolReader(pipe.Reader, Limits, budget);
        writer.Write(1, Forward(3072)); // 3 MiB of values: chunked
        writer.Write(3, InfoRequest.Instance);
        await writer.FlushAsync(CancellationToken.None);

        var big = await reader.ReadAsync(CancellationToken.None);
        Assert.Equal(3072, ((ForwardRequest)big!.Value.Message).Hidden.Shape[1]);
        Assert.InRange(budget.Used, 3 << 20, (3 << 20) + 1024);
        Assert.Equal(budget.Used, reader.ReassemblyBytesHeld);

        Assert.IsType<InfoRequest>((await reader.ReadAsync(CancellationToken.None))!.Value.Message);
        Assert.Equal(0, budget.Used);
        Assert.Equal(0, reader.ReassemblyBytesHeld);
        Assert.InRange(budget.Peak, 3 << 20, (3 << 20) + 1024);
    }

    [Fact]
    public async Task AMessageBeyondTheBudgetFailsOnlyItsStreamWithBusyAndTheNextMessageIsRead()
    {
        var pipe = new Pipe(new PipeOptions(pauseWriterThreshold: 0, resumeWriterThreshold: 0));
        var writer = new ProtocolWriter(pipe.Writer, Limits);
        var budget = new ReassemblyBudget(2 << 20);
        using var reader = new ProtocolReader(pipe.Reader, Limits, budget);
        writer.Write(1, Forward(3072));
        writer.Write(3, Forward(1024)); // 1 MiB: fits
        await writer.FlushAsync(CancellationToken.None);

        var refused = await Assert.ThrowsAsync<ProtocolException>(async () => await reader.ReadAsync(CancellationToken.None));
        Assert.Equal(ProtocolErrorCode.Busy, refused.Code);
        Assert.False(refused.IsConnectionFatal);
        Assert.Equal(1u, refused.StreamId);
        Assert.Contains("limit 2097152", refused.Message, StringComparison.Ordinal);
        Assert.Equal(1, budget.Refusals);
        Assert.Equal(0, budget.Used);

        var next = await reader.ReadAsync(CancellationToken.None);
        Assert.Equal(3u, next!.Value.StreamId);
        Assert.Equal(1024, ((ForwardRequest)next.Value.Message).Hidden.Shape[1]);
    }

    [Fact]
    public async Task DisposingTheReaderInTheMiddleOfAMessageGivesItsBufferBack()
    {
        var pipe = new Pipe(new PipeOptions(pauseWriterThreshold: 0, resumeWriterThreshold: 0));
        var budget = new ReassemblyBudget(8 << 20);
        var reader = new ProtocolReader(pipe.Reader, Limits, budget);
        var whole = new Pipe(new PipeOptions(pauseWriterThreshold: 0, resumeWriterThreshold: 0));
        var writer = new ProtocolWriter(whole.Writer, Limits);
        writer.Write(1, Forward(3072));
        await writer.FlushAsync(CancellationToken.None);
        var bytes = (await whole.Reader.ReadAsync(TestContext.Current.CancellationToken)).Buffer;
        await pipe.Writer.WriteAsync(System.Buffers.BuffersExtensions.ToArray(bytes.Slice(0, bytes.Length / 2)), TestContext.Current.CancellationToken);

        var read = reader.ReadAsync(CancellationToken.None).AsTask();
        await ServerHarnessWait(() => budget.Used >= 1 << 20);
        Assert.False(read.IsCompleted);
        Assert.True(budget.Used > 0);

        await pipe.Writer.CompleteAsync();
        await Assert.ThrowsAsync<ProtocolException>(() => read);
        reader.Dispose();
        Assert.Equal(0, budget.Used);
    }

    [Fact]
    public void DroppedLargeBuffersRequestACollectionOnceTheyAddUpAndAtMostOncePerInterval()
    {
        var budget = new ReassemblyBudget(256L << 20);
        budget.OnLargeBufferDropped(32L << 20);
        Assert.Equal(0, budget.Collections);
        budget.OnLargeBufferDropped(32L << 20); // 64 MiB dropped and nothing held: collect
        Assert.Equal(1, budget.Collections);
        budget.OnLargeBufferDropped(64L << 20); // again, but within the interval
        Assert.Equal(1, budget.Collections);

        // While messages are held, the threshold is the budget's capacity.
        var busy = new ReassemblyBudget(256L << 20);
        Assert.True(busy.TryReserve(1 << 20));
        busy.OnLargeBufferDropped(128L << 20);
        Assert.Equal(0, busy.Collections);
        busy.OnLargeBufferDropped(128L << 20);
        Assert.Equal(1, busy.Collections);
    }

    [Fact]
    public async Task AQuietCollectionThatFallsTooSoonIsDoneOnceTheIntervalHasPassed()
    {
        // A flood whose connections all close at once: the last drop comes within the interval of the collection the
        // earlier drops asked for, and no later drop comes to ask again; the memory would stay until something did.
        var budget = new ReassemblyBudget(256L << 20) { QuietCollectInterval = TimeSpan.FromMilliseconds(200) };
        budget.OnLargeBufferDropped(64L << 20);
        Assert.Equal(1, budget.Collections);
        budget.OnLargeBufferDropped(64L << 20);
        budget.OnLargeBufferDropped(64L << 20); // one scheduled collection, not two
        Assert.Equal(1, budget.Collections);

        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (budget.Collections < 2 && DateTime.UtcNow < deadline)
        {
            await Task.Delay(20, TestContext.Current.CancellationToken);
        }

        Assert.Equal(2, budget.Collections);
        await Task.Delay(400, TestContext.Current.CancellationToken);
        Assert.Equal(2, budget.Collections);
    }

    private static async Task ServerHarnessWait(Func<bool> condition) =>
        await Tests.Server.ServerHarness.WaitUntil(condition, "the reader took in the first half");
}
