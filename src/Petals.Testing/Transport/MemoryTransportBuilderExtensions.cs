using Petals.Hosting;
using Petals.Testing.Transport;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Puts a Petals server or client on an in-memory transport (tests, simulations): share one instance between them.</summary>
public static class MemoryTransportBuilderExtensions
{
    /// <summary>Makes the server listen, or the client connect, on <paramref name="transport"/>'s in-memory network (not disposed by the container).</summary>
    /// <typeparam name="TBuilder">The server or client builder.</typeparam>
    /// <param name="builder">The builder.</param>
    /// <param name="transport">The network; servers and clients of one test share it.</param>
    /// <returns>The builder.</returns>
    public static TBuilder UseMemoryTransport<TBuilder>(this TBuilder builder, MemoryTransport transport)
        where TBuilder : IPetalsBuilder
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(transport);
        return builder.UseTransport(transport);
    }
}
