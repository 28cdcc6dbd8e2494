namespace Petals.Transport.Tcp;

/// <summary>Settings of a <see cref="TcpTransport"/>.</summary>
public sealed class TcpTransportOptions
{
    /// <summary>How long a connect (TCP and, for <c>tls://</c>, the TLS handshake) may take before it fails with <see cref="TransportErrorKind.Timeout"/>. Default 10 seconds.</summary>
    public TimeSpan ConnectTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>How long an accepted connection's TLS handshake may take before the connection is dropped. Default 10 seconds.</summary>
    public TimeSpan HandshakeTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>The identity a <c>tls://</c> listener presents; required to listen on <c>tls://</c>. Default null.</summary>
    public TlsPeerIdentity? Identity { get; set; }

    /// <summary>
    /// Whether <see cref="TcpTransport.ConnectAsync"/> accepts a TLS address without a peer id (<c>tls://host:port</c>):
    /// the connection is encrypted and the server's key is accepted whatever it is (trust on first use), and the stream
    /// tells which key it met (<see cref="AuthenticatedPeer"/> through <see cref="ITransportStream.GetService"/>), so the
    /// caller can print it or check the id the peer claims against it. Default false: such an address is refused with an
    /// <see cref="ArgumentException"/>, since without an id nothing is authenticated. Addresses with an id are always pinned.
    /// </summary>
    public bool AllowUnpinnedTls { get; set; }

    /// <summary>How many received bytes a stream buffers before the sender is slowed down (back-pressure). Default 1 MiB.</summary>
    public int ReceiveBufferBytes { get; set; } = 1 << 20;

    /// <summary>
    /// How many incoming connections a listener takes from the kernel before the caller accepts them (TLS handshakes
    /// in progress and streams waiting for <see cref="ITransportListener.AcceptAsync"/>); further connections wait
    /// in the kernel's listen backlog. Bounds what unaccepted peers can make a listener buffer (about this many times
    /// <see cref="ReceiveBufferBytes"/>). Slow TLS handshakes hold a slot until <see cref="HandshakeTimeout"/>. Default 128.
    /// </summary>
    public int MaxPendingStreams { get; set; } = 128;

    /// <summary>
    /// How many accepted connections a listener keeps open at once (pending or accepted by the caller, until disposed);
    /// at this count it stops accepting, and further connections wait in the kernel's listen backlog. It keeps
    /// descriptors free for the runtime itself: at the process's descriptor limit the runtime cannot map new code and
    /// aborts ("Out of memory."), whatever the server's own connection limit says. Default: the soft open-file limit
    /// (RLIMIT_NOFILE) less 256 when it is at least 512, else half of it (at least 16); 4096 where it cannot be read.
    /// </summary>
    public int MaxOpenConnections { get; set; } = DescriptorLimit.DefaultMaxOpenConnections;
}
