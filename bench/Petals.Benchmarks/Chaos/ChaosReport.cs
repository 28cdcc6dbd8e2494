using System.Globalization;
using System.Text;
using System.Text.Json;
using Petals.Models;

namespace Petals.Benchmarks.Chaos;

/// <summary>One recovery the client reported during a chaos run, matched to the kill that caused it.</summary>
/// <param name="Position">Tokens the session held when the step failed.</param>
/// <param name="Blocks">The failed span's blocks.</param>
/// <param name="FailedPeerId">The server that failed.</param>
/// <param name="Error">Why the step failed, as the client saw it.</param>
/// <param name="Replacements">The servers that took the span over, e.g. <c>2:3 by PEER</c>.</param>
/// <param name="ReplayedTokens">Tokens of history replayed to the replacements.</param>
/// <param name="DetectedAt">When the client saw the failure.</param>
/// <param name="ResumedAt">When the replacements had replayed the history and the step went on.</param>
/// <param name="DetectionToResume">The client's own measure of <paramref name="ResumedAt"/> − <paramref name="DetectedAt"/>.</param>
/// <param name="Attempt">Which attempt of the step succeeded (1: the first).</param>
/// <param name="Kill">The kill of <paramref name="FailedPeerId"/>, or null when the failed server was not killed by the run.</param>
internal sealed record ChaosRecovery(
    int Position,
    BlockRange Blocks,
    string FailedPeerId,
    string Error,
    IReadOnlyList<string> Replacements,
    int ReplayedTokens,
    DateTimeOffset DetectedAt,
    DateTimeOffset ResumedAt,
    TimeSpan DetectionToResume,
    int Attempt,
    ChaosKill? Kill)
{
    /// <summary>The time from the SIGKILL to the resumed step, or null without a kill.</summary>
    public TimeSpan? KillToResume => Kill is null ? null : ResumedAt - Kill.KilledAt;
}

/// <summary>What a chaos run did and measured.</summary>
/// <param name="Options">The run's settings.</param>
/// <param name="PromptIds">The prompt's tokens.</param>
/// <param name="Expected">The tokens local generation (all blocks in this process) produced.</param>
/// <param name="Generated">The tokens generated through the swarm while servers were killed.</param>
/// <param name="Kills">Every kill, in order.</param>
/// <param name="Recoveries">Every recovery the client reported, in order.</param>
/// <param name="GenerationSeconds">Wall time of the generation through the swarm, waits for restarted servers included.</param>
/// <param name="WaitingSeconds">The part of <paramref name="GenerationSeconds"/> spent waiting for restarted servers before a kill.</param>
internal sealed record ChaosResult(
    ChaosOptions Options,
    IReadOnlyList<int> PromptIds,
    IReadOnlyList<int> Expected,
    IReadOnlyList<int> Generated,
    IReadOnlyList<ChaosKill> Kills,
    IReadOnlyList<ChaosRecovery> Recoveries,
    double GenerationSeconds,
    double WaitingSeconds)
{
    /// <summary>Whether the tokens generated through the swarm are exactly local generation's.</summary>
    public bool MatchesLocal => Expected.SequenceEqual(Generated);

    /// <summary>What the client's output checks did (<see cref="ChaosOptions.VerifyRate"/>); null when they were off.</summary>
    public Petals.Client.VerificationStatistics? Verification { get; init; }

    /// <summary>
    /// Kills with fewer recoveries than chain segments on the killed server: each segment fails, and is recovered,
    /// separately (a server holds two segments when a recovery gave it a second one next to its first).
    /// </summary>
    public IReadOnlyList<ChaosKill> UnrecoveredKills => [.. Kills.Where(k => Recoveries.Count(r => ReferenceEquals(r.Kill, k)) < Math.Max(1, k.ChainSegments.Count))];

    /// <summary>Recoveries of a server the run did not kill (a failure it did not cause).</summary>
    public IReadOnlyList<ChaosRecovery> UnexpectedRecoveries => [.. Recoveries.Where(r => r.Kill is null)];

    /// <summary>Detection-to-resume times in milliseconds, in run order.</summary>
    public IReadOnlyList<double> DetectionToResumeMs => [.. Recoveries.Select(r => r.DetectionToResume.TotalMilliseconds)];

    /// <summary>Kill-to-resume times in milliseconds of the recoveries matched to a kill, in run order.</summary>
    public IReadOnlyList<double> KillToResumeMs => [.. Recoveries.Where(r => r.KillToResume is not null).Select(r => r.KillToResume!.Value.TotalMilliseconds)];
}

/// <summary>Writes a chaos run's results: JSON lines (one per recovery, then a summary) and a text table.</summary>
internal static class ChaosReport
{
    /// <summary>The <paramref name="p"/>-th percentile (0–100) of <paramref name="values"/>, interpolating linearly between ranks; NaN when empty.</summary>
    public static double Percentile(IEnumerable<double> values, double p)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(p, 0);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(p, 100);
        var sorted = values.Order().ToArray();
        if (sorted.Length == 0)
        {
            return double.NaN;
        }

