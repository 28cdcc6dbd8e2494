using System.Globalization;

namespace Petals.Protocol;

/// <summary>
/// The bytes that chunked messages being reassembled may hold at once over every connection of a server
/// (<c>BlockServerOptions.MaxReassemblyBytes</c>). A <see cref="ProtocolReader"/> charges its reassembly buffer as it
/// grows and gives it back when the message is consumed or the connection ends. Thread-safe.
/// </summary>
internal sealed class ReassemblyBudget
{
    private long _used;
    private long _peak;
    private long _refusals;

    /// <summary>Creates a budget of <paramref name="capacity"/> bytes.</summary>
    /// <param name="capacity">The most bytes held at once; positive.</param>
    public ReassemblyBudget(long capacity)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(capacity);
        Capacity = capacity;
    }

    /// <summary>The most bytes held at once.</summary>
    public long Capacity { get; }

    /// <summary>Bytes held now.</summary>
    public long Used => Interlocked.Read(ref _used);

    /// <summary>The most bytes held at once so far.</summary>
    public long Peak => Interlocked.Read(ref _peak);

    /// <summary>Messages refused because they did not fit.</summary>
    public long Refusals => Interlocked.Read(ref _refusals);

    /// <summary>Charges <paramref name="bytes"/>; false (and a refusal counted) when they do not fit.</summary>
    public bool TryReserve(long bytes)
    {
        var used = Interlocked.Read(ref _used);
        while (true)
        {
            if (used + bytes > Capacity)
            {
                Interlocked.Increment(ref _refusals);
                return false;
            }

            var seen = Interlocked.CompareExchange(ref _used, used + bytes, used);
            if (seen == used)
            {
                var total = used + bytes;
                var peak = Interlocked.Read(ref _peak);
                while (total > peak && Interlocked.CompareExchange(ref _peak, total, peak) != peak)
                {
                    peak = Interlocked.Read(ref _peak);
                }

                return true;
            }

            used = seen;
        }
    }

    /// <summary>Gives back what <see cref="TryReserve"/> charged.</summary>
    public void Release(long bytes) => Interlocked.Add(ref _used, -bytes);

    /// <summary>The error for a message that does not fit (retryable: <see cref="ProtocolErrorCode.Busy"/>).</summary>
    public ProtocolException Refused(FrameType type, uint streamId, long declared, long needed) => new(
        ProtocolErrorCode.Busy,
        string.Create(CultureInfo.InvariantCulture, $"The chunked {type} message on stream {streamId} ({declared} bytes) needs {needed} more bytes of reassembly buffer, but this server already holds {Used} bytes of messages being received over all connections (limit {Capacity}); the message was discarded: retry later or elsewhere."))
    {
        StreamId = streamId,
    };
}
