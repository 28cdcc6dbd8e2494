using Petals.Testing.Execution;
using Petals.Client;
using Petals.Models;
using Petals.Protocol;
using Petals.Server;
using Petals.Testing.Transport;
using Petals.Tensors;
using Petals.Tests.Generation;
using Petals.Tests.Server;
using Petals.Transport;

namespace Petals.Tests.Client.Faults;

/// <summary>The test-side fault injectors against the real block server and client: a failing executor, a wrong-shape answer.</summary>
public sealed class FaultInjectionTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task A_step_the_executor_fails_is_answered_with_an_error_frame_and_ends_only_that_session()
    {
        FaultyBlockExecutor? faulty = null;
        await using var h = await ServerHarness.StartAsync(wrap: e => faulty = new FaultyBlockExecutor(e));
        Assert.NotNull(faulty);
        faulty.FailStep(2);
        await using var client = await h.ConnectAsync();

        var id = await OpenAsync(client, 16);
        var first = await StepAsync(client, id, 1, 0, h.Input(1, 3, 1), h, 3);
        Assert.IsType<InferenceStepResult>(first.Message);
        var failed = await StepAsync(client, id, 2, 3, h.Input(1, 1, 2), h, 1);
        var error = Assert.IsType<ErrorMessage>(failed.Message);
        Assert.Equal(ProtocolErrorCode.Internal, error.Code);
        Assert.Contains("fault injected: step 2 of blocks 1:3 failed", error.Message, StringComparison.Ordinal);
        Assert.Equal(1, faulty.Failures);
        await ServerHarness.WaitUntil(() => h.Server.ActiveSessions == 0, "the failed session is freed");

        // The server goes on: a new session's steps run, and equal the reference executor's.
        var next = await OpenAsync(client, 16);
        var input = h.Input(1, 2, 3);
        var ok = await StepAsync(client, next, 1, 0, input, h, 2);
        Assert.IsType<InferenceStepResult>(ok.Message);
        using var cache = h.Reference.CreateCache(1, 16);
        h.Reference.Forward(input, 1, 2, cache);
        Assert.Equal(input, ok.Hidden);
        Assert.Equal(3, faulty.Steps);
    }

    [Fact]
    public async Task FailNextStep_fails_exactly_the_next_step_and_forwards_fail_by_their_own_count()
    {
        FaultyBlockExecutor? faulty = null;
        await using var h = await ServerHarness.StartAsync(wrap: e => faulty = new FaultyBlockExecutor(e));
        Assert.NotNull(faulty);
        await using var client = await h.ConnectAsync();

        faulty.FailForward(1);
        var forward = await client.CallAsync(new ForwardRequest(ServerHarness.Span, WireCodec.Fp32, h.Tensor(h.Input(1, 2, 0), 1, 2)));
        Assert.Contains("fault injected: forward 1 of blocks 1:3 failed", Assert.IsType<ErrorMessage>(forward.Message).Message, StringComparison.Ordinal);
        var again = await client.CallAsync(new ForwardRequest(ServerHarness.Span, WireCodec.Fp32, h.Tensor(h.Input(1, 2, 0), 1, 2)));
        Assert.IsType<ForwardResponse>(again.Message);

        var id = await OpenAsync(client, 16);
        Assert.IsType<InferenceStepResult>((await StepAsync(client, id, 1, 0, h.Input(1, 1, 0), h, 1)).Message);
        faulty.FailNextStep();
        Assert.IsType<ErrorMessage>((await StepAsync(client, id, 2, 1, h.Input(1, 1, 1), h, 1)).Message);
        Assert.Equal(2, faulty.Failures);
        Assert.Equal(2, faulty.Forwards);
        Assert.Equal(2, faulty.Steps);
    }

    [Fact]
    public async Task An_armed_tamper_gives_exactly_one_step_result_the_wrong_shape()
    {
        await using var h = await ServerHarness.StartAsync();
        var tampering = new WrongShapeTransport(h.Transport);
        await using var client = await TestClient.ConnectAsync(tampering, h.Address, ServerHarness.ModelId);

        // Unarmed, everything passes through the re-framing unchanged (info, steps, forwards).
        Assert.IsType<InfoResponse>((await client.CallAsync(InfoRequest.Instance)).Message);
        var id = await OpenAsync(client, 16);
        var input = h.Input(1, 2, 5);
        var clean = await StepAsync(client, id, 1, 0, input, h, 2);
        using var cache = h.Reference.CreateCache(1, 16);
        h.Reference.Forward(input, 1, 2, cache);
        Assert.Equal(input, clean.Hidden);

        tampering.ArmWrongShape(h.Address.WithPeerId("12D3KooWanything"));
        Assert.Equal(1, tampering.Armed(h.Address));
        var next = h.Input(1, 1, 6);
        var tampered = await StepAsync(client, id, 2, 2, next, h, 1);
        var result = Assert.IsType<InferenceStepResult>(tampered.Message);
        Assert.Equal(new TensorShape(1, 2, h.Hidden), result.Hidden.Shape);
        Assert.Equal(3, result.Position);
        h.Reference.Forward(next, 1, 1, cache);
        Assert.Equal(next, tampered.Hidden![..h.Hidden]);
        Assert.All(tampered.Hidden[h.Hidden..], v => Assert.Equal(0f, v));

        // Exactly one: the following step is intact.
        var last = h.Input(1, 1, 7);
        var after = await StepAsync(client, id, 3, 3, last, h, 1);
        h.Reference.Forward(last, 1, 1, cache);
        Assert.Equal(last, after.Hidden);
        Assert.Equal(1, tampering.Tampered);
        Assert.Equal(0, tampering.Armed(h.Address));
    }

    [Fact]
    public async Task The_remote_client_rejects_a_wrong_shape_answer_with_a_precise_error()
    {
        using var model = new RandomModelFixture(TensorDType.F32, tied: false, layers: 2);
        using var executor = RandomModelFixture.Factory.Create(model.Weights, new BlockRange(0, 2));
        await using var server = new BlockServer(executor, new BlockServerOptions { Blocks = new(0, 2), ModelId = "random-llama" });
        var memory = new MemoryTransport();
        await server.StartAsync(await memory.ListenAsync(PeerAddress.Parse($"mem://whole-{Guid.NewGuid():N}"), Ct), Ct);
        var tampering = new WrongShapeTransport(memory);
        await using var remote = await RemoteTransformerBlocks.ConnectAsync(tampering, [server.LocalAddress], model.Config, "random-llama", new RemoteSequenceOptions { MaxRecoveryAttempts = 0 }, Ct)
            .WaitAsync(ServerHarness.Bound, Ct);
        var hidden = model.Config.HiddenSize;
        await using var session = await remote.OpenSessionAsync(1, 16, Ct);
        await session.ForwardAsync(new float[3 * hidden], 3, Ct).AsTask().WaitAsync(ServerHarness.Bound, Ct);

        tampering.ArmWrongShape(server.LocalAddress);
        var error = await Assert.ThrowsAsync<ProtocolException>(async () => await session.ForwardAsync(new float[hidden], 1, Ct).AsTask().WaitAsync(ServerHarness.Bound, Ct));
        Assert.Equal(ProtocolErrorCode.BadShape, error.Code);
        Assert.Contains($"hidden states [1, 2, {hidden}]", error.Message, StringComparison.Ordinal);
        Assert.Contains($"; {hidden} were expected", error.Message, StringComparison.Ordinal);
        Assert.Equal(1, tampering.Tampered);
    }

    private static async Task<uint> OpenAsync(TestClient client, int maxLength)
    {
        var id = client.Connection.NewStreamId();
        await client.Connection.SendAsync(id, new InferenceOpen(Guid.NewGuid(), ServerHarness.Span, maxLength, WireCodec.Fp32), Ct);
        return id;
    }

    private static async Task<Received> StepAsync(TestClient client, uint id, ulong stepId, int start, float[] hidden, ServerHarness h, int tokens)
    {
        await client.Connection.SendAsync(id, new InferenceStep(stepId, start, h.Tensor(hidden, 1, tokens)), Ct);
        return await client.NextAsync(id);
    }
}
