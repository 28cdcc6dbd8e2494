using Petals.Hosting;
using Petals.Transport.Tcp;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Chooses the TCP transport for a Petals server (<c>AddPetalsServer</c>) or client (<c>AddPetalsClient</c>).</summary>
public static class TcpTransportBuilderExtensions
{
    /// <summary>
    /// Makes the server listen, or the client connect, over TCP (<c>tcp://host:port</c>, or <c>tls://…</c> with an
    /// identity). The transport is created when first needed (the server's start, the client's first connect).
    /// </summary>
    /// <typeparam name="TBuilder">The server or client builder.</typeparam>
    /// <param name="builder">The builder.</param>
    /// <param name="configure">Sets the transport's options (timeouts, TLS identity, buffers); defaults when null.</param>
    /// <returns>The builder.</returns>
    public static TBuilder UseTcpTransport<TBuilder>(this TBuilder builder, Action<TcpTransportOptions>? configure = null)
        where TBuilder : IPetalsBuilder
    {
        ArgumentNullException.ThrowIfNull(builder);
        return builder.UseTransport(services => Create(configure, services.GetService(typeof(Microsoft.Extensions.Logging.ILoggerFactory)) as Microsoft.Extensions.Logging.ILoggerFactory));
    }

    private static TcpTransport Create(Action<TcpTransportOptions>? configure, Microsoft.Extensions.Logging.ILoggerFactory? loggerFactory)
    {
        var options = new TcpTransportOptions();
        configure?.Invoke(options);
        return new TcpTransport(options, loggerFactory);
    }
}
