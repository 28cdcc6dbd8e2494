namespace Petals.Protocol;

/// <summary>
/// The handler of a connection that makes no calls (a ping-only probe): nothing but pings, which the connection
/// answers itself, is expected, and anything else is dropped.
/// </summary>
internal sealed class IgnoringMessageHandler : IProtocolMessageHandler
{
    /// <summary>The one instance (stateless).</summary>
    public static readonly IgnoringMessageHandler Instance = new();

    private IgnoringMessageHandler()
    {
    }

    /// <inheritdoc />
    public ValueTask OnMessageAsync(ProtocolConnection connection, uint streamId, ProtocolMessage message, CancellationToken cancellationToken) => ValueTask.CompletedTask;

    /// <inheritdoc />
    public void OnStreamFailed(ProtocolConnection connection, uint streamId, ProtocolException failure)
    {
    }
}
