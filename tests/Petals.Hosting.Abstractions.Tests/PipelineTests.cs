using Microsoft.Extensions.DependencyInjection;
using Petals.Discovery;
using Petals.Execution;
using Petals.Models;
using Petals.Transport;

namespace Petals.Hosting.Abstractions.Tests;

/// <summary>The builders' decorator pipeline: provider under its key, decorators around it, the first Use outermost.</summary>
public sealed class PipelineTests
{
    [Fact]
    public void Transport_decorators_wrap_the_provider_first_use_outermost_whatever_the_order_of_the_calls()
    {
        var services = new ServiceCollection();
        var server = new TestServerBuilder(services);
        server.Use((ITransport inner) => new LayerTransport(inner, "a"));
        server.UseTransport(new NamedTransport("tcp"));
        server.Use((ITransport inner) => new LayerTransport(inner, "b"));
        using var provider = services.BuildServiceProvider();

        var transport = provider.GetRequiredKeyedService<ITransport>(PetalsServiceKeys.Server);
        Assert.Equal("a(b(tcp))", transport.Name);
        Assert.Same(transport, provider.GetRequiredKeyedService<ITransport>(PetalsServiceKeys.Server));
        Assert.Equal("tcp", provider.GetRequiredKeyedService<ITransport>(PetalsServiceKeys.Provider(PetalsServiceKeys.Server)).Name);

        // Every layer answers GetService: the outer one first, then the inner ones.
        Assert.Equal("a", Assert.IsType<LayerTransport>(transport.GetService(typeof(LayerTransport))).Layer);
        Assert.IsType<NamedTransport>(transport.GetService(typeof(NamedTransport)));
        Assert.Null(transport.GetService(typeof(string)));
    }

    [Fact]
    public void Without_decorators_the_role_key_is_the_provider_and_the_last_provider_wins()
    {
        var services = new ServiceCollection();
        var client = new TestClientBuilder(services);
        client.UseTransport(new NamedTransport("first"));
        client.UseTransport(_ => new NamedTransport("second"));
        using var provider = services.BuildServiceProvider();
        Assert.Equal("second", provider.GetRequiredKeyedService<ITransport>(PetalsServiceKeys.Client).Name);
        Assert.Null(provider.GetKeyedService<ITransport>(PetalsServiceKeys.Server));
    }

    [Fact]
    public void Server_and_client_decorators_stay_in_their_role()
    {
        var services = new ServiceCollection();
        new TestServerBuilder(services).UseTransport(new NamedTransport("s")).Use((ITransport inner) => new LayerTransport(inner, "server"));
        new TestClientBuilder(services).UseTransport(new NamedTransport("c")).Use((ITransport inner) => new LayerTransport(inner, "client"));
        using var provider = services.BuildServiceProvider();
        Assert.Equal("server(s)", provider.GetRequiredKeyedService<ITransport>(PetalsServiceKeys.Server).Name);
        Assert.Equal("client(c)", provider.GetRequiredKeyedService<ITransport>(PetalsServiceKeys.Client).Name);
    }

    [Fact]
    public void Executor_decorators_wrap_every_executor_the_factory_creates_and_dispose_it_through_the_layers()
    {
        var services = new ServiceCollection();
        var factory = new StubExecutorFactory();
        var log = new List<string>();
        new TestServerBuilder(services)
            .Use(inner => new LayerExecutor(inner, "outer", log))
            .UseExecutor(factory)
            .Use((IBlockExecutor inner, IServiceProvider sp) => new LayerExecutor(inner, "inner:" + (sp is not null), log));
        using var provider = services.BuildServiceProvider();

        var decorated = provider.GetRequiredKeyedService<IBlockExecutorFactory>(PetalsServiceKeys.Server);
        Assert.Equal("stub", decorated.Name);
        using (var executor = decorated.Create(null!, new BlockRange(0, 2)))
        {
            executor.Forward(new float[4], 1, 1, null);
            Assert.Equal(["outer", "inner:True"], log);
            Assert.Equal(new BlockRange(0, 2), executor.Blocks);
            Assert.Same(factory.Created[0], executor.GetService(typeof(StubExecutor)));
        }

        Assert.True(Assert.Single(factory.Created).Disposed);
        Assert.Equal(["forward"], factory.Created[0].Log);
    }

    [Fact]
    public void Discovery_decorators_wrap_the_discovery()
    {
        var services = new ServiceCollection();
        new TestServerBuilder(services).UseDiscovery(_ => new StaticDiscovery("peer")).Use((IPeerDiscovery inner) => new RenamingDiscovery(inner, "-1")).Use((IPeerDiscovery inner) => new RenamingDiscovery(inner, "-2"));
        using var provider = services.BuildServiceProvider();
        Assert.Equal("peer-2-1", provider.GetRequiredKeyedService<IPeerDiscovery>(PetalsServiceKeys.Server).LocalPeerId);
    }

    [Fact]
    public void A_decorator_without_a_provider_fails_naming_what_to_choose()
    {
        var services = new ServiceCollection();
        new TestClientBuilder(services).Use((ITransport inner) => new LayerTransport(inner, "x"));
        using var provider = services.BuildServiceProvider();
        var error = Assert.Throws<InvalidOperationException>(() => provider.GetKeyedService<ITransport>(PetalsServiceKeys.Client));
        Assert.Contains("client has decorators of its ITransport but no transport (UseTcpTransport()", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_decorator_that_returns_null_fails_clearly()
    {
        var services = new ServiceCollection();
        new TestServerBuilder(services).UseTransport(new NamedTransport("t")).Use((ITransport _) => null!);
        using var provider = services.BuildServiceProvider();
        var error = Assert.Throws<InvalidOperationException>(() => provider.GetKeyedService<ITransport>(PetalsServiceKeys.Server));
        Assert.Contains("decorator returned null", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Arguments_are_checked_and_each_builder_knows_its_role()
    {
        var server = new TestServerBuilder(new ServiceCollection());
        var client = new TestClientBuilder(new ServiceCollection());
        Assert.Equal((PetalsServiceKeys.Server, PetalsServiceKeys.Client), (((IPetalsBuilder)server).Role, ((IPetalsBuilder)client).Role));
        Assert.Throws<ArgumentNullException>(() => server.Use((Func<ITransport, ITransport>)null!));
        Assert.Throws<ArgumentNullException>(() => client.Use((Func<IPeerDiscovery, IServiceProvider, IPeerDiscovery>)null!));
        Assert.Throws<ArgumentNullException>(() => server.UseTransport((ITransport)null!));
        Assert.Throws<ArgumentNullException>(() => ((IPetalsServerBuilder)null!).UseTransport(new NamedTransport("t")));
        Assert.Throws<ArgumentNullException>(() => server.AddStartupCheck(null!));
        Assert.Throws<ArgumentException>(() => PetalsServiceKeys.Provider(string.Empty));
    }

    [Fact]
    public void Startup_checks_are_registered_per_role_and_run_on_demand()
    {
        var services = new ServiceCollection();
        new TestServerBuilder(services).AddStartupCheck(_ => "the server cannot start here").AddStartupCheck(_ => null);
        new TestClientBuilder(services).AddStartupCheck(sp => sp is null ? "no container" : null);
        using var provider = services.BuildServiceProvider();
        Assert.Equal(["the server cannot start here", null], provider.GetKeyedServices<PetalsStartupCheck>(PetalsServiceKeys.Server).Select(c => c.Run(provider)));
        Assert.Equal([null], provider.GetKeyedServices<PetalsStartupCheck>(PetalsServiceKeys.Client).Select(c => c.Run(provider)));
    }
}
