using Petals.Client;

namespace Petals.Tests.Client;

/// <summary>The per-span input history: <c>[batch, positions, width]</c> layout, append-only positions, bounded growth.</summary>
public sealed class SpanHistoryTests
{
    [Fact]
    public void Positions_appended_for_a_batch_read_back_in_the_same_layout_whole_and_in_part()
    {
        var history = new SpanHistory(batch: 3, width: 2, maxLength: 20);
        history.Append(Values(3, 5, 2, seed: 1), sourcePositions: 5, sourceAt: 0, at: 0, count: 5);
        Assert.Equal(5, history.Positions);

        var all = new float[3 * 5 * 2];
        history.Read(0, 5, all);
        Assert.Equal(Values(3, 5, 2, seed: 1), all);

        // Positions 1..3 of every row, packed as [batch, 3, width].
        var part = new float[3 * 3 * 2];
        history.Read(1, 3, part);
        Assert.Equal(Slice(Values(3, 5, 2, seed: 1), 3, 5, 2, at: 1, count: 3), part);
    }

    [Fact]
    public void An_append_takes_its_positions_from_where_they_stand_in_each_source_row()
    {
        // The source holds 6 positions per row; positions 2..4 of each row stand for history positions 0..2.
        var history = new SpanHistory(batch: 2, width: 3, maxLength: 8);
        var source = Values(2, 6, 3, seed: 2);
        history.Append(source, sourcePositions: 6, sourceAt: 2, at: 0, count: 3);

        var read = new float[2 * 3 * 3];
        history.Read(0, 3, read);
        Assert.Equal(Slice(source, 2, 6, 3, at: 2, count: 3), read);
    }

    [Fact]
    public void Held_positions_keep_their_first_values_and_a_partial_overlap_appends_only_the_new_tail()
    {
        var history = new SpanHistory(batch: 2, width: 2, maxLength: 16);
        var first = Values(2, 5, 2, seed: 3);
        history.Append(first, 5, 0, at: 0, count: 5);

        // Positions 2..4 again, with other values: nothing changes.
        history.Append(Values(2, 3, 2, seed: 4), 3, 0, at: 2, count: 3);
        Assert.Equal(5, history.Positions);
        Assert.Equal(first, ReadAll(history, 2, 2));

        // Positions 3..6: 3 and 4 are held, only 5 and 6 are taken (from source positions 2 and 3).
        var overlap = Values(2, 4, 2, seed: 5);
        history.Append(overlap, 4, 0, at: 3, count: 4);
        Assert.Equal(7, history.Positions);
        var expected = new float[2 * 7 * 2];
        Place(first, 5, 0, expected, 7, 0, 5, 2, 2);
        Place(overlap, 4, 2, expected, 7, 5, 2, 2, 2);
        Assert.Equal(expected, ReadAll(history, 2, 2));
    }

    [Fact]
    public void An_empty_append_at_the_end_changes_nothing()
    {
        var history = new SpanHistory(batch: 1, width: 1, maxLength: 4);
        history.Append([], 0, 0, at: 0, count: 0);
        Assert.Equal((0, 0), (history.Positions, history.Capacity));
    }

    [Fact]
    public void The_buffer_starts_at_16_positions_doubles_and_never_grows_past_the_maximum_length_keeping_every_value()
    {
        var history = new SpanHistory(batch: 2, width: 3, maxLength: 70);
        Assert.Equal(0, history.Capacity);
        var values = Values(2, 70, 3, seed: 6);
        var expectedCapacity = new Dictionary<int, int> { [1] = 16, [16] = 16, [17] = 32, [32] = 32, [33] = 64, [64] = 64, [65] = 70, [70] = 70 };
        for (var p = 0; p < 70; p++)
        {
            history.Append(values, 70, p, at: p, count: 1);
            if (expectedCapacity.TryGetValue(p + 1, out var capacity))
            {
                Assert.Equal(capacity, history.Capacity);
            }

            Assert.Equal(Slice(values, 2, 70, 3, at: 0, count: p + 1), ReadAll(history, 2, 3));
        }
    }

