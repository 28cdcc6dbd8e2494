using System.Globalization;
using FsCheck;
using FsCheck.Fluent;
using Petals.Models;

namespace Petals.Tests.Client.Faults;

/// <summary>One failure of a run: before generation step <see cref="Step"/> (0 = the prompt's prefill), the server at <see cref="ChainIndex"/> (modulo its length) of the session's chain at that moment fails as <see cref="Kind"/> says.</summary>
internal sealed record ScheduledFailure(int Step, FaultKind Kind, int ChainIndex)
{
    public static string Describe(FaultKind kind) => kind switch
    {
        FaultKind.Crash => "crash",
        FaultKind.Disconnect => "disconnect",
        FaultKind.Stall => "stall",
        FaultKind.ErrorFrame => "error-frame",
        FaultKind.WrongShape => "wrong-shape",
        _ => kind.ToString(),
    };

    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"step {Step} {Describe(Kind)} chain[{ChainIndex}]");
}

/// <summary>
/// A random fault-tolerance case: a model, a swarm of servers (every block served by at least two, so one failure at a
/// time is always recoverable), a prompt, the tokens to generate greedily and the failures to inject. Prints in one line.
/// </summary>
internal sealed record FaultCase(int Layers, IReadOnlyList<BlockRange> Spans, int PromptLength, int NewTokens, IReadOnlyList<ScheduledFailure> Failures)
{
    public const int MaxServers = 7;

    /// <summary>The prompt: token ids derived from its length only, so a case prints without it.</summary>
    public int[] Prompt => [.. Enumerable.Range(0, PromptLength).Select(i => 3 + ((i * 11) % 50))];

    /// <summary>The session's maximum length: the prompt and every generated token fed back (the last is not).</summary>
    public int MaxLength => PromptLength + NewTokens - 1;

    public override string ToString() => string.Create(
        CultureInfo.InvariantCulture,
        $"model {Layers} layers h={TinyModel.Hidden}; servers [{string.Join(",", Spans)}]; prompt {PromptLength}, {NewTokens} new tokens; failures [{string.Join("; ", Failures)}]");

    /// <summary>Whether every block of <paramref name="layers"/> is served by at least two of <paramref name="spans"/>.</summary>
    public static bool Covered(int layers, IReadOnlyList<BlockRange> spans)
    {
        for (var block = 0; block < layers; block++)
        {
            if (spans.Count(s => s.Start <= block && block < s.End) < 2)
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>Cases of 2–6 layers, 3–7 servers, a 1–4 token prompt, 3–8 new tokens and 1–4 failures at distinct steps.</summary>
    public static Arbitrary<FaultCase> Arbitrary() => Arb.From(Generator(), Shrink);

    public static Gen<FaultCase> Generator() =>
        from layers in Gen.Choose(2, 6)
        from servers in Gen.Choose(3, MaxServers)
        from spans in SpansGen(layers, servers)
        from prompt in Gen.Choose(1, 4)
        from newTokens in Gen.Choose(3, 8)
        from failures in FailuresGen(newTokens)
        select new FaultCase(layers, spans, prompt, newTokens, failures);

    /// <summary>Two random tilings of the blocks (so every block has two servers) plus random extra spans, sorted.</summary>
    private static Gen<IReadOnlyList<BlockRange>> SpansGen(int layers, int servers) =>
        from first in Gen.Choose(1, Math.Min(layers, servers - 1))
        from second in Gen.Choose(1, Math.Min(layers, servers - first))
        from a in Tiling(layers, first)
        from b in Tiling(layers, second)
        from extra in Gen.ListOf(SpanGen(layers), servers - first - second)
        select (IReadOnlyList<BlockRange>)[.. a.Concat(b).Concat(extra).OrderBy(s => s.Start).ThenBy(s => s.End)];

    private static Gen<BlockRange> SpanGen(int layers) =>
        from start in Gen.Choose(0, layers - 1)
        from end in Gen.Choose(start + 1, layers)
        select new BlockRange(start, end);

    private static Gen<List<BlockRange>> Tiling(int layers, int pieces) =>
        Gen.Shuffle(Enumerable.Range(1, layers - 1).ToArray()).Select(cuts =>
        {
            var bounds = cuts.Take(pieces - 1).Append(0).Append(layers).Order().ToArray();
            return Enumerable.Range(0, pieces).Select(i => new BlockRange(bounds[i], bounds[i + 1])).ToList();
        });

    private static Gen<IReadOnlyList<ScheduledFailure>> FailuresGen(int newTokens) =>
        from count in Gen.Choose(1, Math.Min(4, newTokens))
        from steps in Gen.Shuffle(Enumerable.Range(0, newTokens).ToArray())
        from kinds in Gen.ListOf(Gen.Elements(Enum.GetValues<FaultKind>()), count)
        from indices in Gen.ListOf(Gen.Choose(0, MaxServers - 1), count)
        select (IReadOnlyList<ScheduledFailure>)[.. steps.Take(count).Order().Select((step, i) => new ScheduledFailure(step, kinds[i], indices[i]))];

    /// <summary>Smaller cases that keep the invariants: fewer failures, servers, layers and tokens; earlier steps; chain index 0.</summary>
    public static IEnumerable<FaultCase> Shrink(FaultCase c)
    {
        for (var i = 0; i < c.Failures.Count; i++)
        {
            yield return c with { Failures = [.. c.Failures.Where((_, k) => k != i)] };
        }

        for (var i = 0; i < c.Spans.Count; i++)
        {
            IReadOnlyList<BlockRange> fewer = [.. c.Spans.Where((_, k) => k != i)];
            if (Covered(c.Layers, fewer))
            {
                yield return c with { Spans = fewer };
            }
        }

        if (c.Layers > 2)
        {
            var layers = c.Layers - 1;
            IReadOnlyList<BlockRange> clipped = [.. c.Spans.Where(s => s.Start < layers).Select(s => new BlockRange(s.Start, Math.Min(s.End, layers))).Distinct()];
            if (Covered(layers, clipped))
            {
                yield return c with { Layers = layers, Spans = clipped };
            }
        }

        var lastStep = c.Failures.Count == 0 ? -1 : c.Failures.Max(f => f.Step);
        if (c.NewTokens > Math.Max(1, lastStep + 1))
        {
            yield return c with { NewTokens = Math.Max(1, lastStep + 1) };
        }

        if (c.PromptLength > 1)
        {
            yield return c with { PromptLength = 1 };
        }

        for (var i = 0; i < c.Failures.Count; i++)
        {
            var f = c.Failures[i];
            if (f.ChainIndex > 0)
            {
                yield return c with { Failures = [.. c.Failures.Select((g, k) => k == i ? g with { ChainIndex = 0 } : g)] };
            }

            if (f.Step > 0 && !c.Failures.Any(g => g.Step == f.Step - 1))
            {
                yield return c with { Failures = [.. c.Failures.Select((g, k) => k == i ? g with { Step = f.Step - 1 } : g)] };
            }
        }
    }
}
