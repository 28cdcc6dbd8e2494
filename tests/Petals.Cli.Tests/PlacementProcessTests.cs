using System.Text.RegularExpressions;
using Petals.Models;
using Petals.Testing;

namespace Petals.Cli.Tests;

/// <summary>
/// Servers that place themselves, as real processes: <c>petals dht</c> and <c>petals serve --num-blocks 2 --initial-peers …</c>
/// (no <c>--blocks</c>) on the shared 5-block model, a client that knows only the DHT address, and a server killed with
/// SIGKILL whose gap a rebalance of another server fills.
/// </summary>
public sealed partial class PlacementProcessTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(90);

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Servers_with_only_num_blocks_cover_the_model_generate_as_locally_and_a_rebalance_fills_the_gap_of_a_killed_server()
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        Assert.SkipWhen(OperatingSystem.IsWindows(), "SIGKILL is a POSIX signal.");
        await using var boot = PetalsProcess.Start("dht");
        var bootAddress = (await boot.WaitForLineAsync("dht "))["dht ".Length..];
        var servers = new List<PetalsProcess>();
        PetalsProcess StartServer(int i)
        {
            var server = PetalsProcess.Start(
                "serve", "--model", TestData.Stories260KGguf, "--num-blocks", "2", "--initial-peers", bootAddress,
                "--threads", "1", "--balance-period", "2", "--announce-interval", "1", "--public-name", "placed-" + i);
            servers.Add(server);
            return server;
        }

        try
        {
            // Three servers started together: 2 blocks each, 5 blocks in all.
            for (var i = 0; i < 3; i++)
            {
                StartServer(i);
            }

            foreach (var server in servers)
            {
                await server.WaitForLineAsync("listening ");
            }

            // Joined one after another (random delays), they cover the model at once; in the rare case that all three read the
            // swarm at the same moment, the yielding rechecks or the first rebalance (2 s here) complete the cover.
            var spans = servers.Select(Span).ToArray();
            var coverBy = DateTime.UtcNow + TimeSpan.FromSeconds(30);
            while (!Covered(spans = servers.Select(Span).ToArray()))
            {
                Assert.True(DateTime.UtcNow < coverBy, $"spans {string.Join(", ", spans)} leave a block uncovered{Logs(servers)}");
                await Task.Delay(200, Ct);
            }

            string[] common = ["--model", TestData.Stories260KGguf, "--prompt", "Once upon a time", "--max-new-tokens", "16"];
            var local = await CliRunner.RunAsync(["generate", .. common]);
            Assert.True(local.ExitCode == 0, local.Error);
            var remote = await CliRunner.RunProcessAsync(Bound, ["generate", .. common, "--initial-peers", bootAddress]);
            Assert.True(remote.ExitCode == 0, remote.Error + Logs(servers));
            Assert.Equal(local.Output, remote.Output);

            // A fourth joins where the swarm is weakest; then one that alone holds some block dies without a word.
            await StartServer(3).WaitForLineAsync("listening ");
            spans = servers.Select(Span).ToArray();
            var victim = Enumerable.Range(0, servers.Count).First(i => Enumerable.Range(spans[i].Start, spans[i].Count).Any(b => spans.Count(s => s.Contains(b)) == 1));
            var gap = Enumerable.Range(spans[victim].Start, spans[victim].Count).Where(b => spans.Count(s => s.Contains(b)) == 1).ToArray();
            var movesBefore = servers.Sum(s => s.Lines("moved ").Count);
            await servers[victim].SignalAsync("KILL");

            // Its announcement expires (3 announce intervals), a survivor's next check sees the gap and moves into it.
            var deadline = DateTime.UtcNow + Bound;
            while (true)
            {
                var alive = servers.Where((_, i) => i != victim).Select(Span).ToArray();
                if (servers.Sum(s => s.Lines("moved ").Count) > movesBefore && Covered(alive))
                {
                    break;
                }

                Assert.True(DateTime.UtcNow < deadline, $"no rebalance filled blocks {string.Join(",", gap)} of the killed server {spans[victim]} within {Bound}; spans now {string.Join(", ", alive)}{Logs(servers)}");
                await Task.Delay(200, Ct);
            }

            var again = await CliRunner.RunProcessAsync(Bound, ["generate", .. common, "--initial-peers", bootAddress]);
            Assert.True(again.ExitCode == 0, again.Error + Logs(servers));
            Assert.Equal(local.Output, again.Output);
        }
        finally
        {
            foreach (var server in servers)
            {
                await server.DisposeAsync();
            }
        }
    }

    /// <summary>The span a server serves now: its last <c>moved</c> line, else its <c>listening</c> line.</summary>
    private static BlockRange Span(PetalsProcess server)
    {
        var moves = server.Lines("moved ");
        if (moves.Count > 0)
        {
            return BlockRange.Parse(MovedLine().Match(moves[^1]).Groups[1].Value);
        }

        var listening = server.Lines("listening ").Single();
        return BlockRange.Parse(listening[(listening.LastIndexOf(' ') + 1)..]);
    }

    private static bool Covered(IEnumerable<BlockRange> spans) => Enumerable.Range(0, 5).All(b => spans.Any(s => s.Contains(b)));

    private static string Logs(IEnumerable<PetalsProcess> servers) =>
        "\n" + string.Join("\n", servers.Select((s, i) => $"server {i}: {string.Join(" | ", s.Lines(""))}"));

    [GeneratedRegex(@"^moved blocks \S+ -> (\S+) listening ")]
    private static partial Regex MovedLine();
}
