using Microsoft.Extensions.Logging;

namespace Petals.Client;

/// <summary>The client's log messages (stable event ids 3300-3399).</summary>
internal static partial class ClientLog
{
    [LoggerMessage(3300, LogLevel.Debug, "Swarm view of {ModelId} refreshed: {Online} online servers, {Ignored} ignored")]
    public static partial void Refreshed(ILogger logger, string modelId, int online, int ignored);

    [LoggerMessage(3301, LogLevel.Warning, "Background refresh of the swarm view of {ModelId} failed; the previous view is kept")]
    public static partial void RefreshFailed(ILogger logger, string modelId, Exception error);

    [LoggerMessage(3302, LogLevel.Warning, "Server {PeerId} at {Address} (blocks {Blocks}) of {ModelId} is excluded: {Reason}")]
    public static partial void ServerExcluded(ILogger logger, string peerId, string address, string blocks, string modelId, string reason);

    [LoggerMessage(3303, LogLevel.Information, "Connected to a chain of {Count} servers for {ModelId}: {Chain}")]
    public static partial void ChainConnected(ILogger logger, int count, string modelId, string chain);

    [LoggerMessage(3304, LogLevel.Warning, "Server {PeerId} at {Address} (blocks {Blocks}) of {ModelId} failed ({FailureKind}) and is banned for {BanSeconds} s; its blocks are routed again")]
    public static partial void ServerFailed(ILogger logger, string peerId, string address, string blocks, string modelId, string failureKind, double banSeconds, Exception error);

    [LoggerMessage(3305, LogLevel.Warning, "Output check failed: server {PeerId} at {Address} (blocks {Blocks}) answered position {Position} with relative error {Error} above the tolerance {Tolerance} against {Verifiers}; verdict {Verdict}")]
    public static partial void OutputMismatch(ILogger logger, string peerId, string address, string blocks, int position, double error, double tolerance, string verdict, string verifiers);

    [LoggerMessage(3306, LogLevel.Debug, "Output check of server {PeerId} (blocks {Blocks}) at position {Position} skipped: no other server or local blocks could recompute it")]
    public static partial void CheckSkipped(ILogger logger, string peerId, string blocks, int position);
}
