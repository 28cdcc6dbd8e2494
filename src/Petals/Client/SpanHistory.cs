using System.Buffers;

namespace Petals.Client;

/// <summary>
/// The inputs a session sent (or will send) to one span of its chain, <c>[batch, positions, hidden]</c>: what a
/// replacement server is replayed from when the span's server fails (Algorithm 1 of the Petals paper).
/// </summary>
/// <remarks>
/// Positions are only ever appended (but for <see cref="Truncate"/> of an answer a spot check rejected before any
/// server used it): once held, a position's inputs never change, so a span that kept its server keeps
/// exactly the inputs its cache was built from, whatever a replay upstream recomputes. The buffer grows by doubling
/// (at least 16 positions) and never beyond the session's maximum length; buffers come from and go back to an array
/// pool (on growth and on <see cref="Dispose"/>; a remote sequence gives its sessions one of its own, shared across
/// threads), so a client that runs one generation after another allocates no history in steady state. Not
/// thread-safe: one session step at a time.
/// </remarks>
internal sealed class SpanHistory : IDisposable
{
    private readonly int _batch;
    private readonly int _width;
    private readonly int _maxLength;
    private readonly ArrayPool<float> _pool;
    private float[] _buffer = [];

    /// <summary>Creates an empty history.</summary>
    /// <param name="batch">The session's batch size.</param>
    /// <param name="width">The hidden size.</param>
    /// <param name="maxLength">The session's maximum length: the most positions ever held.</param>
    /// <param name="pool">Where buffers come from and go back to; <see cref="ArrayPool{T}.Shared"/> when null.</param>
    public SpanHistory(int batch, int width, int maxLength, ArrayPool<float>? pool = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(batch, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(width, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxLength, 1);
        _batch = batch;
        _width = width;
        _maxLength = maxLength;
        _pool = pool ?? ArrayPool<float>.Shared;
    }

    /// <summary>The positions held (0 to <see cref="Positions"/> − 1).</summary>
    public int Positions { get; private set; }

    /// <summary>The positions the buffer has room for now.</summary>
    public int Capacity { get; private set; }

    /// <summary>
    /// Appends the positions of <paramref name="source"/> (laid out <c>[batch, sourcePositions, width]</c>) that stand for
    /// positions <paramref name="at"/> to <paramref name="at"/> + <paramref name="count"/> − 1 and are not held yet.
    /// </summary>
    /// <param name="source">The values.</param>
    /// <param name="sourcePositions">The positions per row in <paramref name="source"/>.</param>
    /// <param name="sourceAt">Where position <paramref name="at"/> is in each row of <paramref name="source"/>.</param>
    /// <param name="at">The first position <paramref name="source"/> stands for.</param>
    /// <param name="count">How many positions it stands for.</param>
    /// <exception cref="ArgumentOutOfRangeException">
    /// <paramref name="at"/> or <paramref name="count"/> is negative, or the positions would leave a gap after
    /// <see cref="Positions"/> or go past the maximum length.
    /// </exception>
    public void Append(ReadOnlySpan<float> source, int sourcePositions, int sourceAt, int at, int count)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(at);
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(at, Positions);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(at + count, _maxLength);
        var from = Math.Max(at, Positions);
        var end = at + count;
        if (from >= end)
        {
            return;
        }

        EnsureCapacity(end);
        Copy(source, sourcePositions, sourceAt + (from - at), _buffer, Capacity, from, end - from, _batch, _width);
        Positions = end;
    }

