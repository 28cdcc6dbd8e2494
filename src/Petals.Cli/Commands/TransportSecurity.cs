using System.CommandLine;
using Petals.Discovery;
using Petals.Transport;
using Petals.Transport.Multiplexing;
using Petals.Transport.Tcp;

namespace Petals.Cli.Commands;

/// <summary>
/// TLS by default for every command that talks to peers: listeners present a certificate made from the peer's one
/// P-256 key (the DHT identity, <c>--identity</c>), so its TLS id and DHT node id are the same hash; clients pin
/// addresses that carry an id and accept any key, printing it, where an address has none (trust on first use).
/// <c>--insecure</c> falls back to plain TCP, with a warning on stderr.
/// </summary>
internal static class TransportSecurity
{
    /// <summary>The line <c>--insecure</c> prints on stderr at start.</summary>
    public const string InsecureWarning = "WARNING: --insecure: traffic is plain text and peer ids are not verified";

    public static Option<bool> Insecure() =>
        new("--insecure")
        {
            Description = "Plain TCP instead of TLS: no encryption, and peer ids are self-claimed strings (tests, trusted networks only). Default: TLS bound to each peer's key.",
        };

    /// <summary>The scheme of addresses this side listens on and of bare <c>host:port</c> addresses given to it.</summary>
    public static Option<bool> NoMultiplex() =>
        new("--no-multiplex")
        {
            Description = "One TCP/TLS connection per stream instead of many streams over one connection per peer pair. Every peer of a swarm must agree: use it only with peers that do not multiplex (e.g. raw-protocol test clients). Default: multiplexed.",
        };

    public static string Scheme(bool insecure) => insecure ? TcpTransport.TcpScheme : TcpTransport.TlsScheme;

    /// <summary>Prints <see cref="InsecureWarning"/> when <paramref name="insecure"/>.</summary>
    public static void Warn(CliContext context, bool insecure)
    {
        if (insecure)
        {
            context.Error.WriteLine(InsecureWarning);
        }
    }

    /// <summary>
    /// The TLS identity of <paramref name="key"/> (the same key, so the TLS id's first 40 digits are its DHT node id), or
    /// null for <c>--insecure</c>. The caller disposes it.
    /// </summary>
    public static TlsPeerIdentity? TlsIdentity(PeerIdentity key, bool insecure) =>
        insecure ? null : TlsPeerIdentity.FromPkcs8(key.ExportPkcs8());

    /// <summary>
    /// A TCP transport that listens with <paramref name="identity"/> (null: plain TCP or connect only) and connects to
    /// <c>tcp://</c>, pinned <c>tls://id@</c> and, trusting on first use, <c>tls://host:port</c> addresses.
    /// </summary>
    public static ITransport Transport(TlsPeerIdentity? identity = null, bool multiplex = true)
    {
        var tcp = new TcpTransport(new TcpTransportOptions { Identity = identity, AllowUnpinnedTls = true });
        return multiplex ? tcp.WithMultiplexing() : tcp;
    }

    /// <summary>
    /// Parses one address of a comma-separated option: bare <c>host:port</c> is TLS, or plain TCP with
    /// <paramref name="insecure"/>; <c>tls://</c> is taken as given, <c>tcp://</c> only with <paramref name="insecure"/>.
    /// </summary>
    /// <returns>The address, or null when the text is no TCP or TLS address.</returns>
    /// <exception cref="ArgumentException">A <c>tcp://</c> address without <paramref name="insecure"/>.</exception>
    public static PeerAddress? ParseAddress(string option, string part, bool insecure)
    {
        var candidate = part.Contains("://", StringComparison.Ordinal) ? part : $"{Scheme(insecure)}://{part}";
        if (!PeerAddress.TryParse(candidate, out var address) || (address.Scheme != TcpTransport.TcpScheme && address.Scheme != TcpTransport.TlsScheme))
        {
            return null;
        }

        return address.Scheme == TcpTransport.TcpScheme && !insecure
            ? throw new ArgumentException($"{option}: '{part}' is plain TCP, whose peer ids nobody verifies: add --insecure to use it, or give host:port or tls://id@host:port.")
            : address;
    }

    /// <summary>The line that tells which identity an address without an id turned out to have, or null when it had one.</summary>
    /// <param name="given">The address as given.</param>
    /// <param name="provenId">The id the peer proved.</param>
    public static string? MetLine(PeerAddress given, string provenId) =>
        given.Scheme == TcpTransport.TlsScheme && given.PeerId is null && !provenId.Contains('@', StringComparison.Ordinal)
            ? $"connected to {given.Location} as {given.WithPeerId(provenId)}"
            : null;
}
