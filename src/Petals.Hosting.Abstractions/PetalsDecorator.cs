namespace Petals.Hosting;

/// <summary>
/// One decorator of a role's <typeparamref name="T"/> (an executor, transport or discovery), registered by a builder's
/// <c>Use(inner =&gt; …)</c> under the role key. The decorators of a role wrap its provider in registration order, the
/// first registered outermost.
/// </summary>
/// <typeparam name="T">The component it wraps.</typeparam>
/// <param name="decorate">Wraps the inner component; the service provider is the container's.</param>
public sealed class PetalsDecorator<T>(Func<T, IServiceProvider, T> decorate)
    where T : class
{
    /// <summary>Wraps <paramref name="inner"/>.</summary>
    /// <param name="inner">The component to wrap.</param>
    /// <param name="services">The container.</param>
    /// <returns>The wrapper.</returns>
    /// <exception cref="InvalidOperationException">The decorator returned null.</exception>
    public T Decorate(T inner, IServiceProvider services) =>
        decorate(inner, services) ?? throw new InvalidOperationException($"A Petals {typeof(T).Name} decorator returned null; return the inner {typeof(T).Name} or a wrapper of it.");
}
