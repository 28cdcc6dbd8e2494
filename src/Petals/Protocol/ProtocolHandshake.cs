using System.Buffers;
using System.Buffers.Binary;
using System.Globalization;
using System.IO.Pipelines;
using System.Text;

namespace Petals.Protocol;

/// <summary>
/// The connection handshake: both sides send their <see cref="ConnectionPreamble"/>, read the peer's (length-capped),
/// and check protocol version and model id (docs/wire-protocol.md, section 1).
/// </summary>
public static class ProtocolHandshake
{
    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    /// <summary>Sends <paramref name="local"/>, reads and checks the peer's preamble.</summary>
    /// <param name="connection">The connection; bytes after the peer's preamble stay in its input for the <see cref="ProtocolReader"/>.</param>
    /// <param name="local">This side's preamble.</param>
    /// <param name="limits">This side's limits (the preamble cap); <see cref="ProtocolLimits.Default"/> when null.</param>
    /// <param name="cancellationToken">Cancels the exchange.</param>
    /// <returns>The peer's preamble and the negotiated minor version and frame limit.</returns>
    /// <exception cref="ProtocolException">
    /// <see cref="ProtocolErrorCode.BadPreamble"/>, <see cref="ProtocolErrorCode.PreambleTooLarge"/>,
    /// <see cref="ProtocolErrorCode.VersionMismatch"/> or <see cref="ProtocolErrorCode.ModelMismatch"/>; on a mismatch an error
    /// frame has been sent to the peer on stream 0. The caller closes the connection.
    /// </exception>
    /// <exception cref="ArgumentException">When <paramref name="local"/> is invalid.</exception>
    public static async ValueTask<HandshakeResult> PerformAsync(IDuplexPipe connection, ConnectionPreamble local, ProtocolLimits? limits = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(connection);
        ArgumentNullException.ThrowIfNull(local);
        limits ??= ProtocolLimits.Default;
        limits.Validate();
        var size = local.GetSize();
        local.Write(connection.Output.GetSpan(size)[..size]);
        connection.Output.Advance(size);
        await connection.Output.FlushAsync(cancellationToken).ConfigureAwait(false);

        var remote = await ReadPreambleAsync(connection.Input, limits, cancellationToken).ConfigureAwait(false);
        ProtocolException? mismatch = null;
        if (remote.VersionMajor != local.VersionMajor)
        {
            mismatch = new ProtocolException(ProtocolErrorCode.VersionMismatch, string.Create(CultureInfo.InvariantCulture, $"Peer '{remote.PeerId}' speaks protocol {remote.VersionMajor}.{remote.VersionMinor}; this side speaks {local.VersionMajor}.{local.VersionMinor} (major versions must match)."));
        }
        else if (remote.ModelId.Length > 0 && local.ModelId.Length > 0 && !string.Equals(remote.ModelId, local.ModelId, StringComparison.Ordinal))
        {
            mismatch = new ProtocolException(ProtocolErrorCode.ModelMismatch, $"Peer '{remote.PeerId}' is for model '{remote.ModelId}'; this side is for model '{local.ModelId}'.");
        }

        if (mismatch is not null)
        {
            var writer = new ProtocolWriter(connection.Output, limits, remote.MaxFrameSize);
            try
            {
                await writer.SendAsync(0, ErrorMessage.From(mismatch, limits), cancellationToken).ConfigureAwait(false);
            }
            catch (Exception e) when (e is InvalidOperationException or Petals.Transport.TransportException)
            {
                // The peer may already have closed its side after detecting the same mismatch; the local error stands.
            }

            throw mismatch;
        }

        return new HandshakeResult(
            remote,
            Math.Min(remote.VersionMinor, local.VersionMinor),
            Math.Min(Math.Min(remote.MaxFrameSize, local.MaxFrameSize), limits.MaxFrameSize));
    }

