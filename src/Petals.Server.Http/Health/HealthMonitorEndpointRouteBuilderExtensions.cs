using System.Net;
using System.Text;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using Petals.Server.Http.Health;

namespace Microsoft.AspNetCore.Builder;

/// <summary>Maps the swarm health monitor's endpoints.</summary>
public static class HealthMonitorEndpointRouteBuilderExtensions
{
    /// <summary>
    /// Maps the health monitor (registered with <c>AddPetalsHealthMonitor</c>): <c>GET /</c> the page (per model a bar of
    /// its blocks coloured by coverage and a table of servers, refreshed live), <c>GET /api/v1/state</c> the same data as
    /// JSON, <c>GET /servers/{peerId}</c> a page per server, <c>GET /api/v1/servers/{peerId}</c> that server's
    /// announcements as JSON, and <c>GET /health-assets/{name}</c> the embedded script and style.
    /// </summary>
    /// <param name="endpoints">The endpoint route builder (e.g. the <c>WebApplication</c>).</param>
    /// <returns>A builder for conventions on all the monitor's endpoints.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="endpoints"/> is null.</exception>
    /// <exception cref="InvalidOperationException">When <c>AddPetalsHealthMonitor</c> was not called.</exception>
    public static RouteGroupBuilder MapPetalsHealthMonitor(this IEndpointRouteBuilder endpoints)
    {
        ArgumentNullException.ThrowIfNull(endpoints);
        if (endpoints.ServiceProvider.GetService<SwarmHealthMonitor>() is null)
        {
            throw new InvalidOperationException("MapPetalsHealthMonitor needs services.AddPetalsHealthMonitor() first.");
        }

        var group = endpoints.MapGroup(string.Empty);
        group.MapGet("/", (HealthAssets assets, IOptions<HealthMonitorOptions> options) =>
            Page(assets, "index.html", options.Value, peerId: string.Empty, HttpStatusCode.OK));
        group.MapGet("/api/v1/state", (SwarmHealthMonitor monitor) =>
            Results.Json(monitor.State, HealthJsonContext.Default.SwarmHealthState));
        group.MapGet("/api/v1/servers/{peerId}", (string peerId, SwarmHealthMonitor monitor) =>
        {
            if (BadPeerId(peerId) is { } bad)
            {
                return bad;
            }

            var found = Find(monitor.State, peerId);
            return found.Count == 0
                ? Results.Json(new ErrorBody($"peer '{peerId}' is not announced in the swarm (as of the last read)"), HealthJsonContext.Default.ErrorBody, statusCode: 404)
                : Results.Json(new ServerModels(peerId, found), HealthJsonContext.Default.ServerModels);
        });
        group.MapGet("/servers/{peerId}", (string peerId, SwarmHealthMonitor monitor, HealthAssets assets, IOptions<HealthMonitorOptions> options) =>
            BadPeerId(peerId) is { } bad
                ? bad
                : Page(assets, "server.html", options.Value, peerId, Find(monitor.State, peerId).Count == 0 ? HttpStatusCode.NotFound : HttpStatusCode.OK));
        group.MapGet("/health-assets/{name}", (string name, HealthAssets assets) =>
            name.EndsWith(".html", StringComparison.Ordinal) || !assets.Files.TryGetValue(name, out var bytes)
                ? Results.Text($"no asset '{name}'", statusCode: 404)
                : Results.Bytes(bytes, HealthAssets.ContentType(name)));
        return group;
    }

    /// <summary>The server's entries in every model it announces.</summary>
    internal static List<ServerModel> Find(SwarmHealthState state, string peerId) =>
        [.. state.Models.SelectMany(m => m.Servers.Where(s => string.Equals(s.PeerId, peerId, StringComparison.OrdinalIgnoreCase)).Select(s => new ServerModel(m.ModelId, s)))];

    private static IResult? BadPeerId(string peerId) =>
        peerId.Length is >= 1 and <= 128 && peerId.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.')
            ? null
            : Results.Json(new ErrorBody("peer id must be 1 to 128 characters of letters, digits, '-', '_' or '.'"), HealthJsonContext.Default.ErrorBody, statusCode: 400);

    private static IResult Page(HealthAssets assets, string name, HealthMonitorOptions options, string peerId, HttpStatusCode status)
    {
        var html = Encoding.UTF8.GetString(assets.Files[name])
            .Replace("{{TITLE}}", WebUtility.HtmlEncode(options.Title), StringComparison.Ordinal)
            .Replace("{{PEER_ID}}", WebUtility.HtmlEncode(peerId), StringComparison.Ordinal)
            .Replace("{{REFRESH_MS}}", ((long)options.RefreshInterval.TotalMilliseconds).ToString(System.Globalization.CultureInfo.InvariantCulture), StringComparison.Ordinal);
        return Results.Content(html, "text/html; charset=utf-8", Encoding.UTF8, (int)status);
    }
}
