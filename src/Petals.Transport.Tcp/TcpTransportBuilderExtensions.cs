using Petals.Hosting;
using Petals.Transport.Tcp;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Chooses the TCP transport for a Petals server (<c>AddPetalsServer</c>) or client (<c>AddPetalsClient</c>).</summary>
public static class TcpTransportBuilderExtensions
{
    /// <summary>Makes the server listen over TCP (<c>tcp://host:port</c>, or <c>tls://…</c> with an identity). The transport is created when the server starts.</summary>
    /// <param name="builder">The server builder.</param>
    /// <param name="configure">Sets the transport's options (timeouts, TLS identity, buffers); defaults when null.</param>
    /// <returns>The builder.</returns>
    public static IPetalsServerBuilder UseTcpTransport(this IPetalsServerBuilder builder, Action<TcpTransportOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        return builder.UseTransport(_ => Create(configure));
    }

    /// <summary>Makes the client connect over TCP. The transport is created on the first connect.</summary>
    /// <param name="builder">The client builder.</param>
    /// <param name="configure">Sets the transport's options (timeouts, TLS identity, buffers); defaults when null.</param>
    /// <returns>The builder.</returns>
    public static IPetalsClientBuilder UseTcpTransport(this IPetalsClientBuilder builder, Action<TcpTransportOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        return builder.UseTransport(_ => Create(configure));
    }

    private static TcpTransport Create(Action<TcpTransportOptions>? configure)
    {
        var options = new TcpTransportOptions();
        configure?.Invoke(options);
        return new TcpTransport(options);
    }
}
