using System.Globalization;
using Petals.Client;
using Petals.Execution;
using Petals.Models;
using Petals.Server;
using Petals.Testing.Execution;
using Petals.Testing.Transport;
using Petals.Tests.Client.Faults;
using Petals.Tests.Generation;
using Petals.Transport;

namespace Petals.Tests.Client.Verification;

/// <summary>
/// Real block servers of a <see cref="TinyModel"/> over one <see cref="MemoryTransport"/>, reached by address (peer ids
/// <c>server-0</c>, <c>server-1</c>, …); the servers chosen by the caller run a <see cref="LyingBlockExecutor"/>.
/// </summary>
internal sealed class VerificationRig : IAsyncDisposable
{
    public static readonly TimeSpan Bound = TimeSpan.FromSeconds(60);
    private readonly List<ITransportListener> _listeners = [];
    private readonly List<IAsyncDisposable> _extras = [];
    private readonly List<IBlockExecutor> _executors = [];

    private VerificationRig(TinyModel model) => Model = model;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public string ModelId { get; } = "verify-" + Guid.NewGuid().ToString("N")[..8];

    public TinyModel Model { get; }

    public MemoryTransport Transport { get; } = new();

    public List<BlockServer> Servers { get; } = [];

    public List<PeerAddress> Addresses { get; } = [];

    /// <summary>The lying executor of each server, or null for an honest one.</summary>
    public List<LyingBlockExecutor?> Liars { get; } = [];

    /// <summary>Starts one server per span; <paramref name="liar"/> says which lie (null: honest) and sets them up.</summary>
    public static async Task<VerificationRig> StartAsync(TinyModel model, BlockRange[] spans, Func<int, LyingBlockExecutor, bool>? liar = null)
    {
        var rig = new VerificationRig(model);
        try
        {
            for (var i = 0; i < spans.Length; i++)
            {
                IBlockExecutor executor = RandomModelFixture.Factory.Create(model.Weights, spans[i]);
                LyingBlockExecutor? lying = null;
                if (liar is not null)
                {
                    var candidate = new LyingBlockExecutor(executor, seed: 100 + i);
                    if (liar(i, candidate))
                    {
                        lying = candidate;
                        executor = candidate;
                    }
                }

                rig.Liars.Add(lying);
                rig._executors.Add(executor);
                var name = "server-" + i.ToString(CultureInfo.InvariantCulture);
                var server = new BlockServer(executor, new BlockServerOptions { Blocks = spans[i], ModelId = rig.ModelId, PeerId = name });
                var listener = await rig.Transport.ListenAsync(PeerAddress.Parse($"mem://{rig.ModelId}-{name}"), Ct);
                rig._listeners.Add(listener);
                await server.StartAsync(listener, Ct);
                rig.Servers.Add(server);
                rig.Addresses.Add(listener.LocalAddress);
            }

            return rig;
        }
        catch
        {
            await rig.DisposeAsync();
            throw;
        }
    }

    /// <summary>Adds a listener-owning extra (a fake server) whose address the client is also given.</summary>
    public void AddExtra(IAsyncDisposable extra, PeerAddress address)
    {
        _extras.Add(extra);
        Addresses.Add(address);
    }

    public Task<RemoteTransformerBlocks> ConnectAsync(VerificationOptions verification, Action<RemoteSequenceOptions>? configure = null)
    {
        var options = new RemoteSequenceOptions
        {
            Verification = verification,
            LivenessTimeout = TimeSpan.FromSeconds(2),
            RecoveryBackoff = TimeSpan.FromMilliseconds(1),
        };
        configure?.Invoke(options);
        return RemoteTransformerBlocks.ConnectAsync(Transport, Addresses, Model.Config, ModelId, options, Ct).WaitAsync(Bound, Ct);
    }

    /// <summary>Greedy generation of <paramref name="newTokens"/> tokens from a fixed prompt over <paramref name="blocks"/>.</summary>
    public async Task<List<int>> GreedyAsync(Petals.Inference.ITransformerBlocks blocks, int newTokens, Func<int, Task>? afterStep = null)
    {
        int[] prompt = [1, 17, 33, 8];
        await using var session = await blocks.OpenSessionAsync(1, prompt.Length + newTokens, Ct);
        var (tokens, _) = await Model.GreedyAsync(session, prompt, newTokens, null, afterStep, Ct).WaitAsync(Bound, Ct);
        return tokens;
    }

    /// <summary>The honest tokens: the same generation on local blocks.</summary>
    public async Task<List<int>> LocalGreedyAsync(int newTokens)
    {
        using var local = Model.CreateLocalBlocks();
        return await GreedyAsync(local, newTokens);
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var server in Servers)
        {
            await server.DisposeAsync();
        }

        foreach (var extra in _extras)
        {
            await extra.DisposeAsync();
        }

        foreach (var listener in _listeners)
        {
            await listener.DisposeAsync();
        }

        foreach (var executor in _executors)
        {
            executor.Dispose();
        }
    }
}
