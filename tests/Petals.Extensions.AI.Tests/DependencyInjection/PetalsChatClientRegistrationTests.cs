using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;
using Petals.Client;
using Petals.Extensions.AI.Tests.Infrastructure;
using Petals.Generation;
using Petals.Inference;
using Petals.Testing.Time;

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
                "PetalsChatClientOptions.ConversationMaxLength must be at least 2 positions, or null for the model's context, not 0.",
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

    [Fact]
    public async Task Without_a_factory_the_registered_Petals_client_serves_the_chat_over_the_swarm()
    {
        SharedModel.SkipIfAbsent();
        await using var swarm = await MemorySwarm.StartAsync(Ct);
        var clock = new ManualTimeProvider(new DateTimeOffset(2026, 12, 8, 1, 0, 0, TimeSpan.Zero));
        var services = new ServiceCollection();
        services.AddSingleton<TimeProvider>(clock);
        swarm.AddClient(services);
        services.AddPetalsChatClient();
        await using var provider = services.BuildServiceProvider();
        var chat = provider.GetRequiredService<IChatClient>();
        Assert.Null(chat.GetService<CausalLanguageModel>());
        Assert.Equal(0, swarm.SessionsOpened);
        using var local = SharedModel.LoadLocal();
        using var reference = new PetalsChatClient(local);
        var options = new ChatOptions { MaxOutputTokens = 16, Temperature = 0 };

        var response = await chat.GetResponseAsync("Tell me a story.", options, Ct);

        Assert.True(swarm.SessionsOpened > 0);
        Assert.IsType<RemoteTransformerBlocks>(chat.GetService<CausalLanguageModel>()!.Blocks);
        Assert.Equal((await reference.GetResponseAsync("Tell me a story.", options, Ct)).Text, response.Text);
        Assert.Equal(clock.GetUtcNow(), response.CreatedAt);
        var metadata = chat.GetService<ChatClientMetadata>()!;
        Assert.Equal("petals", metadata.ProviderName);
        Assert.Equal(local.ModelId, metadata.DefaultModelId);
    }

    [Fact]
    public async Task Registrations_over_the_same_Petals_client_share_one_connected_model_which_the_container_disposes()
    {
        SharedModel.SkipIfAbsent();
        await using var swarm = await MemorySwarm.StartAsync(Ct);
        var services = new ServiceCollection();
        swarm.AddClient(services);
        services.AddPetalsChatClient();
        services.AddPetalsEmbeddingGenerator();
        services.AddKeyedPetalsEmbeddingGenerator("last", o => o.Pooling = EmbeddingPooling.LastToken);
        var provider = services.BuildServiceProvider();
        var chat = provider.GetRequiredService<IChatClient>();
        var embeddings = provider.GetRequiredService<IEmbeddingGenerator<string, Embedding<float>>>();
        var last = provider.GetRequiredKeyedService<IEmbeddingGenerator<string, Embedding<float>>>("last");

        await embeddings.GenerateAsync(["Once upon a time"], cancellationToken: Ct);
        await chat.GetResponseAsync("Hi", new ChatOptions { MaxOutputTokens = 4 }, Ct);
        await last.GenerateAsync(["Once upon a time"], cancellationToken: Ct);
        var model = chat.GetService<CausalLanguageModel>()!;
        Assert.Same(model, embeddings.GetService<CausalLanguageModel>());
        Assert.Same(model, last.GetService<CausalLanguageModel>());
        Assert.IsType<RemoteTransformerBlocks>(model.Blocks);

        // Disposing one client leaves the shared model to the others; the container closes it.
        embeddings.Dispose();
        await last.GenerateAsync(["still connected"], cancellationToken: Ct);
        await provider.DisposeAsync();
        await Assert.ThrowsAnyAsync<ObjectDisposedException>(async () => await model.EmbedAsync([1, 2], cancellationToken: Ct));
    }

    [Fact]
    public async Task Keyed_registrations_resolve_two_models()
    {
        SharedModel.SkipIfAbsent();
        await using var swarm = await MemorySwarm.StartAsync(Ct);
        var services = new ServiceCollection();
        services.AddKeyedPetalsChatClient("local", (_, _) => Task.FromResult(SharedModel.LoadLocal()), o => o.ModelId = "stories-local");
        services.AddKeyedPetalsChatClient("swarm", (_, ct) => swarm.ConnectAsync(ct), o => o.ModelId = "stories-swarm");
        await using var provider = services.BuildServiceProvider();
        var local = provider.GetRequiredKeyedService<IChatClient>("local");
        var remote = provider.GetRequiredKeyedService<IChatClient>("swarm");
        Assert.Null(provider.GetService<IChatClient>());
        var options = new ChatOptions { MaxOutputTokens = 8, Temperature = 0 };

        var byLocal = await local.GetResponseAsync("Hello", options, Ct);
        Assert.Equal(0, swarm.SessionsOpened);
        var byRemote = await remote.GetResponseAsync("Hello", options, Ct);
        Assert.True(swarm.SessionsOpened > 0);

        Assert.IsType<LocalTransformerBlocks>(local.GetService<CausalLanguageModel>()!.Blocks);
        Assert.IsType<RemoteTransformerBlocks>(remote.GetService<CausalLanguageModel>()!.Blocks);
        Assert.Equal("stories-local", byLocal.ModelId);
        Assert.Equal("stories-swarm", byRemote.ModelId);
        Assert.Equal("stories-local", local.GetService<ChatClientMetadata>()!.DefaultModelId);
        Assert.Equal("stories-swarm", remote.GetService<ChatClientMetadata>()!.DefaultModelId);
        Assert.Equal(byLocal.Text, byRemote.Text);
    }

    [Fact]
    public async Task The_container_disposes_the_model_it_connected_through_the_middleware()
    {
        SharedModel.SkipIfAbsent();
        var flag = new DisposalFlag();
        var services = new ServiceCollection();
        services.AddLogging();
        services.AddPetalsChatClient((_, _) =>
        {
            var local = SharedModel.LoadLocal();
            return Task.FromResult(new CausalLanguageModel(local.Head, local.Blocks, local.Tokenizer, local, flag) { ModelId = local.ModelId });
        }).UseLogging();
        var provider = services.BuildServiceProvider();
        await provider.GetRequiredService<IChatClient>().GetResponseAsync("Hi", new ChatOptions { MaxOutputTokens = 2 }, Ct);

        Assert.False(flag.Disposed);
        await provider.DisposeAsync();
        Assert.True(flag.Disposed);
    }
}
