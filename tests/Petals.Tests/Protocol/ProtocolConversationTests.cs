using System.IO.Pipelines;
using Petals.Models;
using Petals.Protocol;

namespace Petals.Tests.Protocol;

/// <summary>A client and a toy server talk over an in-memory connection exactly as a block server and client will.</summary>
[Collection(ProtocolTestGroup.Name)]
public sealed class ProtocolConversationTests
{
    private static CancellationToken Token => TestContext.Current.CancellationToken;

    /// <summary>Answers info, ping, forward and inference calls; "runs the blocks" by adding the position to every value.</summary>
    private static async Task ServeAsync(IDuplexPipe connection)
    {
        var handshake = await ProtocolHandshake.PerformAsync(connection, new ConnectionPreamble("server", "toy"), cancellationToken: Token);
        var writer = new ProtocolWriter(connection.Output, peerMaxFrameSize: handshake.Remote.MaxFrameSize);
        using var reader = new ProtocolReader(connection.Input);
        var tracker = new CallTracker(CallRole.Callee);
        var cacheLength = new Dictionary<uint, int>();
        var lastStep = new Dictionary<uint, ulong>();
        var buffer = new float[64];
        while (true)
        {
            ReceivedMessage? received;
            try
            {
                received = await reader.ReadAsync(Token);
                if (received is null)
                {
                    return;
                }

                tracker.OnReceived(received.Value.StreamId, received.Value.Message);
            }
            catch (ProtocolException ex) when (!ex.IsConnectionFatal)
            {
                await writer.SendAsync(ex.StreamId, ErrorMessage.From(ex, ProtocolLimits.Default), Token);
                continue;
            }

            var (stream, message) = received.Value;
            ProtocolMessage? answer = message switch
            {
                InfoRequest => new InfoResponse(1, 0, "toy", new BlockRange(0, 4), 64, Petals.Tensors.TensorDType.F32, WireCodecs.All, 1000, 1 << 20, 64 << 20, 8, 512),
                PingMessage ping => new PongMessage(ping.Nonce),
                InferenceOpen => null,
                InferenceClose => null,
                InferenceStep step => Step(stream, step),
                _ => new ErrorMessage(ProtocolErrorCode.Internal, "unexpected"),
            };

            if (message is InferenceOpen)
            {
                cacheLength[stream] = 0;
            }

            if (answer is not null)
            {
                writer.Write(stream, answer);
                tracker.OnSent(stream, answer);
                await writer.FlushAsync(Token);
            }
        }

        ProtocolMessage Step(uint stream, InferenceStep step)
        {
            if (lastStep.TryGetValue(stream, out var last) && last == step.StepId)
            {
                return new ErrorMessage(ProtocolErrorCode.DuplicateStep, $"step {step.StepId} was already applied");
            }

            if (step.StartPosition > cacheLength[stream])
            {
                return new ErrorMessage(ProtocolErrorCode.BadPosition, $"start {step.StartPosition} > cache {cacheLength[stream]}");
            }

            var count = step.Hidden.Shape.ElementCount;
            step.Hidden.CopyTo(buffer);
            for (var i = 0; i < count; i++)
            {
                buffer[i] += step.StartPosition;
            }

            lastStep[stream] = step.StepId;
            cacheLength[stream] = step.StartPosition + step.Hidden.Shape[1];
            return new InferenceStepResult(step.StepId, cacheLength[stream], WireTensor.FromValues(step.Hidden.Shape, buffer.AsMemory(0, count), WireCodec.Bf16));
        }
    }

    [Fact]
    public async Task ClientRunsAnInferenceSessionWithRollbackAndDuplicateSteps()
    {
        var (client, server) = ProtocolTestKit.CreatePair();
        var serving = ServeAsync(server);
        var handshake = await ProtocolHandshake.PerformAsync(client, new ConnectionPreamble("client", "toy"), cancellationToken: Token);
        Assert.Equal("server", handshake.Remote.PeerId);
        var writer = new ProtocolWriter(client.Output, peerMaxFrameSize: handshake.Remote.MaxFrameSize);
        using var reader = new ProtocolReader(client.Input);
        var tracker = new CallTracker(CallRole.Caller);

        async Task<ProtocolMessage> CallAsync(uint stream, ProtocolMessage request)
        {
            writer.Write(stream, request);
            tracker.OnSent(stream, request);
            await writer.FlushAsync(Token);
            var answer = (await reader.ReadAsync(Token).AsTask().WaitAsync(TimeSpan.FromSeconds(10), Token))!.Value;
            Assert.Equal(stream, answer.StreamId);
            tracker.OnReceived(answer.StreamId, answer.Message);
            return answer.Message;
        }

        var info = Assert.IsType<InfoResponse>(await CallAsync(1, InfoRequest.Instance));
        Assert.Equal(new BlockRange(0, 4), info.Blocks);
        Assert.Equal(new PongMessage(9), await CallAsync(3, new PingMessage(9)));

        writer.Write(5, new InferenceOpen(Guid.NewGuid(), new BlockRange(0, 4), 16, WireCodec.Bf16));
        tracker.OnSent(5, new InferenceOpen(Guid.NewGuid(), new BlockRange(0, 4), 16, WireCodec.Bf16));
        var prompt = WireTensor.FromValues(new TensorShape(1, 3, 4), Enumerable.Range(0, 12).Select(i => (float)i).ToArray());
        var first = Assert.IsType<InferenceStepResult>(await CallAsync(5, new InferenceStep(1, 0, prompt)));
        Assert.Equal(3, first.Position);
        Assert.Equal(Enumerable.Range(0, 12).Select(i => (float)i), first.Hidden.ToArray());

        var token = WireTensor.FromValues(new TensorShape(1, 1, 4), new float[] { 1, 2, 3, 4 });
        var second = Assert.IsType<InferenceStepResult>(await CallAsync(5, new InferenceStep(2, 3, token)));
        Assert.Equal(4, second.Position);
        Assert.Equal(new float[] { 4, 5, 6, 7 }, second.Hidden.ToArray());

        // Roll back to position 3 and redo the step under a new id.
        var redo = Assert.IsType<InferenceStepResult>(await CallAsync(5, new InferenceStep(3, 3, token)));
        Assert.Equal(4, redo.Position);

        // A repeated step id is not applied twice; the server's error ends the session stream.
        var duplicate = Assert.IsType<ErrorMessage>(await CallAsync(5, new InferenceStep(3, 4, token)));
        Assert.Equal(ProtocolErrorCode.DuplicateStep, duplicate.Code);

        // The server's tracker refuses a step on a stream with no session; the connection keeps serving.
        // (Sent around the client's own tracker, which would not expect an answer on stream 7.)
        await writer.SendAsync(7, new InferenceStep(1, 0, token), Token);
        var orphan = (await reader.ReadAsync(Token))!.Value;
        Assert.Equal(7u, orphan.StreamId);
        Assert.Equal(ProtocolErrorCode.OutOfOrder, Assert.IsType<ErrorMessage>(orphan.Message).Code);
        Assert.Equal(new PongMessage(10), await CallAsync(9, new PingMessage(10)));

        await client.Output.CompleteAsync();
        await serving.WaitAsync(TimeSpan.FromSeconds(10), Token);
    }

    [Fact]
    public async Task APendingReadIsCancelled()
    {
        var pipe = new Pipe();
        using var reader = new ProtocolReader(pipe.Reader);
        using var cts = new CancellationTokenSource();
        var read = reader.ReadAsync(cts.Token).AsTask();
        Assert.False(read.IsCompleted);
        await cts.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => read.WaitAsync(TimeSpan.FromSeconds(10), Token));
    }
}
