using System.Globalization;
using Petals.Discovery;
using Petals.Models;
using Petals.Protocol;

namespace Petals.Client;

/// <summary>
/// Whether a connected server can run blocks for this client: before any tensor is sent, its info must match the
/// model (id, hidden size), accept the wire codec and hold the blocks asked of it, and, when it was found through
/// discovery, it must be the peer and span that was announced.
/// </summary>
internal static class ServerChecks
{
    /// <summary>
    /// Adds to <paramref name="problems"/> what makes <paramref name="server"/> unusable for <paramref name="blocks"/> of
    /// this model with this codec: blocks outside its span, another model, another hidden size, a codec it refuses.
    /// </summary>
    public static void AddProblems(RemoteSpanConnection server, BlockRange blocks, ModelConfig config, string modelId, WireCodec codec, List<string> problems)
    {
        var info = server.Info;
        if (blocks.Start < info.Blocks.Start || blocks.End > info.Blocks.End)
        {
            problems.Add($"{server.Name} is asked for blocks {blocks} but serves only {info.Blocks}");
        }

        if (info.ModelId.Length > 0 && !string.Equals(info.ModelId, modelId, StringComparison.Ordinal))
        {
            problems.Add($"{server.Name} serves model '{info.ModelId}', not '{modelId}'");
        }

        if (info.HiddenSize != config.HiddenSize)
        {
            problems.Add(string.Create(CultureInfo.InvariantCulture, $"{server.Name} has hidden size {info.HiddenSize}, the model has {config.HiddenSize}"));
        }

        if ((info.Codecs & (WireCodecs)(1 << (int)codec)) == 0)
        {
            // No fallback to another codec: the client asked for this one (its size and error bound), so it is told which server cannot.
            problems.Add(codec == WireCodec.Int8Blockwise
                ? $"{server.Name} does not accept hidden states as {codec} (it accepts {info.Codecs}; int8 needs a server of protocol 1.2 or later that enables it, peer protocol {server.Connection.Remote.VersionMajor}.{server.Connection.Remote.VersionMinor})"
                : $"{server.Name} does not accept hidden states as {codec} (it accepts {info.Codecs})");
        }
    }

    /// <summary>What makes <paramref name="server"/> unusable for a client requiring <paramref name="required"/> (null: any); null when nothing.</summary>
    public static string? QuantizationProblem(RemoteSpanConnection server, string? required)
    {
        if (required is null || string.Equals(server.Info.Quantization, required, StringComparison.Ordinal))
        {
            return null;
        }

        return server.Info.Quantization is { } stated
            ? $"{server.Name} runs weights quantized as '{stated}', not the required '{required}'"
            : $"{server.Name} does not state its weight quantization (protocol {server.Info.VersionMajor}.{server.Info.VersionMinor}; 1.2 states it), so it cannot meet the required '{required}'";
    }

    /// <summary>
    /// What makes a server found through discovery unusable as announced: another handshake peer id (when
    /// <paramref name="checkPeerId"/>) or span than its announcement, or any of <see cref="AddProblems"/>; null when nothing.
    /// </summary>
    public static string? AnnouncementProblems(RemoteSpanConnection server, ServerInfo announced, BlockRange blocks, ModelConfig config, string modelId, WireCodec codec, bool checkPeerId, string? requiredQuantization = null)
    {
        var problems = new List<string>();
        if (QuantizationProblem(server, requiredQuantization) is { } quantization)
        {
            problems.Add(quantization);
        }

        if (checkPeerId && !string.Equals(server.Connection.Remote.PeerId, announced.PeerId, StringComparison.Ordinal))
        {
            problems.Add($"the server at {announced.Address} is announced as peer {announced.PeerId} but its handshake says '{server.Connection.Remote.PeerId}'");
        }

        if (server.Info.Blocks != announced.Span)
        {
            problems.Add($"{server.Name} is announced with blocks {announced.Span} but serves {server.Info.Blocks}");
        }

        AddProblems(server, blocks, config, modelId, codec, problems);
        return problems.Count == 0 ? null : string.Join("; ", problems) + ".";
    }
}
