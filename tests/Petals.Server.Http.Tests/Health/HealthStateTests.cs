using System.Net;
using System.Text.Json;
using Petals.Discovery;
using Petals.Models;
using Petals.Testing;

namespace Petals.Server.Http.Tests.Health;

/// <summary>GET /api/v1/state and the per-server endpoints over a real swarm (block servers announcing in a DHT on 127.0.0.1).</summary>
public sealed class HealthStateTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task StateListsBlocksWithTheirServersAndSummedThroughputAndAGapAsZero()
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        await using var swarm = await HealthSwarm.StartAsync([new(0, 2), new(0, 2), new(3, 5)]);
        var state = await swarm.WaitForStateAsync(s => s.GetProperty("models").GetArrayLength() == 1 && s.GetProperty("models")[0].GetProperty("server_count").GetInt32() == 3, HealthSwarm.Bound, "three servers");

        Assert.Equal(JsonValueKind.Null, state.GetProperty("error").ValueKind);
        Assert.Equal(0.5, state.GetProperty("refresh_seconds").GetDouble());
        var model = state.GetProperty("models")[0];
        Assert.Equal(swarm.ModelId, model.GetProperty("model_id").GetString());
        Assert.Equal(5, model.GetProperty("block_count").GetInt32());
        Assert.Equal(4, model.GetProperty("blocks_covered").GetInt32());
        Assert.False(model.GetProperty("chain_complete").GetBoolean());
        Assert.Contains("2", model.GetProperty("problem").GetString(), StringComparison.Ordinal);
        var blocks = model.GetProperty("blocks").EnumerateArray().ToArray();
        Assert.Equal([0, 1, 2, 3, 4], blocks.Select(b => b.GetProperty("block").GetInt32()));
        Assert.Equal([2, 2, 0, 1, 1], blocks.Select(b => b.GetProperty("servers").GetInt32()));
        Assert.Equal([500.0, 500.0, 0.0, 250.0, 250.0], blocks.Select(b => b.GetProperty("throughput").GetDouble()));

        var servers = model.GetProperty("servers").EnumerateArray().ToDictionary(s => s.GetProperty("peer_id").GetString()!);
        Assert.Equal(swarm.PeerIds.Order(StringComparer.Ordinal), servers.Keys.Order(StringComparer.Ordinal));
        var first = servers[swarm.PeerIds[0]];
        Assert.Equal("server-0", first.GetProperty("public_name").GetString());
        Assert.Equal(swarm.AddressOf(0).ToString(), first.GetProperty("address").GetString());
        Assert.Equal("online", first.GetProperty("state").GetString());
        Assert.Equal(0, first.GetProperty("span_start").GetInt32());
        Assert.Equal(2, first.GetProperty("span_end").GetInt32());
        Assert.Equal(250, first.GetProperty("throughput").GetDouble());
        Assert.Equal("given", first.GetProperty("throughput_method").GetString());
        Assert.Equal(4096, first.GetProperty("cache_tokens_left").GetInt64());
        Assert.Equal("F32", first.GetProperty("dtype").GetString());
        Assert.Equal("none", first.GetProperty("quantization").GetString());
        Assert.Equal(["chat"], first.GetProperty("adapters").EnumerateArray().Select(a => a.GetString()));
        Assert.Equal("health-test", first.GetProperty("version").GetString());
        Assert.Equal(1.5, first.GetProperty("next_server_rtts_ms").GetProperty("00ff").GetDouble());
        var expires = first.GetProperty("expires_in_seconds").GetDouble();
        Assert.InRange(expires, 200, 300);
        Assert.Equal(4095, servers[swarm.PeerIds[1]].GetProperty("cache_tokens_left").GetInt64());
        Assert.Empty(servers[swarm.PeerIds[2]].GetProperty("adapters").EnumerateArray());
    }

    [Fact]
    public async Task AKilledServerDisappearsWithinItsAnnouncementExpiryAndAnOfflineOneStopsCountingAsCoverage()
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        var expiry = TimeSpan.FromSeconds(3);
        await using var swarm = await HealthSwarm.StartAsync([new(0, 5), new(0, 5), new(0, 5)], [TimeSpan.FromMinutes(5), expiry, TimeSpan.FromMinutes(5)]);
        await swarm.WaitForStateAsync(s => ServerCount(s) == 3, HealthSwarm.Bound, "three servers");

        // A server that says it goes offline (as `petals serve` does when it stops) shows as offline and covers nothing.
        await swarm.AnnounceAsync(2, ServerState.Offline, TimeSpan.FromMinutes(5), swarm.AddressOf(2));
        var offline = await swarm.WaitForStateAsync(s => State(s, swarm.PeerIds[2]) == "offline", HealthSwarm.Bound, "server 2 offline");
        Assert.All(offline.GetProperty("models")[0].GetProperty("blocks").EnumerateArray(), b => Assert.Equal(2, b.GetProperty("servers").GetInt32()));

        // A killed server says nothing: its announcement is gone once it expires.
        var killedAt = DateTime.UtcNow;
        await swarm.KillAsync(1);
        var after = await swarm.WaitForStateAsync(s => State(s, swarm.PeerIds[1]) is null, expiry + TimeSpan.FromSeconds(10), "killed server 1 gone");
        Assert.True(DateTime.UtcNow - killedAt <= expiry + TimeSpan.FromSeconds(10));
        Assert.Equal("online", State(after, swarm.PeerIds[0]));
        Assert.All(after.GetProperty("models")[0].GetProperty("blocks").EnumerateArray(), b => Assert.Equal(1, b.GetProperty("servers").GetInt32()));
    }

    [Fact]
    public async Task ServerEndpointsAnswerTheServerAPageAndPreciseErrors()
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        await using var swarm = await HealthSwarm.StartAsync([new(0, 5)]);
        await swarm.WaitForStateAsync(s => ServerCount(s) == 1, HealthSwarm.Bound, "one server");
        var peer = swarm.PeerIds[0];

        using var json = JsonDocument.Parse(await swarm.Http.GetStringAsync(new Uri($"/api/v1/servers/{peer}", UriKind.Relative), Ct));
        Assert.Equal(peer, json.RootElement.GetProperty("peer_id").GetString());
        var entry = Assert.Single(json.RootElement.GetProperty("models").EnumerateArray());
        Assert.Equal(swarm.ModelId, entry.GetProperty("model_id").GetString());
        Assert.Equal("server-0", entry.GetProperty("server").GetProperty("public_name").GetString());

        using var page = await swarm.Http.GetAsync(new Uri($"/servers/{peer}", UriKind.Relative), Ct);
        Assert.Equal(HttpStatusCode.OK, page.StatusCode);
        Assert.Contains($"data-peer-id=\"{peer}\"", await page.Content.ReadAsStringAsync(Ct), StringComparison.Ordinal);

        var unknown = new string('a', 40);
        using var missing = await swarm.Http.GetAsync(new Uri($"/api/v1/servers/{unknown}", UriKind.Relative), Ct);
        Assert.Equal(HttpStatusCode.NotFound, missing.StatusCode);
        Assert.Equal($"peer '{unknown}' is not announced in the swarm (as of the last read)", await ErrorAsync(missing));
        using var missingPage = await swarm.Http.GetAsync(new Uri($"/servers/{unknown}", UriKind.Relative), Ct);
        Assert.Equal(HttpStatusCode.NotFound, missingPage.StatusCode);

        using var bad = await swarm.Http.GetAsync(new Uri("/servers/a%3Cb", UriKind.Relative), Ct);
        Assert.Equal(HttpStatusCode.BadRequest, bad.StatusCode);
        Assert.Equal("peer id must be 1 to 128 characters of letters, digits, '-', '_' or '.'", await ErrorAsync(bad));
    }

    private static async Task<string?> ErrorAsync(HttpResponseMessage response)
    {
        Assert.Equal("application/json; charset=utf-8", response.Content.Headers.ContentType?.ToString());
        using var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync(Ct));
        return json.RootElement.GetProperty("error").GetString();
    }

    internal static int ServerCount(JsonElement state) =>
        state.GetProperty("models").GetArrayLength() == 0 ? 0 : state.GetProperty("models")[0].GetProperty("server_count").GetInt32();

    internal static string? State(JsonElement state, string peerId) =>
        state.GetProperty("models").EnumerateArray()
            .SelectMany(m => m.GetProperty("servers").EnumerateArray())
            .Where(s => s.GetProperty("peer_id").GetString() == peerId)
            .Select(s => s.GetProperty("state").GetString())
            .FirstOrDefault();
}
