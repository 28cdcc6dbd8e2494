namespace Petals.Hosting;

/// <summary>
/// Returned by <c>AddPetalsClient</c> (package Petals): provider packages add their <c>Use…</c> extension methods to it
/// (<c>UseTcpTransport()</c>, <c>UseQuicTransport()</c>, <c>UseDhtDiscovery(…)</c>, <c>UseMemoryTransport(…)</c>), and
/// decorators wrap what they chose (<c>Use(inner =&gt; …)</c>).
/// </summary>
public interface IPetalsClientBuilder : IPetalsBuilder
{
    /// <inheritdoc />
    string IPetalsBuilder.Role => PetalsServiceKeys.Client;
}
