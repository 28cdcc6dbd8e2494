using System.CommandLine;
using Petals.Client;
using Petals.Generation;
using Petals.Protocol;
using Petals.Transport;
using Petals.Transport.Tcp;

namespace Petals.Cli.Commands;

/// <summary>Options and connecting shared by the commands that use servers.</summary>
internal static class SwarmOptions
{
    public static Option<string?> Peers() =>
        new("--peers") { Description = "Servers that together run every block, comma-separated: tls://peer-id@host:port (pinned), host:port (TLS, any key; the key met is printed) or tcp://host:port (plain, with --insecure)." };

    public static Option<string> WireCodec()
    {
        var option = new Option<string>("--wire-codec") { Description = "How hidden states travel: fp32 (exact), fp16 or bf16 (half the bytes), int8 (8-bit blockwise absmax, 1.0625 bytes per value, lossy; servers must speak protocol 1.2).", DefaultValueFactory = _ => "fp32" };
        option.AcceptOnlyFromAmong("fp32", "fp16", "bf16", "int8");
        return option;
    }

    /// <summary>Parses a comma-separated list of server addresses; bare <c>host:port</c> is TLS, or plain TCP with <paramref name="insecure"/>.</summary>
    public static PeerAddress[] ParsePeers(string text, bool insecure = false)
    {
        var parts = text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        if (parts.Length == 0)
        {
            throw new ArgumentException("--peers names no server.");
        }

        return [.. parts.Select(part =>
        {
            if (TransportSecurity.ParseAddress("--peers", part, insecure) is not { } address)
            {
                throw new ArgumentException($"--peers: '{part}' is not a server address (host:port, tcp://host:port or tls://peer-id@host:port).");
            }

            _ = address.Port;
            return address;
        })];
    }

    /// <summary>The codec named by <c>--wire-codec</c> (the option accepts only known names; none means fp32).</summary>
    public static WireCodec ParseCodec(string? text) =>
        text is null ? Protocol.WireCodec.Fp32
        : HiddenStateCodec.TryParse(text, out var codec) ? codec
        : throw new ArgumentException($"--wire-codec: '{text}' is not fp32, fp16, bf16 or int8.");

    /// <summary>
    /// The client of <paramref name="modelPath"/> over the servers of <paramref name="peers"/> (comma-separated addresses),
    /// spot-checking outputs at <paramref name="verifyRate"/>, using only servers of <paramref name="requiredQuantization"/> when set.
    /// </summary>
    /// <exception cref="FileNotFoundException">When the model does not exist.</exception>
    /// <exception cref="ArgumentException">When an address is malformed.</exception>
    public static ClientHost CreateClient(string modelPath, string peers, string? codec, bool insecure = false, double verifyRate = 0, bool multiplex = true, string? requiredQuantization = null)
    {
        if (!File.Exists(modelPath) && !Directory.Exists(modelPath))
        {
            throw new FileNotFoundException($"Model '{modelPath}' does not exist.", modelPath);
        }

        var addresses = ParsePeers(peers, insecure);
        return ClientHost.Create(
            o =>
            {
                o.ModelPath = modelPath;
                foreach (var address in addresses)
                {
                    o.Peers.Add(address.ToString());
                }

                o.Sequence.Codec = ParseCodec(codec);
                o.Sequence.Verification.Rate = verifyRate;
                o.Sequence.RequiredQuantization = requiredQuantization;
            },
            discovery: null,
            multiplex);
    }
}
