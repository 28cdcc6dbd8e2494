using Petals.Hosting;
using Petals.Testing.Transport;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Puts a Petals server or client on an in-memory transport (tests, simulations): share one instance between them.</summary>
public static class MemoryTransportBuilderExtensions
{
    /// <summary>Makes the server listen on <paramref name="transport"/> (addresses <c>mem://name</c>).</summary>
    /// <param name="builder">The server builder.</param>
    /// <param name="transport">The in-memory network, shared with the clients; not disposed by the container.</param>
    /// <returns>The builder.</returns>
    public static IPetalsServerBuilder UseMemoryTransport(this IPetalsServerBuilder builder, MemoryTransport transport)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(transport);
        return builder.UseTransport(transport);
    }

    /// <summary>Makes the client connect through <paramref name="transport"/> (addresses <c>mem://name</c>).</summary>
    /// <param name="builder">The client builder.</param>
    /// <param name="transport">The in-memory network, shared with the servers; not disposed by the container.</param>
    /// <returns>The builder.</returns>
    public static IPetalsClientBuilder UseMemoryTransport(this IPetalsClientBuilder builder, MemoryTransport transport)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(transport);
        return builder.UseTransport(transport);
    }
}
