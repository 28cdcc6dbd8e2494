using System.Collections.Concurrent;
using System.Threading.Channels;
using Petals.Execution;
using Petals.Models;
using Petals.Protocol;
using Petals.Server;
using Petals.Tensors;
using Petals.Testing.Transport;
using Petals.Tests.Generation;
using Petals.Transport;

namespace Petals.Tests.Server;

/// <summary>A message as the test client received it, with its hidden states decoded (tensors die with the handler call).</summary>
internal sealed record Received(uint StreamId, ProtocolMessage Message, float[]? Hidden);

/// <summary>A raw protocol client: sends what a test says, queues what arrives per stream.</summary>
internal sealed class TestClient : IProtocolMessageHandler, IAsyncDisposable
{
    private readonly ConcurrentDictionary<uint, Channel<Received>> _streams = new();

    private TestClient(ProtocolConnection connection)
    {
        Connection = connection;
        Run = connection.RunAsync(this, CancellationToken.None);
    }

    public ProtocolConnection Connection { get; }

    public Task Run { get; }

    public static async Task<TestClient> ConnectAsync(ITransport transport, PeerAddress address, string modelId)
    {
        var connection = await ProtocolConnection.ConnectAsync(transport, address, new ConnectionPreamble("test-client", modelId), cancellationToken: ServerHarness.Ct)
            .WaitAsync(ServerHarness.Bound, ServerHarness.Ct);
        return new TestClient(connection);
    }

    public async Task<Received> CallAsync(ProtocolMessage request)
    {
        var id = Connection.NewStreamId();
        await Connection.SendAsync(id, request, ServerHarness.Ct);
        return await NextAsync(id);
    }

    public async Task<Received> NextAsync(uint streamId, TimeSpan? timeout = null) =>
        await Stream(streamId).Reader.ReadAsync(ServerHarness.Ct).AsTask().WaitAsync(timeout ?? ServerHarness.Bound, ServerHarness.Ct);

    public ValueTask OnMessageAsync(ProtocolConnection connection, uint streamId, ProtocolMessage message, CancellationToken ct)
    {
        var hidden = message switch
        {
            ForwardResponse f => f.Hidden.ToArray(),
            InferenceStepResult r => r.Hidden.ToArray(),
            _ => null,
        };
        Stream(streamId).Writer.TryWrite(new Received(streamId, message, hidden));
        return ValueTask.CompletedTask;
    }

    public void OnStreamFailed(ProtocolConnection connection, uint streamId, ProtocolException error) =>
        Stream(streamId).Writer.TryWrite(new Received(streamId, ErrorMessage.From(error, ProtocolLimits.Default), null));

    public async ValueTask DisposeAsync()
    {
        await Connection.DisposeAsync().AsTask().WaitAsync(ServerHarness.Bound);
        try
        {
            await Run.WaitAsync(ServerHarness.Bound);
        }
        catch (Exception e) when (e is OperationCanceledException or TransportException or ProtocolException or ObjectDisposedException)
        {
        }
    }

    private Channel<Received> Stream(uint id) => _streams.GetOrAdd(id, _ => Channel.CreateUnbounded<Received>());
}

/// <summary>A block server over a random 4-block model, on the in-memory transport or TCP on 127.0.0.1.</summary>
internal sealed class ServerHarness : IAsyncDisposable
{
    public static readonly TimeSpan Bound = TimeSpan.FromSeconds(60);
    public const string ModelId = "random-llama";
    private static int s_next;

    private ServerHarness(RandomModelFixture model, IBlockExecutor executor, IBlockExecutor reference, BlockServer server, ITransport transport)
    {
        Model = model;
        Executor = executor;
        Reference = reference;
        Server = server;
        Transport = transport;
    }

    public static CancellationToken Ct => TestContext.Current.CancellationToken;

    public RandomModelFixture Model { get; }

    public IBlockExecutor Executor { get; }

    /// <summary>A second executor over the same span, to compute expected outputs locally.</summary>
    public IBlockExecutor Reference { get; }

    public BlockServer Server { get; }

    public ITransport Transport { get; }

    public PeerAddress Address => Server.LocalAddress;

    public int Hidden => Model.Config.HiddenSize;

    public static BlockRange Span { get; } = new(1, 3);

    public static async Task<ServerHarness> StartAsync(Action<BlockServerOptions>? configure = null, ITransport? transport = null, Func<IBlockExecutor, IBlockExecutor>? wrap = null)
    {
        var model = new RandomModelFixture(TensorDType.F32, tied: false);
        var executor = RandomModelFixture.Factory.Create(model.Weights, Span);
        executor = wrap?.Invoke(executor) ?? executor;
        var reference = RandomModelFixture.Factory.Create(model.Weights, Span);
        var options = new BlockServerOptions { Blocks = Span, ModelId = ModelId, CacheTokens = 1024, MaxSessionLength = 128, MaxBatchTokens = 256 };
        configure?.Invoke(options);
        var server = new BlockServer(executor, options);
        transport ??= new MemoryTransport();
        var bind = transport is MemoryTransport
            ? PeerAddress.Parse("mem://server-" + Interlocked.Increment(ref s_next).ToString(System.Globalization.CultureInfo.InvariantCulture))
            : PeerAddress.Parse("tcp://127.0.0.1:0");
        var listener = await transport.ListenAsync(bind, Ct);
        await server.StartAsync(listener, Ct);
        return new ServerHarness(model, executor, reference, server, transport);
    }

    public Task<TestClient> ConnectAsync(string modelId = ModelId) => TestClient.ConnectAsync(Transport, Address, modelId);

    /// <summary>Deterministic hidden states.</summary>
    public float[] Input(int batch, int tokens, int seed)
    {
        var values = new float[batch * tokens * Hidden];
        for (var i = 0; i < values.Length; i++)
        {
            values[i] = MathF.Sin((i + 1) * 0.13f + seed) * 0.5f;
        }

        return values;
    }

    public WireTensor Tensor(float[] values, int batch, int tokens, WireCodec codec = WireCodec.Fp32) =>
        WireTensor.FromValues(new TensorShape(batch, tokens, Hidden), values, codec);

    /// <summary>Polls until <paramref name="condition"/> holds, failing after the bound.</summary>
    public static async Task WaitUntil(Func<bool> condition, string what, TimeSpan? bound = null)
    {
        var deadline = DateTime.UtcNow + (bound ?? Bound);
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, $"Timed out waiting until {what}.");
            await Task.Delay(10, Ct);
        }
    }

    public async ValueTask DisposeAsync()
    {
        await Server.DisposeAsync().AsTask().WaitAsync(Bound);
        Executor.Dispose();
        Reference.Dispose();
        Model.Dispose();
    }
}
