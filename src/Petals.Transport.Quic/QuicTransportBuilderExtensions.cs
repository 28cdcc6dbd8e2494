using Petals.Hosting;
using Petals.Transport.Quic;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Chooses the QUIC transport for a Petals server (<c>AddPetalsServer</c>) or client (<c>AddPetalsClient</c>).</summary>
public static class QuicTransportBuilderExtensions
{
    /// <summary>
    /// Makes the server listen, or the client connect, over QUIC (<c>quic://host:port</c>). Where QUIC is unsupported (no
    /// libmsquic), the host fails to start with <see cref="QuicTransport.UnsupportedMessage"/> among the option failures.
    /// </summary>
    /// <typeparam name="TBuilder">The server or client builder.</typeparam>
    /// <param name="builder">The builder.</param>
    /// <param name="configure">Sets the transport's options (certificate, timeouts); defaults when null.</param>
    /// <returns>The builder.</returns>
    public static TBuilder UseQuicTransport<TBuilder>(this TBuilder builder, Action<QuicTransportOptions>? configure = null)
        where TBuilder : IPetalsBuilder
    {
        ArgumentNullException.ThrowIfNull(builder);
        return builder.AddStartupCheck(_ => IsSupported ? null : UnsupportedMessage).UseTransport(_ => Create(configure));
    }

    private static bool IsSupported => (OperatingSystem.IsLinux() || OperatingSystem.IsWindows() || OperatingSystem.IsMacOS()) && QuicTransport.IsSupported;

    private static string UnsupportedMessage => OperatingSystem.IsLinux() || OperatingSystem.IsWindows() || OperatingSystem.IsMacOS()
        ? QuicTransport.UnsupportedMessage
        : "QUIC is not supported on this operating system (System.Net.Quic runs on Linux, Windows and macOS). Use the TCP transport instead.";

    private static QuicTransport Create(Action<QuicTransportOptions>? configure)
    {
        if (!(OperatingSystem.IsLinux() || OperatingSystem.IsWindows() || OperatingSystem.IsMacOS()) || !QuicTransport.IsSupported)
        {
            throw new PlatformNotSupportedException(UnsupportedMessage);
        }

        var options = new QuicTransportOptions();
        configure?.Invoke(options);
        return new QuicTransport(options);
    }
}
