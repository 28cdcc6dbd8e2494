using Petals.Transport;
using Petals.Transport.Tcp;

namespace Petals.Discovery.Tests.Network;

/// <summary>
/// The DHT over real TLS on 127.0.0.1 with one key per peer (the TLS certificate made from the DHT identity's key):
/// peers are pinned by either id form, contacts known by id are pinned to it, and a node whose TLS key is not its
/// DHT id is refused.
/// </summary>
public sealed class DhtOverTlsTests : IAsyncDisposable
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(30);
    private readonly List<IAsyncDisposable> _nodes = [];
    private readonly List<IDisposable> _keys = [];

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Initial_peers_are_pinned_by_either_id_form_and_trusted_on_first_use_only_when_allowed()
    {
        var a = await StartAsync();
        var full = a.LocalAddress;
        Assert.Equal("tls", full.Scheme);
        Assert.StartsWith(a.Id.ToString(), full.PeerId, StringComparison.Ordinal); // one key: the node id prefixes the TLS id

        var byFullId = await JoinAsync(full);
        Assert.True(byFullId.Answered, byFullId.ToString());
        Assert.Equal(a.Id, byFullId.Id);

        var byNodeId = await JoinAsync(full.WithPeerId(a.Id.ToString()));
        Assert.True(byNodeId.Answered, byNodeId.ToString());

        var unpinned = full.WithPeerId(null);
        var trusted = await JoinAsync(unpinned, allowUnpinned: true);
        Assert.True(trusted.Answered, trusted.ToString());
        Assert.Equal(a.Id, trusted.Id);
        await Assert.ThrowsAsync<ArgumentException>(() => JoinAsync(unpinned));

        // Pinned to another node's id at a's address: a's key does not hash to it.
        using var other = PeerIdentity.Generate();
        var wrong = await JoinAsync(full.WithPeerId(other.NodeId.ToString()));
        Assert.False(wrong.Answered);
        Assert.Contains($"proved the identity {full.PeerId}, not the expected {other.NodeId}", wrong.Failure, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_node_whose_tls_key_is_not_its_dht_id_is_refused()
    {
        var key = Keep(PeerIdentity.Generate());
        var certificate = Keep(TlsPeerIdentity.Create()); // another key than the DHT identity's
        var node = Keep(new DhtNode(key));
        await node.StartAsync(new TcpTransport(new TcpTransportOptions { Identity = certificate }), PeerAddress.Parse("tls://127.0.0.1:0"), Ct).WaitAsync(Bound, Ct);

        var unpinned = await JoinAsync(node.LocalAddress.WithPeerId(null), allowUnpinned: true);
        Assert.False(unpinned.Answered);
        Assert.Contains($"proved the key {certificate.PeerId} but answered as node {key.NodeId}, which is not that key's id", unpinned.Failure, StringComparison.Ordinal);

        var byNodeId = await JoinAsync(node.LocalAddress.WithPeerId(key.NodeId.ToString()));
        Assert.False(byNodeId.Answered);
        Assert.Contains($"proved the identity {certificate.PeerId}", byNodeId.Failure, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_contact_known_by_its_id_is_pinned_to_it_when_its_address_has_none()
    {
        var a = await StartAsync();
        var b = await StartAsync();
        var location = a.LocalAddress.WithPeerId(null);

        // Without the pin the transport would refuse the id-less tls:// address outright (no AllowUnpinnedTls).
        b.Routing.Update(new DhtContact(a.Id, location));
        using var impostor = PeerIdentity.Generate();
        b.Routing.Update(new DhtContact(impostor.NodeId, location)); // another id claimed at a's address

        var lookup = await b.FindNodeAsync(impostor.NodeId, Ct).WaitAsync(Bound, Ct);
        Assert.Contains(lookup.Closest, c => c.Id == a.Id);
        Assert.DoesNotContain(lookup.Closest, c => c.Id == impostor.NodeId);
    }

    public async ValueTask DisposeAsync()
    {
        for (var i = _nodes.Count - 1; i >= 0; i--)
        {
            await _nodes[i].DisposeAsync();
        }

        foreach (var key in _keys)
        {
            key.Dispose();
        }
    }

    private T Keep<T>(T item)
    {
        if (item is IAsyncDisposable node)
        {
            _nodes.Add(node);
        }
        else if (item is IDisposable key)
        {
            _keys.Add(key);
        }

        return item;
    }

    /// <summary>A listening node whose TLS certificate is made from its DHT key.</summary>
    private async Task<DhtNode> StartAsync()
    {
        var key = Keep(PeerIdentity.Generate());
        var tls = Keep(TlsPeerIdentity.FromPkcs8(key.ExportPkcs8()));
        var node = Keep(new DhtNode(key));
        await node.StartAsync(new TcpTransport(new TcpTransportOptions { Identity = tls }), PeerAddress.Parse("tls://127.0.0.1:0"), Ct).WaitAsync(Bound, Ct);
        return node;
    }

    /// <summary>What <paramref name="peer"/> answers a fresh client-mode node joining through it.</summary>
    private async Task<DhtPeerOutcome> JoinAsync(PeerAddress peer, bool allowUnpinned = false)
    {
        var key = Keep(PeerIdentity.Generate());
        var node = Keep(new DhtNode(key));
        await node.StartAsync(new TcpTransport(new TcpTransportOptions { AllowUnpinnedTls = allowUnpinned }), Ct);
        var joined = await node.JoinAsync([peer], Ct).WaitAsync(Bound, Ct);
        return Assert.Single(joined.Peers);
    }
}
