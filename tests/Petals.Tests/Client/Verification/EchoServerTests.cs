using Petals.Client;
using Petals.Models;
using Petals.Protocol;
using Petals.Testing.Transport;
using Petals.Tests.Client.Faults;
using Petals.Transport;

namespace Petals.Tests.Client.Verification;

/// <summary>
/// The fake server of issue 12: it copies a real server's handshake (peer id, model) and info (span, limits, stated
/// error) and answers every step with the step's own input, running no block at all. Before verification,
/// <c>petals generate</c> went on with it and printed "Once upon a timetime time time…".
/// </summary>
public sealed class EchoServerTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task A_fake_server_that_copies_a_real_ones_info_and_echoes_steps_is_caught()
    {
        using var model = new TinyModel(4);

        // Honest servers: one whole-model server for the fake to copy, and two that split the model (two more opinions).
        await using var rig = await VerificationRig.StartAsync(model, [new(0, 4), new(0, 2), new(2, 4), new(0, 2), new(2, 4)]);
        var expected = await rig.LocalGreedyAsync(8);
        var fake = await EchoServer.StartAsync(rig.Transport, rig.Servers[0]);
        rig.AddExtra(fake, fake.Address);
        await using var remote = await rig.ConnectAsync(new VerificationOptions { Rate = 1 });
        var mismatches = new List<OutputMismatch>();
        remote.VerificationFailed += (_, m) => mismatches.Add(m);

        // The router cannot tell the two whole-model servers apart; disposing the real one's sessions is not needed:
        // block the real one so the first chain is the fake's.
        var fakeId = remote.Sequence.OnlineServers.Single(s => s.Address.WithPeerId(null) == fake.Address.WithPeerId(null)).PeerId;
        var realId = remote.Sequence.OnlineServers.Single(s => s.Address.WithPeerId(null) == rig.Addresses[0].WithPeerId(null)).PeerId;
        remote.Sequence.Health.ReportFailure(realId, Petals.Routing.PeerFailureKind.Timeout);

        var tokens = await rig.GreedyAsync(remote, 8);

        Assert.Equal(expected, tokens);
        Assert.True(fake.StepsEchoed >= 1);
        var mismatch = Assert.Single(mismatches);
        Assert.Equal((fakeId, OutputVerdict.ServerWrong), (mismatch.PeerId, mismatch.Verdict));
        Assert.Contains(fakeId, remote.Sequence.BannedPeers);
    }

    /// <summary>Speaks the wire protocol as <paramref name="real"/> does, but echoes every step's input.</summary>
    private sealed class EchoServer : IProtocolMessageHandler, IAsyncDisposable
    {
        private readonly ITransportListener _listener;
        private readonly Petals.Server.BlockServer _real;
        private readonly CancellationTokenSource _stop = new();
        private readonly List<ProtocolConnection> _connections = [];
        private readonly Task _accept;
        private int _echoed;

        private EchoServer(ITransportListener listener, Petals.Server.BlockServer real)
        {
            _listener = listener;
            _real = real;
            _accept = Task.Run(AcceptAsync);
        }

        public PeerAddress Address => _listener.LocalAddress;

        public int StepsEchoed => Volatile.Read(ref _echoed);

        public static async Task<EchoServer> StartAsync(MemoryTransport transport, Petals.Server.BlockServer real) =>
            new(await transport.ListenAsync(PeerAddress.Parse($"mem://echo-{Guid.NewGuid():N}"), Ct), real);

        public async ValueTask OnMessageAsync(ProtocolConnection connection, uint streamId, ProtocolMessage message, CancellationToken cancellationToken)
        {
            switch (message)
            {
                case InfoRequest:
                    await connection.SendAsync(streamId, _real.CreateInfo(connection.VersionMinor), cancellationToken);
                    break;
                case InferenceStep step:
                    Interlocked.Increment(ref _echoed);
                    await connection.SendAsync(streamId, new InferenceStepResult(step.StepId, step.StartPosition + step.Hidden.Shape[1], step.Hidden), cancellationToken);
                    break;
                case ForwardRequest forward:
                    await connection.SendAsync(streamId, new ForwardResponse(forward.Hidden), cancellationToken);
                    break;
                case PingMessage ping:
                    await connection.SendAsync(streamId, new PongMessage(ping.Nonce), cancellationToken);
                    break;
                default:
                    break; // InferenceOpen and InferenceClose need no answer.
            }
        }

        public void OnStreamFailed(ProtocolConnection connection, uint streamId, ProtocolException failure)
        {
        }

        public async ValueTask DisposeAsync()
        {
            await _stop.CancelAsync();
            await _listener.DisposeAsync();
            ProtocolConnection[] open;
            lock (_connections)
            {
                open = [.. _connections];
            }

            foreach (var connection in open)
            {
                await connection.DisposeAsync();
            }

            await _accept.WaitAsync(VerificationRig.Bound);
            _stop.Dispose();
        }

        private async Task AcceptAsync()
        {
            // The real server's handshake: its peer id and model.
            var preamble = new ConnectionPreamble(_real.Options.PeerId, _real.Options.ModelId);
            try
            {
                while (!_stop.IsCancellationRequested)
                {
                    var stream = await _listener.AcceptAsync(_stop.Token);
                    var connection = await ProtocolConnection.AcceptAsync(stream, preamble, cancellationToken: _stop.Token);
                    lock (_connections)
                    {
                        _connections.Add(connection);
                    }

                    _ = connection.RunAsync(this, _stop.Token);
                }
            }
            catch (Exception e) when (e is OperationCanceledException or TransportException or ProtocolException or ObjectDisposedException)
            {
            }
        }
    }
}
