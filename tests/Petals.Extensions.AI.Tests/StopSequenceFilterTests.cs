using FsCheck;
using FsCheck.Fluent;

namespace Petals.Extensions.AI.Tests;

/// <summary>Text stop sequences over streamed pieces: the text ends before the first stop, and nothing of it is ever emitted.</summary>
public sealed class StopSequenceFilterTests
{
    [Fact]
    public void A_stop_split_across_pieces_is_held_back_then_dropped()
    {
        var filter = new StopSequenceFilter(["\nUser:"]);
        Assert.Equal("Hello", filter.Append("Hello"));
        Assert.Equal(" there", filter.Append(" there\nUs"));
        Assert.False(filter.Stopped);
        Assert.Equal(string.Empty, filter.Append("er: more"));
        Assert.True(filter.Stopped);
        Assert.Equal(string.Empty, filter.Append("ignored"));
        Assert.Equal(string.Empty, filter.Flush());
    }

    [Fact]
    public void Held_back_text_that_turns_out_not_to_stop_is_emitted_later_or_at_the_end()
    {
        var filter = new StopSequenceFilter(["END"]);
        Assert.Equal("the ", filter.Append("the E"));
        Assert.Equal("Eagle", filter.Append("agle"));
        Assert.Equal("and ", filter.Append("and EN"));
        Assert.Equal("EN", filter.Flush());
    }

    [Fact]
    public void The_earliest_of_several_stops_wins()
    {
        var filter = new StopSequenceFilter(["cd", "b"]);
        Assert.Equal("a", filter.Append("abcd"));
        Assert.True(filter.Stopped);
    }

    [Fact]
    public void Without_stops_every_piece_passes_at_once()
    {
        var filter = new StopSequenceFilter([]);
        Assert.Equal("ab", filter.Append("ab"));
        Assert.Equal(string.Empty, filter.Flush());
        Assert.False(filter.Stopped);
    }

    [Fact]
    public void Any_split_of_any_text_emits_exactly_the_text_before_the_first_stop_to_appear()
    {
        var letters = Gen.Elements('a', 'b', 'c', ' ');
        var text = letters.ArrayOf().Select(a => new string(a));
        Prop.ForAll(
            text.SelectMany(t => Gen.Choose(0, Math.Max(0, t.Length)).ArrayOf().Select(cuts => (t, cuts))).ToArbitrary(),
            Gen.Elements("ab", "b c", "ca", "aaa", " ").ArrayOf().Where(s => s.Length <= 3).ToArbitrary(),
            (input, stops) =>
            {
                var (full, cuts) = input;
                var filter = new StopSequenceFilter(stops);
                var bounds = cuts.Append(0).Append(full.Length).Distinct().Order().ToArray();
                var expected = Expected(full, bounds, stops, out var stopped);
                var emitted = string.Empty;
                for (var i = 0; i + 1 < bounds.Length; i++)
                {
                    emitted += filter.Append(full[bounds[i]..bounds[i + 1]]);

                    // Never ahead of what is known: emitted text is a prefix of the final answer at every point.
                    Assert.StartsWith(emitted, expected, StringComparison.Ordinal);
                }

                emitted += filter.Flush();
                Assert.Equal(expected, emitted);
                Assert.Equal(stopped, filter.Stopped);
            }).QuickCheckThrowOnFailure();
    }

    /// <summary>
    /// The reference: generation ends at the first piece after which the text holds a stop sequence, cut at the earliest
    /// one it holds then (a longer stop that might have completed later never gets the chance, as in vLLM or OpenAI).
    /// </summary>
    private static string Expected(string full, int[] bounds, string[] stops, out bool stopped)
    {
        foreach (var bound in bounds)
        {
            var text = full[..bound];
            var first = stops.Select(s => text.IndexOf(s, StringComparison.Ordinal)).Where(i => i >= 0).DefaultIfEmpty(-1).Min();
            if (first >= 0)
            {
                stopped = true;
                return text[..first];
            }
        }

        stopped = false;
        return full;
    }
}
