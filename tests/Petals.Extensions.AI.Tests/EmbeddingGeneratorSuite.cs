using Microsoft.Extensions.AI;
using Petals.Extensions.AI.Tests.Infrastructure;
using Petals.Generation;
using Petals.Testing;

namespace Petals.Extensions.AI.Tests;

/// <summary>
/// The embedding generator's contract on a model whose blocks are somewhere (<typeparamref name="THost"/>: this process,
/// fixed TCP peers, a swarm found through a DHT): the same vectors as a model with every block here, order, usage, and
/// cancellation that closes the sessions on the servers.
/// </summary>
public abstract class EmbeddingGeneratorSuite<THost>(THost host) : IClassFixture<THost>
    where THost : ChatModelHost
{
    private static readonly string[] Texts = ["Once upon a time", "The cat sat on the mat.", "", "Lily and Ben went to the park.", "Zoom!"];

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Theory]
    [InlineData(EmbeddingPooling.Mean)]
    [InlineData(EmbeddingPooling.LastToken)]
    public async Task Embeddings_equal_those_of_the_model_with_every_block_here(EmbeddingPooling pooling)
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        using var reference = SharedModel.LoadLocal();
        using var generator = new PetalsEmbeddingGenerator(host.Model, new PetalsEmbeddingGeneratorOptions { Pooling = pooling, MaxConcurrency = 3 });
        var opened = host.Counter.SessionsOpened;

        var embeddings = await generator.GenerateAsync(Texts, cancellationToken: Ct);

        Assert.Equal(Texts.Length, host.Counter.SessionsOpened - opened);
        Assert.Equal(Texts.Sum(t => reference.EncodePrompt(t).Length), embeddings.Usage!.InputTokenCount);
        for (var i = 0; i < Texts.Length; i++)
        {
            var expected = await reference.EmbedAsync(reference.EncodePrompt(Texts[i]), pooling, Ct);
            var actual = embeddings[i].Vector.Span;
            Assert.Equal(expected.Length, actual.Length);
            for (var j = 0; j < expected.Length; j++)
            {
                Assert.True(Math.Abs(expected[j] - actual[j]) <= 1e-4f, $"text {i} element {j}: expected {expected[j]}, got {actual[j]}");
            }

            Assert.Equal(host.Model.ModelId, embeddings[i].ModelId);
        }
    }

    [Fact]
    public async Task Cancellation_stops_the_batch_and_the_servers_release_its_sessions()
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        var tracked = new ConcurrencyTrackingBlocks(host.Model.Blocks) { OnForward = count => { if (count == 3) { cts.Cancel(); } } };
        using var model = new CausalLanguageModel(host.Model.Head, tracked, host.Model.Tokenizer) { ModelId = host.Model.ModelId };
        using var generator = new PetalsEmbeddingGenerator(model, new PetalsEmbeddingGeneratorOptions { MaxConcurrency = 2 });
        var texts = Enumerable.Range(0, 30).Select(i => $"Story number {i}.").ToArray();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => generator.GenerateAsync(texts, cancellationToken: cts.Token));

        Assert.InRange(tracked.SessionsOpened, 3, 4);
        Assert.Equal(0, tracked.OpenSessions);
        Assert.Equal(0, host.Counter.OpenSessions);
        await host.WaitForNoServerSessionsAsync();
    }

    [Fact]
    public async Task Metadata_names_the_provider_the_model_and_its_hidden_size()
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        using var generator = new PetalsEmbeddingGenerator(host.Model);

        var metadata = generator.GetService<EmbeddingGeneratorMetadata>()!;

        Assert.Equal("petals", metadata.ProviderName);
        Assert.Equal(host.Model.ModelId, metadata.DefaultModelId);
        Assert.Equal(host.Model.Config.HiddenSize, metadata.DefaultModelDimensions);
        Assert.Same(host.Model, generator.GetService<CausalLanguageModel>());
        var one = await generator.GenerateAsync(["x"], cancellationToken: Ct);
        Assert.Equal(metadata.DefaultModelDimensions, one[0].Vector.Length);
    }
}

/// <summary>The suite with every block in this process.</summary>
public sealed class LocalEmbeddingGeneratorTests(LocalHost host) : EmbeddingGeneratorSuite<LocalHost>(host);

/// <summary>The suite over block servers at fixed TCP addresses.</summary>
public sealed class FixedPeerEmbeddingGeneratorTests(FixedPeerHost host) : EmbeddingGeneratorSuite<FixedPeerHost>(host);

/// <summary>The suite over a swarm found through a DHT.</summary>
public sealed class SwarmEmbeddingGeneratorTests(SwarmHost host) : EmbeddingGeneratorSuite<SwarmHost>(host);
