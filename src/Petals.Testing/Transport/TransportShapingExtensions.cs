using Petals.Transport;

namespace Petals.Testing.Transport;

/// <summary>Wraps any transport in a decorator that imposes latency, bandwidth limits, jitter and injected faults.</summary>
public static class TransportShapingExtensions
{
    /// <summary>Returns a transport that shapes every stream it opens or accepts as <paramref name="options"/> says.</summary>
    /// <param name="transport">The transport to shape (in-memory, TCP, ...).</param>
    /// <param name="options">The conditions and faults; kept by reference, so later changes to faults apply to later operations.</param>
    /// <param name="timeProvider">The clock for delays and timed faults; default <see cref="TimeProvider.System"/>.</param>
    /// <returns>The shaped transport; <see cref="ITransport.GetService"/> returns it, the options and the inner transport.</returns>
    /// <exception cref="ArgumentOutOfRangeException">An option is out of range.</exception>
    public static ShapingTransport WithShaping(this ITransport transport, NetworkShapingOptions options, TimeProvider? timeProvider = null)
    {
        ArgumentNullException.ThrowIfNull(transport);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        return new ShapingTransport(transport, options, timeProvider ?? TimeProvider.System);
    }
}
