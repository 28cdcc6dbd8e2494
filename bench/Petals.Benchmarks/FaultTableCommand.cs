using System.Globalization;
using System.Text.Json;

namespace Petals.Benchmarks;

/// <summary>The <c>fault-table</c> command: starts the swarm, runs every cell, prints the table.</summary>
internal static class FaultTableCommand
{
    /// <summary>Rebuilds the table from the JSON lines of an earlier run (<c>--jsonl</c>), with the options it ran with.</summary>
    public static int Report(FaultTableOptions options, string jsonLines, double localStepsPerSecond)
    {
        var runs = File.ReadLines(jsonLines).Where(l => !string.IsNullOrWhiteSpace(l)).Select(FaultRun.FromJson).ToList();
        Console.WriteLine(FaultReport.ToMarkdown(options, runs, localStepsPerSecond));
        return 0;
    }

    public static async Task<int> RunAsync(FaultTableOptions options)
    {
        var log = Console.Error;
        log.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"fault-table: {options.Blocks} blocks, hidden {options.Hidden}, {options.Stages} stages x {options.Replicas} replicas, RTT {options.RttMs} ms, bandwidth {(options.BandwidthMbps > 0 ? options.BandwidthMbps + " Mbit/s" : "unlimited")}, lengths {string.Join(",", options.Lengths)}, rates {string.Join(",", options.Rates.Select(r => r.ToString("G3", CultureInfo.InvariantCulture)))}, seed {options.Seed}, cap {options.CapSeconds} s per run, {Environment.ProcessorCount} processors"));
        await using var table = await FaultTable.StartAsync(options, log, CancellationToken.None).ConfigureAwait(false);
        log.WriteLine($"swarm: {string.Join(", ", table.Swarm.Servers.Select(s => $"{s.Blocks} at {s.Address}"))}");
        var runs = await table.RunAllAsync(CancellationToken.None).ConfigureAwait(false);
        if (options.Json)
        {
            Console.WriteLine(JsonSerializer.Serialize(new { local_steps_per_second = table.LocalStepsPerSecond, runs = runs.Select(r => JsonDocument.Parse(r.ToJson()).RootElement).ToArray() }));
        }
        else
        {
            Console.WriteLine(FaultReport.ToMarkdown(options, runs, table.LocalStepsPerSecond));
        }

        // Algorithm 1 and caching with restarts run the same computation as the local reference, so their tokens must be equal.
        return runs.Where(r => r.Strategy != FaultStrategy.NoCaching).All(r => r.TokensMatch) ? 0 : 4;
    }
}
