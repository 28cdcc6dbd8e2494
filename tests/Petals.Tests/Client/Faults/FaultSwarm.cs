using System.Globalization;
using Petals.Testing.Execution;
using Petals.Client;
using Petals.Models;
using Petals.Server;
using Petals.Testing.Transport;
using Petals.Tests.Generation;
using Petals.Transport;

namespace Petals.Tests.Client.Faults;

/// <summary>How a server fails, as its client sees it.</summary>
internal enum FaultKind
{
    /// <summary>kill -9: every open stream to it aborts and new connects are refused (until healed).</summary>
    Crash,

    /// <summary>The connections to it break; it stays up and accepts new ones.</summary>
    Disconnect,

    /// <summary>Hung: connected but silent, pings unanswered (until healed).</summary>
    Stall,

    /// <summary>Its next inference step fails in the executor; it answers an error frame.</summary>
    ErrorFrame,

    /// <summary>Its next step result arrives with hidden states of the wrong shape.</summary>
    WrongShape,
}

/// <summary>
/// Real block servers of a <see cref="TinyModel"/>, one per span, announced in a shared <see cref="DiscoverySwarm"/> under a
/// model id of their own (so one DHT serves many swarms), with every fault of <see cref="FaultKind"/> injectable: each
/// server runs a <see cref="FaultyBlockExecutor"/>, and the client's transport is the DHT's memory transport under a
/// <see cref="WrongShapeTransport"/> and a <see cref="ShapingTransport"/>. Server i announces as DHT peer i + 1.
/// </summary>
internal sealed class FaultSwarm : IAsyncDisposable
{
    private readonly List<ITransportListener> _listeners = [];

    private FaultSwarm(DiscoverySwarm dht, TinyModel model, string modelId)
    {
        Dht = dht;
        Model = model;
        ModelId = modelId;
        Tamper = new WrongShapeTransport(dht.Transport);
        ClientTransport = Tamper.WithShaping(Faults);
    }

    public DiscoverySwarm Dht { get; }

    public TinyModel Model { get; }

    public string ModelId { get; }

    public List<BlockServer> Servers { get; } = [];

    public List<FaultyBlockExecutor> Executors { get; } = [];

    public List<PeerAddress> Addresses { get; } = [];

    public NetworkShapingOptions Faults { get; } = new();

    public WrongShapeTransport Tamper { get; }

    /// <summary>What clients connect through.</summary>
    public ShapingTransport ClientTransport { get; }

    public static async Task<FaultSwarm> StartAsync(DiscoverySwarm dht, TinyModel model, IReadOnlyList<BlockRange> spans, CancellationToken ct)
    {
        if (spans.Count > dht.Peers.Count - 1)
        {
            throw new ArgumentException($"{spans.Count} servers need {spans.Count + 1} DHT nodes; the DHT has {dht.Peers.Count}.", nameof(spans));
        }

        var swarm = new FaultSwarm(dht, model, "tiny-" + Guid.NewGuid().ToString("N")[..12]);
        try
        {
            for (var i = 0; i < spans.Count; i++)
            {
                var executor = new FaultyBlockExecutor(RandomModelFixture.Factory.Create(model.Weights, spans[i]));
                swarm.Executors.Add(executor);
                var server = new BlockServer(executor, new BlockServerOptions { Blocks = spans[i], ModelId = swarm.ModelId, PeerId = dht.Peers[i + 1].LocalPeerId });
                var listener = await dht.Transport.ListenAsync(PeerAddress.Parse($"mem://{swarm.ModelId}-server-{i.ToString(CultureInfo.InvariantCulture)}"), ct);
                swarm._listeners.Add(listener);
                await server.StartAsync(listener, ct);
                swarm.Servers.Add(server);
                swarm.Addresses.Add(listener.LocalAddress);
                await dht.AnnounceAsync(swarm.ModelId, model.Layers, dht.Info(i + 1, spans[i], address: listener.LocalAddress), ct: ct);
            }

            return swarm;
        }
        catch
        {
            await swarm.DisposeAsync();
            throw;
        }
    }

    /// <summary>A started sequence manager of this swarm's model, reading the shared DHT.</summary>
    public async Task<SwarmSequenceManager> StartSequenceAsync(CancellationToken ct)
    {
        var sequence = new SwarmSequenceManager(Dht.Client, ModelId, Model.Layers);
        try
        {
            await sequence.StartAsync(ct).WaitAsync(DiscoverySwarm.Bound, ct);
            return sequence;
        }
        catch
        {
            await sequence.DisposeAsync();
            throw;
        }
    }

    /// <summary>The index of the server announced as <paramref name="peerId"/>.</summary>
    public int IndexOf(string peerId)
    {
        for (var i = 0; i < Servers.Count; i++)
        {
            if (Dht.Peers[i + 1].LocalPeerId == peerId)
            {
                return i;
            }
        }

        throw new ArgumentException($"No server of this swarm is peer {peerId}.", nameof(peerId));
    }

    /// <summary>Makes server <paramref name="index"/> fail as <paramref name="kind"/> says; <see cref="Heal"/> undoes the lasting ones.</summary>
    /// <returns>The client streams aborted (crash, disconnect), else 0.</returns>
    public int Inject(FaultKind kind, int index)
    {
        var address = Addresses[index];
        switch (kind)
        {
            case FaultKind.Crash:
                Faults.RefusedAddresses.Add(address);
                return ClientTransport.AbortStreams(address, "fault injected: server killed");
            case FaultKind.Disconnect:
                return ClientTransport.AbortStreams(address, "fault injected: connection lost");
            case FaultKind.Stall:
                Faults.StalledAddresses.Add(address);
                break;
            case FaultKind.ErrorFrame:
                Executors[index].FailNextStep();
                break;
            case FaultKind.WrongShape:
                Tamper.ArmWrongShape(address);
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(kind), kind, "Unknown fault kind.");
        }

        return 0;
    }

    /// <summary>Restarts crashed servers and wakes stalled ones (as a fresh process would: their sessions are gone).</summary>
    public void Heal()
    {
        Faults.RefusedAddresses.Clear();
        Faults.StalledAddresses.Clear();
    }

    public async ValueTask DisposeAsync()
    {
        Heal();
        foreach (var server in Servers)
        {
            await server.DisposeAsync().AsTask().WaitAsync(DiscoverySwarm.Bound);
        }

        foreach (var listener in _listeners)
        {
            await listener.DisposeAsync();
        }

        foreach (var executor in Executors)
        {
            executor.Dispose();
        }
    }
}
