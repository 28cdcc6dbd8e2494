using System.Globalization;
using System.Text;
using System.Text.Json;
using Petals.Formats.Gguf;

namespace Petals.Benchmarks.LlamaCpp;

/// <summary>One measured case of one file: medians over all timed steps of all rounds.</summary>
internal sealed record CompareRow(
    string Shape, string Format, string Case, long BlockBytes, double? LlamaMs, double? OursMs, int Tokens, string? OursNote, string? LlamaNote)
{
    public double? LlamaTokensPerSecond => LlamaMs is { } ms ? Tokens / (ms / 1000) : null;

    public double? OursTokensPerSecond => OursMs is { } ms ? Tokens / (ms / 1000) : null;

    /// <summary>Bytes of the blocks' tensors per step over the step time.</summary>
    public static double GigabytesPerSecond(long bytes, double ms) => bytes / (ms / 1000) / 1e9;

    public double? Ratio => LlamaMs is { } l && OursMs is { } o ? l / o : null;
}

/// <summary>
/// <c>llama-compare</c>: llama.cpp and our executor on the same GGUF files, the same thread count, in alternating rounds.
/// </summary>
internal static class LlamaCompare
{
    public static int Run(LlamaCompareOptions o, TextWriter output, TextWriter log)
    {
        if (o.Impl != "ours")
        {
            LlamaNative.Initialize(o.LlamaNative);
        }

        var rows = new List<CompareRow>();
        var stamp = DateTime.UtcNow.ToString("yyyyMMdd-HHmm", CultureInfo.InvariantCulture);
        Directory.CreateDirectory(o.Results);
        var jsonl = Path.Combine(o.Results, $"llama-compare-{stamp}.jsonl");
        foreach (var shape in o.Shapes)
        {
            foreach (var format in o.Formats)
            {
                var path = Path.Combine(o.Directory, CompareModels.FileName(shape, o.Blocks, format));
                if (!File.Exists(path))
                {
                    log.WriteLine($"{path}: missing (run model-files first); skipped");
                    continue;
                }

                var fileRows = RunFile(o, shape, format, path, log);
                rows.AddRange(fileRows);
                File.AppendAllLines(jsonl, fileRows.Select(Json));
            }
        }

        var markdown = Markdown(o, rows);
        var md = Path.Combine(o.Results, $"llama-compare-{stamp}.md");
        File.WriteAllText(md, markdown);
        output.Write(markdown);
        log.WriteLine($"wrote {md} and {jsonl}");
        if (o.Plot && rows.Count > 0)
        {
            var png = Path.Combine(o.Results, $"llama-compare-{stamp}.png");
            ComparePlot.Write(rows, png);
            log.WriteLine($"wrote {png}");
        }

        return 0;
    }

    /// <summary>The bytes of the tensors of the blocks (blk.*) as the file stores them.</summary>
    public static long BlockBytes(string path)
    {
        using var file = GgufFile.Open(path);
        return file.Tensors.Where(t => t.Name.StartsWith("blk.", StringComparison.Ordinal)).Sum(t => t.ByteSize);
    }

    private static List<CompareRow> RunFile(LlamaCompareOptions o, CompareShape shape, string format, string path, TextWriter log)
    {
        var blockBytes = BlockBytes(path);
        var maxPosition = o.Positions.Count > 0 ? o.Positions.Max() : 0;
        var maxTokens = Math.Max(256, o.Prefill);
        var sides = new List<ICompareSide>();
        string? oursNote = null;
        string? llamaNote = null;
        try
        {
            if (o.Impl != "ours")
            {
                try
                {
                    sides.Add(new LlamaSide(path, o.Context, o.Threads, o.Seed));
                }
                catch (InvalidOperationException e)
                {
                    llamaNote = "not loadable: " + e.Message;
                }
            }

            if (o.Impl != "llama")
            {
                var ours = OursSide.TryOpen(path, o.Threads, o.Context, maxTokens, o.Seed, out var failure);
                if (ours is null)
                {
                    oursNote = "not loadable: " + failure;
                    log.WriteLine($"{Path.GetFileName(path)}: ours {oursNote}");
                }
                else
                {
                    sides.Add(ours);
                    oursNote = ours.Describe();
                    log.WriteLine($"{Path.GetFileName(path)}: ours {oursNote}");
                }
            }

            foreach (var side in sides)
            {
                if (maxPosition > 0)
                {
                    var ms = side.FillLong(maxPosition);
                    log.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{Path.GetFileName(path)}: {side.Name} filled {maxPosition} positions in {ms:F0} ms"));
                }
            }

            var times = new Dictionary<(string Side, string Case), List<double>>();
            for (var round = 0; round < o.Rounds; round++)
            {
                for (var s = 0; s < sides.Count; s++)
                {
                    // Alternate which side goes first so that neither always runs on a machine the other just warmed.
                    var side = sides[round % 2 == 0 ? s : sides.Count - 1 - s];
                    foreach (var position in o.Positions)
                    {
                        var isLong = position == maxPosition;
                        if (!isLong)
                        {
                            side.PrepareShort(position);
                        }

                        var list = Times(times, side.Name, $"decode@{position}");
                        for (var i = 0; i < o.Warmup + o.Steps; i++)
                        {
                            var ms = side.DecodeStep(position, isLong);
                            if (i >= o.Warmup)
                            {
                                list.Add(ms);
                            }
                        }
                    }

                    if (o.Prefill > 0)
                    {
                        if (round == 0)
                        {
                            side.Prefill(o.Prefill); // warm-up
                        }

                        Times(times, side.Name, $"prefill{o.Prefill}").Add(side.Prefill(o.Prefill));
                    }
                }

                log.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{Path.GetFileName(path)}: round {round + 1}/{o.Rounds} done"));
            }

            var cases = o.Positions.Select(p => ($"decode@{p}", 1)).ToList();
            if (o.Prefill > 0)
            {
                cases.Add(($"prefill{o.Prefill}", o.Prefill));
            }

            return cases.Select(c => new CompareRow(
                shape.Name, format, c.Item1, blockBytes,
                Median(times, "llama.cpp", c.Item1), Median(times, "ours", c.Item1), c.Item2,
                o.Impl == "llama" ? "not run" : oursNote, o.Impl == "ours" ? "not run" : llamaNote)).ToList();
        }
        finally
        {
            foreach (var side in sides)
            {
                side.Dispose();
            }
        }
    }

