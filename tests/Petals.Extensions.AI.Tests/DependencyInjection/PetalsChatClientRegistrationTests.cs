using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;

namespace Petals.Extensions.AI.Tests.DependencyInjection;

/// <summary><c>AddPetalsChatClient</c> and its keyed variant: where the model comes from and the options.</summary>
public sealed class PetalsChatClientRegistrationTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public void Without_a_factory_or_a_Petals_client_resolution_says_what_to_register()
    {
        var services = new ServiceCollection();
        services.AddPetalsChatClient();
        using var provider = services.BuildServiceProvider();

        var e = Assert.Throws<InvalidOperationException>(() => provider.GetRequiredService<IChatClient>());
        Assert.Equal(
            "AddPetalsChatClient has no model: register a Petals client with services.AddPetalsClient(o => …).UseTcpTransport() (or another transport), "
            + "or pass a model factory to AddPetalsChatClient.",
            e.Message);
    }

    [Fact]
    public void Invalid_options_fail_resolution_naming_every_field()
    {
        var services = new ServiceCollection();
        services.AddKeyedPetalsChatClient("chat", (_, _) => throw new InvalidOperationException("not reached"), o =>
        {
            o.DefaultMaxOutputTokens = 0;
            o.MaxCachedConversations = -1;
            o.ConversationMaxLength = 0;
            o.ChatTemplate = " ";
            o.ModelId = "\t";
        });
        using var provider = services.BuildServiceProvider();

        var e = Assert.Throws<OptionsValidationException>(() => provider.GetRequiredKeyedService<IChatClient>("chat"));
        Assert.Equal(
            [
                "PetalsChatClientOptions.DefaultMaxOutputTokens must be at least 1, not 0.",
                "PetalsChatClientOptions.MaxCachedConversations must be 0 (no reuse) or more, not -1.",
                "PetalsChatClientOptions.ConversationMaxLength must be at least 1 position, or null for the model's context, not 0.",
                "PetalsChatClientOptions.ChatTemplate is blank: give a Jinja chat template, or null for the model's own.",
                "PetalsChatClientOptions.ModelId is blank: give an id, or null for the model's own.",
            ],
            e.Failures);
    }

    [Fact]
    public async Task Invalid_options_stop_a_host_at_start()
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Services.AddPetalsChatClient((_, _) => throw new InvalidOperationException("not reached"), o => o.DefaultMaxOutputTokens = -5);
        using var host = builder.Build();

        var e = await Assert.ThrowsAsync<OptionsValidationException>(() => host.StartAsync(Ct));
        Assert.Equal(["PetalsChatClientOptions.DefaultMaxOutputTokens must be at least 1, not -5."], e.Failures);
    }

    [Fact]
    public void Two_registrations_keep_their_own_options()
    {
        var services = new ServiceCollection();
        services.AddKeyedPetalsChatClient("a", (_, _) => throw new InvalidOperationException("not reached"), o => o.DefaultMaxOutputTokens = 7);
        services.AddKeyedPetalsChatClient("b", (_, _) => throw new InvalidOperationException("not reached"), o => o.DefaultMaxOutputTokens = 0);
        using var provider = services.BuildServiceProvider();

        Assert.NotNull(provider.GetRequiredKeyedService<IChatClient>("a"));
        Assert.Throws<OptionsValidationException>(() => provider.GetRequiredKeyedService<IChatClient>("b"));
    }
}