    /// <summary>Reads one preamble, never buffering more than <see cref="ProtocolLimits.MaxPreambleSize"/> bytes of it.</summary>
    /// <param name="input">The connection input; bytes after the preamble are left in it.</param>
    /// <param name="limits">The limits (the preamble cap).</param>
    /// <param name="cancellationToken">Cancels the wait.</param>
    /// <returns>The peer's preamble.</returns>
    /// <exception cref="ProtocolException">When the preamble is invalid, truncated or too long.</exception>
    public static async ValueTask<ConnectionPreamble> ReadPreambleAsync(PipeReader input, ProtocolLimits limits, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(input);
        ArgumentNullException.ThrowIfNull(limits);
        while (true)
        {
            var result = await input.ReadAsync(cancellationToken).ConfigureAwait(false);
            var buffer = result.Buffer;
            if (buffer.Length >= ConnectionPreamble.PrefixSize)
            {
                var total = CheckPrefix(buffer, limits);
                if (buffer.Length >= total)
                {
                    var preamble = Parse(buffer.Slice(ConnectionPreamble.PrefixSize, total - ConnectionPreamble.PrefixSize));
                    input.AdvanceTo(buffer.GetPosition(total));
                    return preamble;
                }
            }

            if (result.IsCompleted)
            {
                input.AdvanceTo(buffer.End);
                throw new ProtocolException(ProtocolErrorCode.BadPreamble, string.Create(CultureInfo.InvariantCulture, $"The connection closed after {buffer.Length} bytes of the peer's preamble.")) { IsConnectionFatal = true };
            }

            if (result.IsCanceled)
            {
                input.AdvanceTo(buffer.Start);
                throw new OperationCanceledException("The pending read was canceled.");
            }

            input.AdvanceTo(buffer.Start, buffer.End);
        }
    }

    private static int CheckPrefix(in ReadOnlySequence<byte> buffer, ProtocolLimits limits)
    {
        Span<byte> prefix = stackalloc byte[ConnectionPreamble.PrefixSize];
        buffer.Slice(0, ConnectionPreamble.PrefixSize).CopyTo(prefix);
        if (!prefix[..4].SequenceEqual(ConnectionPreamble.Magic))
        {
            throw new ProtocolException(ProtocolErrorCode.BadPreamble, $"The peer's preamble starts with {Convert.ToHexString(prefix[..4])}, not the magic 50544C53 ('PTLS'): not a Petals peer.") { IsConnectionFatal = true };
        }

        var total = ConnectionPreamble.PrefixSize + BinaryPrimitives.ReadUInt16LittleEndian(prefix[4..]);
        if (total > limits.MaxPreambleSize)
        {
            throw new ProtocolException(ProtocolErrorCode.PreambleTooLarge, string.Create(CultureInfo.InvariantCulture, $"The peer's preamble declares {total} bytes; the limit is {limits.MaxPreambleSize}.")) { IsConnectionFatal = true };
        }

        return total;
    }

    private static ConnectionPreamble Parse(in ReadOnlySequence<byte> body)
    {
        Span<byte> bytes = body.Length <= 1024 ? stackalloc byte[1024] : new byte[body.Length];
        bytes = bytes[..(int)body.Length];
        body.CopyTo(bytes);
        if (bytes.Length < 10)
        {
            throw Bad($"body holds {bytes.Length} bytes; the fixed fields need 10");
        }

        var major = BinaryPrimitives.ReadUInt16LittleEndian(bytes);
        var minor = BinaryPrimitives.ReadUInt16LittleEndian(bytes[2..]);
        var maxFrame = BinaryPrimitives.ReadUInt32LittleEndian(bytes[4..]);
        if (maxFrame is < ProtocolLimits.MinFrameSize or > int.MaxValue - FrameHeader.Size)
        {
            throw Bad($"field 'maxFrameSize' is {maxFrame}; it must be {ProtocolLimits.MinFrameSize} to {int.MaxValue - FrameHeader.Size}");
        }

        var offset = 8;
        var peer = ReadId(bytes, ref offset, "peerId");
        if (peer.Length == 0)
        {
            throw Bad($"field 'peerId' is empty");
        }

        var model = ReadId(bytes, ref offset, "modelId");
        return new ConnectionPreamble(peer, model, (int)maxFrame, major, minor);
    }

    private static string ReadId(ReadOnlySpan<byte> bytes, ref int offset, string field)
    {
        if (offset >= bytes.Length)
        {
            throw Bad($"field '{field}' length lies past the end of the body ({bytes.Length} bytes)");
        }

        var length = bytes[offset++];
        if (length > bytes.Length - offset)
        {
            throw Bad($"field '{field}' declares {length} bytes but {bytes.Length - offset} remain");
        }

        try
        {
            var value = StrictUtf8.GetString(bytes.Slice(offset, length));
            offset += length;
            return value;
        }
        catch (DecoderFallbackException ex)
        {
            throw new ProtocolException(ProtocolErrorCode.BadPreamble, $"The peer's preamble: field '{field}' is not valid UTF-8.", ex) { IsConnectionFatal = true };
        }
    }

    private static ProtocolException Bad(FormattableString detail) =>
        new(ProtocolErrorCode.BadPreamble, "The peer's preamble: " + detail.ToString(CultureInfo.InvariantCulture) + ".") { IsConnectionFatal = true };
}
