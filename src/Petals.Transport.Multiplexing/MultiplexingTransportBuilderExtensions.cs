using Petals.Hosting;
using Petals.Transport.Multiplexing;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Makes a Petals server's or client's transport carry many streams over one connection per peer.</summary>
public static class MultiplexingTransportBuilderExtensions
{
    /// <summary>
    /// Wraps the role's transport (chosen with <c>UseTcpTransport(…)</c> or any <c>UseTransport(…)</c>) so that every
    /// stream to one peer address is a channel of one physical connection, and accepted connections carry the peer's
    /// channels: DHT requests and inference streams reuse one TCP connection and one TLS handshake. Both the servers
    /// and the clients of a swarm must use it. Like every <c>Use</c> decorator, the first registered is outermost:
    /// register it before decorators that should see each logical stream, after those that should see the physical one.
    /// </summary>
    /// <typeparam name="TBuilder">The server or client builder.</typeparam>
    /// <param name="builder">The builder.</param>
    /// <param name="configure">Sets the limits (<see cref="MultiplexingTransportOptions"/>); defaults when null. The clock defaults to the container's <see cref="TimeProvider"/> when one is registered.</param>
    /// <returns>The builder.</returns>
    /// <exception cref="ArgumentOutOfRangeException">When the transport is built: an option is out of range.</exception>
    public static TBuilder UseMultiplexing<TBuilder>(this TBuilder builder, Action<MultiplexingTransportOptions>? configure = null)
        where TBuilder : IPetalsBuilder
    {
        ArgumentNullException.ThrowIfNull(builder);
        return builder.Use((Petals.Transport.ITransport inner, IServiceProvider services) =>
        {
            var options = new MultiplexingTransportOptions();
            if (services.GetService(typeof(TimeProvider)) is TimeProvider time)
            {
                options.TimeProvider = time;
            }

            configure?.Invoke(options);
            return inner.WithMultiplexing(options);
        });
    }
}
