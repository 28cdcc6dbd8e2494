namespace Petals.Hosting;

/// <summary>
/// The service keys of a Petals server's and client's components, so that a server and a client in one container may
/// use different transports and discoveries. Resolve a role's executor factory, transport or discovery with its role
/// key (e.g. <c>GetKeyedService&lt;ITransport&gt;(PetalsServiceKeys.Server)</c>): that is the provider chosen on the
/// builder wrapped in the role's decorators. The provider alone is registered under <see cref="Provider"/>.
/// </summary>
public static class PetalsServiceKeys
{
    /// <summary>The key of the server's components (<c>"Petals.Server"</c>).</summary>
    public const string Server = "Petals.Server";

    /// <summary>The key of the client's components (<c>"Petals.Client"</c>).</summary>
    public const string Client = "Petals.Client";

    /// <summary>The key the provider chosen for <paramref name="role"/> is registered under, undecorated (e.g. <c>"Petals.Server/provider"</c>).</summary>
    /// <param name="role"><see cref="Server"/> or <see cref="Client"/>.</param>
    /// <returns>The key.</returns>
    public static string Provider(string role)
    {
        ArgumentException.ThrowIfNullOrEmpty(role);
        return role + "/provider";
    }
}
