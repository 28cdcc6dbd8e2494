namespace Petals.Hosting;

/// <summary>
/// A check a provider registers for the start of a Petals server or client (<c>AddStartupCheck</c>): the host validates
/// the options and runs every check of the role, and a failure message fails the start with the other validation
/// failures (e.g. a transport that is not supported on this machine).
/// </summary>
/// <param name="check">Returns why the component cannot work here, or null when it can.</param>
public sealed class PetalsStartupCheck(Func<IServiceProvider, string?> check)
{
    /// <summary>Runs the check.</summary>
    /// <param name="services">The container.</param>
    /// <returns>The failure, or null.</returns>
    public string? Run(IServiceProvider services) => check(services);
}