        var rank = p / 100 * (sorted.Length - 1);
        var low = (int)Math.Floor(rank);
        var high = Math.Min(low + 1, sorted.Length - 1);
        return sorted[low] + ((rank - low) * (sorted[high] - sorted[low]));
    }

    /// <summary>Writes the run as JSON lines: a <c>recovery</c> line per recovery, a <c>kill</c> line per kill no recovery matched, and a <c>summary</c> line.</summary>
    public static void WriteJsonLines(ChaosResult result, TextWriter writer)
    {
        foreach (var recovery in result.Recoveries)
        {
            writer.WriteLine(Json(w =>
            {
                w.WriteString("type", "recovery");
                WriteRecovery(w, recovery);
            }));
        }

        foreach (var kill in result.UnrecoveredKills)
        {
            writer.WriteLine(Json(w =>
            {
                w.WriteString("type", "kill");
                WriteKill(w, kill);
            }));
        }

        writer.WriteLine(Json(w =>
        {
            w.WriteString("type", "summary");
            WriteSummary(w, result);
            if (result.Verification is { } v)
            {
                w.WriteNumber("verify_rate", result.Options.VerifyRate);
                w.WriteNumber("output_checks", v.Checks);
                w.WriteNumber("output_checks_skipped", v.Skipped);
                w.WriteNumber("output_mismatches", v.Mismatches);
                w.WriteNumber("largest_passed_error", v.LargestPassedError);
            }
        }));
    }

    /// <summary>The run's summary as one JSON object.</summary>
    public static string SummaryJson(ChaosResult result) => Json(w => WriteSummary(w, result));

    /// <summary>The run as a table: one row per recovery, then the medians and 90th percentiles.</summary>
    public static string Table(ChaosResult result)
    {
        var text = new StringBuilder();
        var o = result.Options;
        text.AppendLine(string.Create(CultureInfo.InvariantCulture,
            $"chaos: {result.Generated.Count} tokens greedy over {o.Spans.Count} servers ({string.Join(", ", o.Spans)}), a server of the active chain killed (SIGKILL) every {o.KillEvery} tokens: {result.Kills.Count} kills, {result.Recoveries.Count} recoveries"));
        text.AppendLine(result.MatchesLocal
            ? $"output equals local generation: yes{(o.WarmUp ? string.Empty : " (cold: servers not warmed up before they take a span over)")}"
            : $"output equals local generation: NO (first difference at token {FirstDifference(result.Expected, result.Generated)})");
        if (result.Verification is { } checks)
        {
            text.AppendLine(string.Create(CultureInfo.InvariantCulture,
                $"output checks at rate {o.VerifyRate}: {checks.Checks} run, {checks.Skipped} skipped, {checks.Mismatches} mismatches, largest honest error {checks.LargestPassedError:G3}"));
        }

        text.AppendLine(" #  after  killed           failed  replacements                              replayed  attempt  detect->resume ms  kill->resume ms");
        for (var i = 0; i < result.Recoveries.Count; i++)
        {
            var r = result.Recoveries[i];
            var killed = r.Kill is null ? "(not killed)" : string.Create(CultureInfo.InvariantCulture, $"server {r.Kill.Server} ({r.Kill.Span})");
            var replacements = string.Join(", ", r.Replacements.Select(Shorten));
            text.AppendLine(string.Create(CultureInfo.InvariantCulture,
                $"{i + 1,2}  {(r.Kill?.AfterTokens.ToString(CultureInfo.InvariantCulture) ?? "-"),5}  {killed,-15}  {r.Blocks,-6}  {replacements,-40}  {r.ReplayedTokens,8}  {r.Attempt,7}  {r.DetectionToResume.TotalMilliseconds,17:F1}  {(r.KillToResume is { } k ? k.TotalMilliseconds.ToString("F1", CultureInfo.InvariantCulture) : "-"),15}"));
        }

        foreach (var kill in result.UnrecoveredKills)
        {
            text.AppendLine(string.Create(CultureInfo.InvariantCulture, $"    kill after {kill.AfterTokens} tokens of server {kill.Server} ({kill.Span}, peer {Shorten(kill.PeerId)}): no recovery reported"));
        }

        text.AppendLine(string.Create(CultureInfo.InvariantCulture, $"detection->resume: {Stats(result.DetectionToResumeMs)}"));
        text.AppendLine(string.Create(CultureInfo.InvariantCulture, $"kill->resume:      {Stats(result.KillToResumeMs)}"));
        text.Append(string.Create(CultureInfo.InvariantCulture,
            $"generation took {result.GenerationSeconds:F1} s, of which {result.WaitingSeconds:F1} s waiting for restarted servers to be online before a kill"));
        return text.ToString();
    }

    private static string Stats(IReadOnlyList<double> ms) => ms.Count == 0
        ? "no recoveries"
        : string.Create(CultureInfo.InvariantCulture,
            $"median {Percentile(ms, 50):F1} ms, p90 {Percentile(ms, 90):F1} ms, min {ms.Min():F1} ms, max {ms.Max():F1} ms ({ms.Count} recoveries)");

    private static int FirstDifference(IReadOnlyList<int> a, IReadOnlyList<int> b)
    {
        var n = Math.Min(a.Count, b.Count);
        for (var i = 0; i < n; i++)
        {
            if (a[i] != b[i])
            {
                return i;
            }
        }

        return n;
    }

    /// <summary>Peer ids are 40 hex digits: the first 8 tell them apart in a table.</summary>
    private static string Shorten(string text)
    {
        var by = text.LastIndexOf(" by ", StringComparison.Ordinal);
        var id = by >= 0 ? text[(by + 4)..] : text;
        var shortId = id.Length > 8 ? id[..8] : id;
        return by >= 0 ? text[..(by + 4)] + shortId : shortId;
    }

    private static void WriteRecovery(Utf8JsonWriter w, ChaosRecovery r)
    {
        w.WriteNumber("position", r.Position);
        w.WriteString("blocks", r.Blocks.ToString());
        w.WriteString("failed", r.FailedPeerId);
        w.WriteString("error", r.Error);
        w.WriteStartArray("replacements");
        foreach (var replacement in r.Replacements)
        {
            w.WriteStringValue(replacement);
        }

        w.WriteEndArray();
        w.WriteNumber("replayed_tokens", r.ReplayedTokens);
        w.WriteNumber("attempt", r.Attempt);
        w.WriteString("detected_at", r.DetectedAt);
        w.WriteString("resumed_at", r.ResumedAt);
        w.WriteNumber("detection_to_resume_ms", r.DetectionToResume.TotalMilliseconds);
        if (r.Kill is { } kill)
        {
            w.WriteNumber("kill_to_resume_ms", r.KillToResume!.Value.TotalMilliseconds);
            w.WriteStartObject("kill");
            WriteKill(w, kill);
            w.WriteEndObject();
        }
    }

    private static void WriteKill(Utf8JsonWriter w, ChaosKill kill)
    {
        w.WriteNumber("after_tokens", kill.AfterTokens);
        w.WriteNumber("server", kill.Server);
        w.WriteString("span", kill.Span.ToString());
        w.WriteString("peer", kill.PeerId);
        w.WriteNumber("pid", kill.ProcessId);
        w.WriteString("killed_at", kill.KilledAt);
        w.WriteStartArray("chain_segments");
        foreach (var segment in kill.ChainSegments)
        {
            w.WriteStringValue(segment.ToString());
        }

        w.WriteEndArray();
    }

    private static void WriteSummary(Utf8JsonWriter w, ChaosResult result)
    {
        var o = result.Options;
        w.WriteString("model", Path.GetFileName(Path.TrimEndingDirectorySeparator(o.Model)));
        w.WriteStartArray("spans");
        foreach (var span in o.Spans)
        {
            w.WriteStringValue(span.ToString());
        }

        w.WriteEndArray();
        w.WriteString("prompt", o.Prompt);
        w.WriteNumber("new_tokens", o.NewTokens);
        w.WriteNumber("kill_every", o.KillEvery);
        w.WriteNumber("seed", o.Seed);
        w.WriteNumber("server_threads", o.ServerThreads);
        w.WriteBoolean("warm_up", o.WarmUp);
        w.WriteNumber("processors", Environment.ProcessorCount);
        w.WriteNumber("generated_tokens", result.Generated.Count);
        w.WriteBoolean("matches_local", result.MatchesLocal);
        w.WriteNumber("kills", result.Kills.Count);
        w.WriteNumber("recoveries", result.Recoveries.Count);
        w.WriteNumber("unrecovered_kills", result.UnrecoveredKills.Count);
        w.WriteNumber("unexpected_recoveries", result.UnexpectedRecoveries.Count);
        WriteStats(w, "detection_to_resume_ms", result.DetectionToResumeMs);
        WriteStats(w, "kill_to_resume_ms", result.KillToResumeMs);
        w.WriteNumber("generation_seconds", result.GenerationSeconds);
        w.WriteNumber("waiting_seconds", result.WaitingSeconds);
        GenerateIds(w, "generated_ids", result.Generated);
    }

    private static void WriteStats(Utf8JsonWriter w, string name, IReadOnlyList<double> ms)
    {
        w.WriteStartObject(name);
        w.WriteNumber("count", ms.Count);
        if (ms.Count > 0)
        {
            w.WriteNumber("median", Percentile(ms, 50));
            w.WriteNumber("p90", Percentile(ms, 90));
            w.WriteNumber("min", ms.Min());
            w.WriteNumber("max", ms.Max());
        }

        w.WriteEndObject();
    }

    private static void GenerateIds(Utf8JsonWriter w, string name, IReadOnlyList<int> ids)
    {
        w.WriteStartArray(name);
        foreach (var id in ids)
        {
            w.WriteNumberValue(id);
        }

        w.WriteEndArray();
    }

    private static string Json(Action<Utf8JsonWriter> body)
    {
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            body(w);
            w.WriteEndObject();
        }

        return Encoding.UTF8.GetString(buffer.GetBuffer(), 0, (int)buffer.Length);
    }
}