    /// <summary>Copies positions <paramref name="at"/> to <paramref name="at"/> + <paramref name="count"/> − 1 into <paramref name="destination"/> (<c>[batch, count, width]</c>).</summary>
    /// <param name="at">The first position.</param>
    /// <param name="count">How many.</param>
    /// <param name="destination">Where to, at least <c>batch × count × width</c> values.</param>
    /// <exception cref="ArgumentOutOfRangeException">An argument is negative, or the positions are not all held.</exception>
    public void Read(int at, int count, Span<float> destination)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(at);
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(at + count, Positions);
        Copy(_buffer, Capacity, at, destination, count, 0, count, _batch, _width);
    }

    /// <summary>
    /// The room for positions <paramref name="at"/> to <paramref name="at"/> + <paramref name="count"/> − 1 of a batch of
    /// one, where <paramref name="at"/> is <see cref="Positions"/>: an answer can be decoded there directly, then
    /// <see cref="Commit"/>ted. The positions are not held until then.
    /// </summary>
    /// <exception cref="InvalidOperationException">The batch is not 1.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="at"/> is not <see cref="Positions"/>, or the positions go past the maximum length.</exception>
    public Memory<float> Slot(int at, int count)
    {
        if (_batch != 1)
        {
            throw new InvalidOperationException("Only the history of a batch of one holds consecutive positions contiguously.");
        }

        ArgumentOutOfRangeException.ThrowIfNotEqual(at, Positions);
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(at + count, _maxLength);
        EnsureCapacity(at + count);
        return _buffer.AsMemory(at * _width, count * _width);
    }

    /// <summary>Holds the positions of a <see cref="Slot"/> up to <paramref name="end"/>, once the values are in.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="end"/> is below <see cref="Positions"/> or past the room.</exception>
    public void Commit(int end)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(end, Positions);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(end, Capacity);
        Positions = end;
    }

    /// <summary>
    /// The held positions <paramref name="at"/> to <paramref name="at"/> + <paramref name="count"/> − 1 of a batch of one,
    /// without a copy (valid until the next append).
    /// </summary>
    /// <exception cref="InvalidOperationException">The batch is not 1.</exception>
    /// <exception cref="ArgumentOutOfRangeException">The positions are not all held.</exception>
    public ReadOnlyMemory<float> View(int at, int count)
    {
        if (_batch != 1)
        {
            throw new InvalidOperationException("Only the history of a batch of one holds consecutive positions contiguously.");
        }

        ArgumentOutOfRangeException.ThrowIfNegative(at);
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(at + count, Positions);
        return _buffer.AsMemory(at * _width, count * _width);
    }

    /// <summary>
    /// Forgets the positions from <paramref name="positions"/> on: positions that no server's cache was built from yet (a
    /// span's answer that a spot check rejected, before the next span ran it), or the whole session rolled back
    /// (<see cref="RemoteSession.Truncate"/>, whose servers truncate their caches at the next step).
    /// </summary>
    /// <param name="positions">The positions to keep.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="positions"/> is negative or above <see cref="Positions"/>.</exception>
    public void Truncate(int positions)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(positions);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(positions, Positions);
        Positions = positions;
    }

    /// <summary>Returns the buffer to the pool; the history is empty afterwards (and may grow again).</summary>
    public void Dispose()
    {
        var buffer = _buffer;
        (_buffer, Capacity, Positions) = ([], 0, 0);
        if (buffer.Length > 0)
        {
            _pool.Return(buffer);
        }
    }

    /// <summary>Takes over <paramref name="other"/>'s positions (a replacement starting from the failed span's inputs); <paramref name="other"/> is left empty.</summary>
    /// <param name="other">A history of the same session.</param>
    /// <exception cref="ArgumentException"><paramref name="other"/> draws from another pool.</exception>
    public void TakeFrom(SpanHistory other)
    {
        ArgumentNullException.ThrowIfNull(other);
        if (!ReferenceEquals(other._pool, _pool))
        {
            throw new ArgumentException("The histories of one session share one pool.", nameof(other));
        }

        Dispose();
        (_buffer, Capacity, Positions) = (other._buffer, other.Capacity, other.Positions);
        (other._buffer, other.Capacity, other.Positions) = ([], 0, 0);
    }

    /// <summary>
    /// Copies <paramref name="count"/> positions of every row from <paramref name="source"/> (<c>[batch, sourcePositions, width]</c>)
    /// at <paramref name="sourceAt"/> to <paramref name="destination"/> (<c>[batch, destinationPositions, width]</c>) at <paramref name="destinationAt"/>.
    /// </summary>
    internal static void Copy(ReadOnlySpan<float> source, int sourcePositions, int sourceAt, Span<float> destination, int destinationPositions, int destinationAt, int count, int batch, int width)
    {
        for (var b = 0; b < batch; b++)
        {
            source.Slice(((b * sourcePositions) + sourceAt) * width, count * width)
                .CopyTo(destination[(((b * destinationPositions) + destinationAt) * width)..]);
        }
    }

    private void EnsureCapacity(int positions)
    {
        if (positions <= Capacity)
        {
            return;
        }

        var capacity = Math.Min(_maxLength, Math.Max(positions, Math.Max(Capacity * 2, 16)));
        var grown = _pool.Rent(checked(_batch * capacity * _width));
        Copy(_buffer, Capacity, 0, grown, capacity, 0, Positions, _batch, _width);
        var old = _buffer;
        _buffer = grown;
        Capacity = capacity;
        if (old.Length > 0)
        {
            _pool.Return(old);
        }
    }
}