    private static List<double> Times(Dictionary<(string, string), List<double>> times, string side, string name)
    {
        if (!times.TryGetValue((side, name), out var list))
        {
            times[(side, name)] = list = [];
        }

        return list;
    }

    private static double? Median(Dictionary<(string, string), List<double>> times, string side, string name)
    {
        if (!times.TryGetValue((side, name), out var list) || list.Count == 0)
        {
            return null;
        }

        var sorted = list.Order().ToArray();
        var n = sorted.Length;
        return n % 2 == 1 ? sorted[n / 2] : 0.5 * (sorted[(n / 2) - 1] + sorted[n / 2]);
    }

    public static string Markdown(LlamaCompareOptions o, IReadOnlyList<CompareRow> rows)
    {
        var sb = new StringBuilder();
        var inv = CultureInfo.InvariantCulture;
        sb.AppendLine(string.Create(inv, $"llama-compare: {o.Blocks} blocks per file, {o.Threads} threads each side, {o.Rounds} alternating rounds, {o.Steps} timed steps per decode case per round (after {o.Warmup} untimed), medians; llama.cpp context {o.Context}; {Environment.ProcessorCount} CPUs"));
        sb.AppendLine();
        sb.AppendLine("| shape | format | case | block weights | llama.cpp tok/s | llama.cpp GB/s | ours tok/s | ours GB/s | ours / llama.cpp |");
        sb.AppendLine("|---|---|---|---:|---:|---:|---:|---:|---:|");
        foreach (var r in rows)
        {
            var llama = r.LlamaMs is { } lm
                ? string.Create(inv, $"{r.LlamaTokensPerSecond:F2} | {CompareRow.GigabytesPerSecond(r.BlockBytes, lm):F1}")
                : $"{Short(r.LlamaNote)} | -";
            var ours = r.OursMs is { } om
                ? string.Create(inv, $"{r.OursTokensPerSecond:F2} | {CompareRow.GigabytesPerSecond(r.BlockBytes, om):F1}")
                : $"{Short(r.OursNote)} | -";
            var ratio = r.Ratio is { } x ? x.ToString("F2", inv) + "x" : "-";
            sb.AppendLine(string.Create(inv, $"| {r.Shape} | {r.Format} | {r.Case} | {r.BlockBytes / 1e9:F2} GB | {llama} | {ours} | {ratio} |"));
        }

        sb.AppendLine();
        foreach (var note in rows.Where(r => r.OursNote is not null || r.LlamaNote is not null).Select(r => (r.Shape, r.Format, r.OursNote, r.LlamaNote)).Distinct())
        {
            if (note.OursNote is not null)
            {
                sb.AppendLine($"- {note.Shape} {note.Format}, ours: {note.OursNote}");
            }

            if (note.LlamaNote is not null)
            {
                sb.AppendLine($"- {note.Shape} {note.Format}, llama.cpp: {note.LlamaNote}");
            }
        }

        sb.AppendLine();
        sb.AppendLine("GB/s = bytes of the blocks' tensors as stored in the file / median step time (for prefill: per whole prefill).");
        sb.AppendLine("llama.cpp's step also runs the token embedding, the final norm and the LM head (vocabulary of 259 tokens: 4 MB of f32");
        sb.AppendLine("weights, ~0.1% of the blocks' bytes); ours runs the blocks only. Decode steps reset the cache to the position before each step.");
        return sb.ToString();
    }

    private static string Short(string? note) => note switch
    {
        null => "-",
        _ when note.StartsWith("not loadable", StringComparison.Ordinal) => "not loadable",
        _ => note,
    };

    private static string Json(CompareRow r)
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms))
        {
            w.WriteStartObject();
            w.WriteString("shape", r.Shape);
            w.WriteString("format", r.Format);
            w.WriteString("case", r.Case);
            w.WriteNumber("tokens", r.Tokens);
            w.WriteNumber("block_bytes", r.BlockBytes);
            Number(w, "llama_ms", r.LlamaMs);
            Number(w, "ours_ms", r.OursMs);
            Number(w, "ratio", r.Ratio);
            if (r.OursNote is not null)
            {
                w.WriteString("ours_note", r.OursNote);
            }

            if (r.LlamaNote is not null)
            {
                w.WriteString("llama_note", r.LlamaNote);
            }

            w.WriteEndObject();
        }

        return Encoding.UTF8.GetString(ms.ToArray());
    }

    private static void Number(Utf8JsonWriter w, string name, double? value)
    {
        if (value is { } v)
        {
            w.WriteNumber(name, v);
        }
        else
        {
            w.WriteNull(name);
        }
    }
}