    [Fact]
    public void A_first_append_longer_than_16_positions_gets_exactly_its_room_and_the_next_one_doubles_it()
    {
        var history = new SpanHistory(batch: 1, width: 2, maxLength: 100);
        var values = Values(1, 22, 2, seed: 7);
        history.Append(values, 22, 0, at: 0, count: 21);
        Assert.Equal(21, history.Capacity);
        history.Append(values, 22, 21, at: 21, count: 1);
        Assert.Equal(42, history.Capacity);
        Assert.Equal(values, ReadAll(history, 1, 2));
    }

    [Fact]
    public void A_maximum_length_under_16_caps_the_first_buffer()
    {
        var history = new SpanHistory(batch: 2, width: 1, maxLength: 5);
        history.Append(Values(2, 1, 1, seed: 8), 1, 0, at: 0, count: 1);
        Assert.Equal(5, history.Capacity);
    }

    [Theory]
    [InlineData(16, 4, 2, "at", 4)] // a gap: position 3 would be missing
    [InlineData(4, 2, 3, "at + count", 5)] // positions 4 past the maximum length of 4
    [InlineData(16, -1, 1, "at", -1)]
    [InlineData(16, 0, -1, "count", -1)]
    public void An_append_that_leaves_a_gap_or_goes_past_the_maximum_length_is_refused_and_appends_nothing(int maxLength, int at, int count, string parameter, int actual)
    {
        var history = new SpanHistory(batch: 1, width: 2, maxLength);
        history.Append(Values(1, 3, 2, seed: 9), 3, 0, at: 0, count: 3);
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => history.Append(Values(1, Math.Max(count, 1), 2, seed: 10), Math.Max(count, 1), 0, at, count));
        Assert.Equal((parameter, (object?)actual), (error.ParamName, error.ActualValue));
        Assert.Equal(3, history.Positions);
        Assert.Equal(Values(1, 3, 2, seed: 9), ReadAll(history, 1, 2));
    }

    [Fact]
    public void Reading_positions_that_are_not_held_is_refused()
    {
        var history = new SpanHistory(batch: 1, width: 2, maxLength: 16);
        history.Append(Values(1, 3, 2, seed: 13), 3, 0, at: 0, count: 3);
        var destination = new float[8];
        var past = Assert.Throws<ArgumentOutOfRangeException>(() => history.Read(2, 2, destination));
        Assert.Equal(("at + count", (object?)4), (past.ParamName, past.ActualValue));
        var negative = Assert.Throws<ArgumentOutOfRangeException>(() => history.Read(-1, 1, destination));
        Assert.Equal("at", negative.ParamName);
        Assert.Equal("count", Assert.Throws<ArgumentOutOfRangeException>(() => history.Read(0, -1, destination)).ParamName);
        Assert.Equal("at + count", Assert.Throws<ArgumentOutOfRangeException>(() => new SpanHistory(1, 1, 4).Read(0, 1, destination)).ParamName);
    }

    [Theory]
    [InlineData(0, 1, 1, "batch")]
    [InlineData(1, 0, 1, "width")]
    [InlineData(1, 1, 0, "maxLength")]
    public void A_history_without_room_is_refused_naming_the_argument(int batch, int width, int maxLength, string parameter)
    {
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => new SpanHistory(batch, width, maxLength));
        Assert.Equal(parameter, error.ParamName);
    }

    [Fact]
    public void Take_from_moves_every_position_and_leaves_the_other_history_empty_and_independent()
    {
        var failed = new SpanHistory(batch: 2, width: 2, maxLength: 32);
        var values = Values(2, 5, 2, seed: 14);
        failed.Append(values, 5, 0, at: 0, count: 5);
        var replacement = new SpanHistory(batch: 2, width: 2, maxLength: 32);

        replacement.TakeFrom(failed);
        Assert.Equal((5, 16), (replacement.Positions, replacement.Capacity));
        Assert.Equal(values, ReadAll(replacement, 2, 2));
        Assert.Equal((0, 0), (failed.Positions, failed.Capacity));
        Assert.Throws<ArgumentOutOfRangeException>(() => failed.Read(0, 1, new float[4]));

        // The emptied history starts over without touching the buffer it gave away.
        failed.Append(Values(2, 5, 2, seed: 15), 5, 0, at: 0, count: 5);
        Assert.Equal(values, ReadAll(replacement, 2, 2));
        Assert.Equal("other", Assert.Throws<ArgumentNullException>(() => replacement.TakeFrom(null!)).ParamName);
    }

    [Fact]
    public void Copy_moves_each_rows_positions_between_layouts_of_different_lengths_and_leaves_the_rest()
    {
        // [3, 4, 2] positions 1..2 to [3, 6, 2] positions 3..4.
        var source = Values(3, 4, 2, seed: 16);
        var destination = new float[3 * 6 * 2];
        Array.Fill(destination, -1f);
        SpanHistory.Copy(source, 4, 1, destination, 6, 3, 2, 3, 2);

        var expected = new float[destination.Length];
        Array.Fill(expected, -1f);
        Place(source, 4, 1, expected, 6, 3, 2, 3, 2);
        Assert.Equal(expected, destination);
    }

    [Fact]
    public void A_batch_of_one_decodes_into_a_slot_that_holds_its_positions_only_once_committed()
    {
        var history = new SpanHistory(batch: 1, width: 2, maxLength: 40);
        history.Append(Values(1, 3, 2, seed: 21), 3, 0, at: 0, count: 3);
        var slot = history.Slot(3, 20);
        Assert.Equal(40, slot.Length);
        Assert.Equal(3, history.Positions);
        Assert.True(history.Capacity >= 23);
        Values(1, 20, 2, seed: 22).CopyTo(slot);
        history.Commit(23);
        Assert.Equal(23, history.Positions);
        Assert.Equal(Values(1, 3, 2, seed: 21).Concat(Values(1, 20, 2, seed: 22)), ReadAll(history, 1, 2));
        Assert.Equal(Values(1, 20, 2, seed: 22)[2..6], history.View(4, 2).ToArray());
    }

    [Fact]
    public void Slots_and_views_refuse_what_they_cannot_hold_precisely()
    {
        var history = new SpanHistory(batch: 1, width: 2, maxLength: 8);
        history.Append(Values(1, 2, 2, seed: 23), 2, 0, at: 0, count: 2);
        Assert.Equal("at", Assert.Throws<ArgumentOutOfRangeException>(() => history.Slot(1, 1)).ParamName);
        Assert.Equal("at + count", Assert.Throws<ArgumentOutOfRangeException>(() => history.Slot(2, 7)).ParamName);
        Assert.Equal("at + count", Assert.Throws<ArgumentOutOfRangeException>(() => history.View(1, 2)).ParamName);
        Assert.Equal("end", Assert.Throws<ArgumentOutOfRangeException>(() => history.Commit(1)).ParamName);
        Assert.Equal("end", Assert.Throws<ArgumentOutOfRangeException>(() => history.Commit(history.Capacity + 1)).ParamName);
        var batched = new SpanHistory(batch: 2, width: 2, maxLength: 8);
        Assert.Throws<InvalidOperationException>(() => batched.Slot(0, 1));
        Assert.Throws<InvalidOperationException>(() => batched.View(0, 0));
    }

    [Fact]
    public void Disposing_empties_the_history_and_it_can_grow_again()
    {
        var history = new SpanHistory(batch: 2, width: 3, maxLength: 64);
        history.Append(Values(2, 5, 3, seed: 24), 5, 0, at: 0, count: 5);
        history.Dispose();
        history.Dispose();
        Assert.Equal((0, 0), (history.Positions, history.Capacity));
        history.Append(Values(2, 4, 3, seed: 25), 4, 0, at: 0, count: 4);
        Assert.Equal(Values(2, 4, 3, seed: 25), ReadAll(history, 2, 3));
    }

    [Fact]
    public void Random_appends_and_reads_match_a_dense_reference_array()
    {
        var random = new Random(20240611);
        for (var trial = 0; trial < 200; trial++)
        {
            var (batch, width, maxLength) = (random.Next(1, 4), random.Next(1, 5), random.Next(1, 70));
            var history = new SpanHistory(batch, width, maxLength);
            var reference = new float[batch * maxLength * width];
            var held = 0;
            for (var op = 0; op < 30; op++)
            {
                var where = $"trial {trial} op {op} (batch {batch}, width {width}, max {maxLength}, held {held})";
                var at = random.Next(0, held + 2); // one past the end is a gap
                var count = random.Next(0, Math.Min(24, maxLength + 2 - at));
                var sourceAt = random.Next(0, 3);
                var sourcePositions = sourceAt + count + random.Next(0, 3);
                var source = new float[batch * sourcePositions * width];
                for (var i = 0; i < source.Length; i++)
                {
                    source[i] = random.Next(-1000, 1000);
                }

                var capacity = history.Capacity;
                if (at > held || at + count > maxLength)
                {
                    Assert.Throws<ArgumentOutOfRangeException>(() => history.Append(source, sourcePositions, sourceAt, at, count));
                }
                else
                {
                    history.Append(source, sourcePositions, sourceAt, at, count);
                    var from = Math.Max(at, held);
                    if (at + count > held)
                    {
                        Place(source, sourcePositions, sourceAt + (from - at), reference, maxLength, from, at + count - from, batch, width);
                        held = at + count;
                    }
                }

                Assert.True(held == history.Positions, $"{where}: {history.Positions} positions held");
                var grownTo = held > capacity ? Math.Min(maxLength, Math.Max(held, Math.Max(capacity * 2, 16))) : capacity;
                Assert.True(grownTo == history.Capacity, $"{where}: capacity {history.Capacity}, expected {grownTo}");

                var readAt = random.Next(0, held + 1);
                var readCount = random.Next(0, held - readAt + 1);
                var read = new float[batch * readCount * width];
                history.Read(readAt, readCount, read);
                var expected = Slice(reference, batch, maxLength, width, readAt, readCount);
                Assert.True(expected.AsSpan().SequenceEqual(read), $"{where}: positions {readAt}..{readAt + readCount - 1} differ");
            }
        }
    }

    /// <summary>Distinct values for <c>[batch, positions, width]</c>: every element is its own number, so a misplaced copy shows.</summary>
    private static float[] Values(int batch, int positions, int width, int seed)
    {
        var values = new float[batch * positions * width];
        for (var i = 0; i < values.Length; i++)
        {
            values[i] = (seed * 10_000) + i;
        }

        return values;
    }

    /// <summary>Positions <paramref name="at"/>.. of every row of <paramref name="source"/>, packed as <c>[batch, count, width]</c>.</summary>
    private static float[] Slice(float[] source, int batch, int positions, int width, int at, int count)
    {
        var slice = new float[batch * count * width];
        Place(source, positions, at, slice, count, 0, count, batch, width);
        return slice;
    }

    /// <summary>The reference copy, element by element (independent of <see cref="SpanHistory.Copy"/>).</summary>
    private static void Place(float[] source, int sourcePositions, int sourceAt, float[] destination, int destinationPositions, int destinationAt, int count, int batch, int width)
    {
        for (var b = 0; b < batch; b++)
        {
            for (var p = 0; p < count; p++)
            {
                for (var w = 0; w < width; w++)
                {
                    destination[(((b * destinationPositions) + destinationAt + p) * width) + w] = source[(((b * sourcePositions) + sourceAt + p) * width) + w];
                }
            }
        }
    }

    private static float[] ReadAll(SpanHistory history, int batch, int width)
    {
        var all = new float[batch * history.Positions * width];
        history.Read(0, history.Positions, all);
        return all;
    }
}
