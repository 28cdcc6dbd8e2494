using Microsoft.Playwright;
using Petals.Discovery;
using Petals.Testing;

namespace Petals.Server.Http.Tests.Health;

/// <summary>
/// The health page in a real browser: Playwright for .NET driving Debian's chromium headless (never a downloaded
/// browser; skipped when /usr/bin/chromium is absent) over a swarm started by the test.
/// </summary>
public sealed class HealthPageBrowserTests
{
    /// <summary>Debian's chromium (the <c>chromium</c> package, installed by .ci/run when root); $PETALS_CHROMIUM overrides the path.</summary>
    internal static readonly string Chromium = Environment.GetEnvironmentVariable("PETALS_CHROMIUM") is { Length: > 0 } path ? path : "/usr/bin/chromium";

    private static readonly float Timeout = 60_000;

    [Fact]
    public async Task ThePageListsTheSwarmsServersColoursAGapAndDropsAKilledServer()
    {
        Assert.SkipUnless(File.Exists(Chromium), $"{Chromium} is absent: install Debian's chromium package (apt-get install chromium; .ci/run does when root) to run the browser test.");
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        Environment.SetEnvironmentVariable("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1");
        var expiry = TimeSpan.FromSeconds(3);
        await using var swarm = await HealthSwarm.StartAsync([new(0, 2), new(0, 2), new(3, 5)], [TimeSpan.FromMinutes(5), expiry, TimeSpan.FromMinutes(5)], refresh: TimeSpan.FromMilliseconds(500));
        await swarm.WaitForStateAsync(s => HealthStateTests.ServerCount(s) == 3, HealthSwarm.Bound, "three servers");

        using var playwright = await Playwright.CreateAsync();
        await using var browser = await playwright.Chromium.LaunchAsync(new BrowserTypeLaunchOptions
        {
            ExecutablePath = Chromium,
            Headless = true,
            Args = ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
            Timeout = Timeout,
        });
        var page = await browser.NewPageAsync(new BrowserNewPageOptions { ViewportSize = new ViewportSize { Width = 1280, Height = 560 } });
        page.SetDefaultTimeout(Timeout);
        await page.GotoAsync(swarm.BaseAddress.ToString());

        // Every server of the swarm is a row of the table; the gap (block 2) is red with 0 servers.
        var rows = page.Locator("table.servers tbody tr");
        await Assertions.Expect(rows).ToHaveCountAsync(3, new() { Timeout = Timeout });
        foreach (var peer in swarm.PeerIds)
        {
            await Assertions.Expect(page.Locator($"tr[data-peer-id='{peer}']")).ToContainTextAsync("online", new() { Timeout = Timeout });
        }

        await Assertions.Expect(page.Locator("tr[data-peer-id='" + swarm.PeerIds[0] + "']")).ToContainTextAsync("server-0");
        var gap = page.Locator(".block[data-block='2']");
        await Assertions.Expect(gap).ToHaveAttributeAsync("data-servers", "0");
        await Assertions.Expect(gap).ToHaveClassAsync(new System.Text.RegularExpressions.Regex(@"\bc0\b"));
        Assert.Equal("rgb(215, 48, 39)", await gap.EvaluateAsync<string>("e => getComputedStyle(e).backgroundColor"));
        await Assertions.Expect(page.Locator(".block[data-block='0']")).ToHaveAttributeAsync("data-servers", "2");
        await Assertions.Expect(page.Locator(".summary")).ToContainTextAsync("1 block with no online server");

        var directory = Path.Combine(AppContext.BaseDirectory, "artifacts");
        Directory.CreateDirectory(directory);
        var screenshot = Path.Combine(directory, "health-monitor.png");
        await page.ScreenshotAsync(new PageScreenshotOptions { Path = screenshot, FullPage = true });
        TestContext.Current.SendDiagnosticMessage($"health monitor screenshot: {screenshot}");
        Console.WriteLine($"health monitor screenshot: {screenshot}");
        Assert.True(new FileInfo(screenshot).Length > 1000);

        // The page of one server, linked from the table.
        var server = await browser.NewPageAsync();
        await server.GotoAsync(new Uri(swarm.BaseAddress, $"/servers/{swarm.PeerIds[2]}").ToString());
        await Assertions.Expect(server.Locator("dl.server")).ToContainTextAsync("server-2", new() { Timeout = Timeout });
        await Assertions.Expect(server.Locator("dl.server")).ToContainTextAsync("3:5");

        // Killed (no last word): the row goes once the announcement expires, with no reload of the page.
        var killedAt = DateTime.UtcNow;
        await swarm.KillAsync(1);
        await Assertions.Expect(page.Locator($"tr[data-peer-id='{swarm.PeerIds[1]}']")).ToHaveCountAsync(0, new() { Timeout = (float)(expiry + TimeSpan.FromSeconds(15)).TotalMilliseconds });
        Assert.True(DateTime.UtcNow - killedAt <= expiry + TimeSpan.FromSeconds(15));
        await Assertions.Expect(rows).ToHaveCountAsync(2);
        await Assertions.Expect(page.Locator(".block[data-block='0']")).ToHaveAttributeAsync("data-servers", "1");

        // Said offline: the row stays, marked offline, and its blocks turn into a gap.
        await swarm.AnnounceAsync(2, ServerState.Offline, TimeSpan.FromMinutes(5), swarm.AddressOf(2));
        await Assertions.Expect(page.Locator($"tr[data-peer-id='{swarm.PeerIds[2]}'][data-state='offline']")).ToHaveCountAsync(1, new() { Timeout = Timeout });
        await Assertions.Expect(page.Locator(".block[data-block='4']")).ToHaveAttributeAsync("data-servers", "0");
        await Assertions.Expect(server.Locator("dl.server")).ToHaveAttributeAsync("data-state", "offline", new() { Timeout = Timeout });
        await page.ScreenshotAsync(new PageScreenshotOptions { Path = Path.Combine(directory, "health-monitor-after.png"), FullPage = true });
    }
}
