using Microsoft.Extensions.Logging;
using Petals.Models;
using Petals.Transport;

namespace Petals.Hosting;

/// <summary>The log messages of the hosted server and the client (source-generated; stable event ids 3200-3299).</summary>
internal static partial class PetalsHostingLog
{
    [LoggerMessage(EventId = 3200, Level = LogLevel.Information, Message = "Petals server starting: model {ModelPath}, blocks {Blocks}, executor {Executor}, transport {Transport}")]
    public static partial void ServerStarting(ILogger logger, string modelPath, string blocks, string executor, string transport);

    [LoggerMessage(EventId = 3201, Level = LogLevel.Information, Message = "Petals server listening on {Address}: model {ModelId}, blocks {Blocks}, cache {CacheTokens} tokens, ready in {ElapsedMs} ms")]
    public static partial void ServerStarted(ILogger logger, PeerAddress address, string modelId, BlockRange blocks, long cacheTokens, long elapsedMs);

    [LoggerMessage(EventId = 3202, Level = LogLevel.Error, Message = "Petals server failed to start: model {ModelPath}, blocks {Blocks}")]
    public static partial void ServerStartFailed(ILogger logger, Exception exception, string modelPath, string blocks);

    [LoggerMessage(EventId = 3203, Level = LogLevel.Information, Message = "Petals server on {Address} stopping")]
    public static partial void ServerStopping(ILogger logger, PeerAddress address);

    [LoggerMessage(EventId = 3204, Level = LogLevel.Information, Message = "Petals server on {Address} stopped: {Connections} connections, {Sessions} sessions, {Steps} steps, {Forwards} forwards, {Tokens} tokens")]
    public static partial void ServerStopped(ILogger logger, PeerAddress address, long connections, long sessions, long steps, long forwards, long tokens);

    [LoggerMessage(EventId = 3205, Level = LogLevel.Warning, Message = "Petals server on {Address}: announcing offline took over {TimeoutSeconds} s; stopping anyway (the announcement expires on its own)")]
    public static partial void OfflineAnnounceAbandoned(ILogger logger, PeerAddress address, double timeoutSeconds);

    [LoggerMessage(EventId = 3206, Level = LogLevel.Warning, Message = "Petals server on {Address}: its peer id {PeerId} is not the id of the key its listener proves ({KeyId}); clients that check keys refuse it. Make the transport's identity from the discovery's key")]
    public static partial void PeerIdNotKey(ILogger logger, PeerAddress address, string peerId, string keyId);

    [LoggerMessage(EventId = 3210, Level = LogLevel.Information, Message = "Petals client connecting to {PeerCount} servers over {Transport} for model {ModelPath}")]
    public static partial void ClientConnecting(ILogger logger, int peerCount, string transport, string modelPath);

    [LoggerMessage(EventId = 3214, Level = LogLevel.Information, Message = "Petals client {PeerId} finding servers through discovery over {Transport} for model {ModelPath}")]
    public static partial void ClientDiscovering(ILogger logger, string peerId, string transport, string modelPath);

    [LoggerMessage(EventId = 3211, Level = LogLevel.Information, Message = "Petals client connected: {SpanCount} spans cover {BlockCount} blocks")]
    public static partial void ClientConnected(ILogger logger, int spanCount, int blockCount);

    [LoggerMessage(EventId = 3212, Level = LogLevel.Warning, Message = "Petals client failed to connect to {Peers}")]
    public static partial void ClientConnectFailed(ILogger logger, Exception exception, string peers);

    [LoggerMessage(EventId = 3220, Level = LogLevel.Information, Message = "Petals server placed on blocks {Blocks}: {SizeReason}; {SpanReason}")]
    public static partial void Placed(ILogger logger, BlockRange blocks, string sizeReason, string spanReason);

    [LoggerMessage(EventId = 3221, Level = LogLevel.Debug, Message = "Balance check on blocks {Blocks}: move {Move} (best span {Target}): {Reason}")]
    public static partial void BalanceChecked(ILogger logger, BlockRange blocks, bool move, BlockRange target, string reason);

    [LoggerMessage(EventId = 3222, Level = LogLevel.Debug, Message = "Balance check on blocks {Blocks} skipped: {Reason}")]
    public static partial void BalanceSkipped(ILogger logger, BlockRange blocks, string reason);

    [LoggerMessage(EventId = 3223, Level = LogLevel.Warning, Message = "Balance check failed; trying again next period")]
    public static partial void BalanceFailed(ILogger logger, Exception exception);

    [LoggerMessage(EventId = 3224, Level = LogLevel.Information, Message = "Petals server moved from blocks {From} to {To}, now listening on {Address}: {Reason}")]
    public static partial void Moved(ILogger logger, BlockRange from, BlockRange to, PeerAddress address, string reason);

    [LoggerMessage(EventId = 3230, Level = LogLevel.Information, Message = "Petals server loaded LoRA adapter {Adapter} for blocks {Blocks}: {Adapters}")]
    public static partial void AdapterLoaded(ILogger logger, string adapter, BlockRange blocks, Execution.LoraWeights adapters);
}
