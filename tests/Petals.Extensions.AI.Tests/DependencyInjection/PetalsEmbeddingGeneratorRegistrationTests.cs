using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;
using Petals.Client;
using Petals.Extensions.AI.Tests.Infrastructure;
using Petals.Generation;
using Petals.Inference;

namespace Petals.Extensions.AI.Tests.DependencyInjection;

/// <summary><c>AddPetalsEmbeddingGenerator</c> and its keyed variant: where the model comes from, when it connects, options.</summary>
public sealed class PetalsEmbeddingGeneratorRegistrationTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task The_model_factory_runs_on_first_use_once_and_the_container_disposes_the_model()
    {
        SharedModel.SkipIfAbsent();
        var calls = 0;
        var flag = new DisposalFlag();
        var services = new ServiceCollection();
        services.AddPetalsEmbeddingGenerator((_, _) =>
        {
            Interlocked.Increment(ref calls);
            var local = SharedModel.LoadLocal();
            return Task.FromResult(new CausalLanguageModel(local.Head, local.Blocks, local.Tokenizer, local, flag) { ModelId = local.ModelId });
        });
        var provider = services.BuildServiceProvider();
        var generator = provider.GetRequiredService<IEmbeddingGenerator<string, Embedding<float>>>();
        Assert.Equal(0, calls);
        Assert.Null(generator.GetService<CausalLanguageModel>());
        Assert.Null(generator.GetService<EmbeddingGeneratorMetadata>()!.DefaultModelDimensions);

        await generator.GenerateAsync(["one"], cancellationToken: Ct);
        await generator.GenerateAsync(["two"], cancellationToken: Ct);

        Assert.Equal(1, calls);
        Assert.NotNull(generator.GetService<CausalLanguageModel>());
        Assert.Equal(64, generator.GetService<EmbeddingGeneratorMetadata>()!.DefaultModelDimensions);
        Assert.False(flag.Disposed);
        await provider.DisposeAsync();
        Assert.True(flag.Disposed);
    }

    [Fact]
    public async Task A_failed_connection_is_retried_on_the_next_call()
    {
        SharedModel.SkipIfAbsent();
        var calls = 0;
        var services = new ServiceCollection();
        services.AddPetalsEmbeddingGenerator((_, _) => ++calls == 1
            ? throw new InvalidOperationException("swarm unreachable")
            : Task.FromResult(SharedModel.LoadLocal()));
        await using var provider = services.BuildServiceProvider();
        var generator = provider.GetRequiredService<IEmbeddingGenerator<string, Embedding<float>>>();

        var e = await Assert.ThrowsAsync<InvalidOperationException>(() => generator.GenerateAsync(["x"], cancellationToken: Ct));
        Assert.Equal("swarm unreachable", e.Message);
        var embeddings = await generator.GenerateAsync(["x"], cancellationToken: Ct);

        Assert.Equal(2, calls);
        Assert.Single(embeddings);
    }

    [Fact]
    public async Task Without_a_factory_the_registered_Petals_client_connects_the_model_over_the_swarm()
    {
        SharedModel.SkipIfAbsent();
        await using var swarm = await MemorySwarm.StartAsync(Ct);
        var services = new ServiceCollection();
        swarm.AddClient(services);
        services.AddPetalsEmbeddingGenerator();
        await using var provider = services.BuildServiceProvider();
        var generator = provider.GetRequiredService<IEmbeddingGenerator<string, Embedding<float>>>();
        using var local = SharedModel.LoadLocal();

        var embeddings = await generator.GenerateAsync(["Once upon a time", "The end."], cancellationToken: Ct);

        Assert.IsType<RemoteTransformerBlocks>(generator.GetService<CausalLanguageModel>()!.Blocks);
        Assert.Equal(4, swarm.SessionsOpened); // one session per text on each of the two servers
        Assert.Equal(local.ModelId, generator.GetService<EmbeddingGeneratorMetadata>()!.DefaultModelId);
        for (var i = 0; i < 2; i++)
        {
            var expected = await local.EmbedAsync(local.EncodePrompt(i == 0 ? "Once upon a time" : "The end."), cancellationToken: Ct);
            var actual = embeddings[i].Vector.ToArray();
            for (var j = 0; j < expected.Length; j++)
            {
                Assert.True(Math.Abs(expected[j] - actual[j]) <= 1e-4f, $"text {i} element {j}: local {expected[j]}, swarm {actual[j]}");
            }
        }
    }

    [Fact]
    public async Task A_keyed_registration_without_a_factory_uses_the_registered_Petals_client()
    {
        SharedModel.SkipIfAbsent();
        await using var swarm = await MemorySwarm.StartAsync(Ct);
        var services = new ServiceCollection();
        swarm.AddClient(services);
        services.AddKeyedPetalsEmbeddingGenerator("swarm", o => o.Normalize = true);
        await using var provider = services.BuildServiceProvider();
        var generator = provider.GetRequiredKeyedService<IEmbeddingGenerator<string, Embedding<float>>>("swarm");

        var embeddings = await generator.GenerateAsync(["Once upon a time"], cancellationToken: Ct);

        Assert.Equal(2, swarm.SessionsOpened);
        Assert.IsType<RemoteTransformerBlocks>(generator.GetService<CausalLanguageModel>()!.Blocks);
        Assert.Equal(1f, System.Numerics.Tensors.TensorPrimitives.Norm(embeddings[0].Vector.Span), 1e-5f);
    }

    [Fact]
    public void Without_a_factory_or_a_Petals_client_resolution_says_what_to_register()
    {
        var services = new ServiceCollection();
        services.AddPetalsEmbeddingGenerator();
        using var provider = services.BuildServiceProvider();

        var e = Assert.Throws<InvalidOperationException>(() => provider.GetRequiredService<IEmbeddingGenerator<string, Embedding<float>>>());
        Assert.Equal(
            "AddPetalsEmbeddingGenerator has no model: register a Petals client with services.AddPetalsClient(o => …).UseTcpTransport() (or another transport), "
            + "or pass a model factory to AddPetalsEmbeddingGenerator.",
            e.Message);
    }

    [Fact]
    public async Task Keyed_registrations_resolve_two_models_with_their_own_options()
    {
        SharedModel.SkipIfAbsent();
        await using var swarm = await MemorySwarm.StartAsync(Ct);
        var services = new ServiceCollection();
        services.AddKeyedPetalsEmbeddingGenerator("local", (_, _) => Task.FromResult(SharedModel.LoadLocal()), o => o.ModelId = "stories-local");
        services.AddKeyedPetalsEmbeddingGenerator("swarm", (_, ct) => swarm.ConnectAsync(ct), o =>
        {
            o.ModelId = "stories-swarm";
            o.Pooling = EmbeddingPooling.LastToken;
        });
        await using var provider = services.BuildServiceProvider();
        var local = provider.GetRequiredKeyedService<IEmbeddingGenerator<string, Embedding<float>>>("local");
        var remote = provider.GetRequiredKeyedService<IEmbeddingGenerator<string, Embedding<float>>>("swarm");
        Assert.Null(provider.GetService<IEmbeddingGenerator<string, Embedding<float>>>());

        var byLocal = await local.GenerateAsync(["Once upon a time"], cancellationToken: Ct);
        Assert.Equal(0, swarm.SessionsOpened);
        var byRemote = await remote.GenerateAsync(["Once upon a time"], cancellationToken: Ct);
        Assert.Equal(2, swarm.SessionsOpened);

        var localModel = local.GetService<CausalLanguageModel>()!;
        var remoteModel = remote.GetService<CausalLanguageModel>()!;
        Assert.NotSame(localModel, remoteModel);
        Assert.IsType<LocalTransformerBlocks>(localModel.Blocks);
        Assert.IsType<RemoteTransformerBlocks>(remoteModel.Blocks);
        Assert.Equal("stories-local", byLocal[0].ModelId);
        Assert.Equal("stories-swarm", byRemote[0].ModelId);
        Assert.Equal("stories-swarm", remote.GetService<EmbeddingGeneratorMetadata>()!.DefaultModelId);
        Assert.Equal(EmbeddingPooling.Mean, local.GetService<PetalsEmbeddingGeneratorOptions>()!.Pooling);
        Assert.Equal(EmbeddingPooling.LastToken, remote.GetService<PetalsEmbeddingGeneratorOptions>()!.Pooling);
        var ids = localModel.EncodePrompt("Once upon a time");
        var lastToken = await localModel.EmbedAsync(ids, EmbeddingPooling.LastToken, Ct);
        for (var j = 0; j < lastToken.Length; j++)
        {
            Assert.True(Math.Abs(lastToken[j] - byRemote[0].Vector.Span[j]) <= 1e-4f, $"element {j}");
        }
    }

    [Fact]
    public void Invalid_options_fail_resolution_naming_every_field()
    {
        var services = new ServiceCollection();
        services.AddPetalsEmbeddingGenerator((_, _) => throw new InvalidOperationException("not reached"), o =>
        {
            o.MaxConcurrency = 0;
            o.ModelId = "";
        });
        using var provider = services.BuildServiceProvider();

        var e = Assert.Throws<OptionsValidationException>(() => provider.GetRequiredService<IEmbeddingGenerator<string, Embedding<float>>>());
        Assert.Equal(
            ["PetalsEmbeddingGeneratorOptions.MaxConcurrency must be at least 1, not 0.", "PetalsEmbeddingGeneratorOptions.ModelId is blank: give an id, or null for the model's own."],
            e.Failures);
    }

    [Fact]
    public async Task Invalid_options_stop_a_host_at_start()
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Services.AddKeyedPetalsEmbeddingGenerator("k", (_, _) => throw new InvalidOperationException("not reached"), o => o.Pooling = (EmbeddingPooling)9);
        using var host = builder.Build();

        var e = await Assert.ThrowsAsync<OptionsValidationException>(() => host.StartAsync(Ct));
        Assert.Equal(["PetalsEmbeddingGeneratorOptions.Pooling must be Mean or LastToken, not 9."], e.Failures);
    }
}
