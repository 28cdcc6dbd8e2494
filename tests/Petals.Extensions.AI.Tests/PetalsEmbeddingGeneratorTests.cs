using System.Numerics.Tensors;
using FsCheck;
using FsCheck.Fluent;
using Microsoft.Extensions.AI;
using Petals.Extensions.AI.Tests.Infrastructure;
using Petals.Generation;
using Petals.Testing;

namespace Petals.Extensions.AI.Tests;

/// <summary><see cref="PetalsEmbeddingGenerator"/> over the shared model with every block in this process.</summary>
public sealed class PetalsEmbeddingGeneratorTests
{
    private static readonly string[] Texts = ["Once upon a time", "The cat sat on the mat.", "", "Lily and Ben went to the park to play.", "a"];

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Each_embedding_equals_EmbedAsync_of_the_encoded_text_in_the_order_given()
    {
        SharedModel.SkipIfAbsent();
        using var model = SharedModel.LoadLocal();
        using var generator = new PetalsEmbeddingGenerator(model, new PetalsEmbeddingGeneratorOptions { MaxConcurrency = 3 });

        var embeddings = await generator.GenerateAsync(Texts, cancellationToken: Ct);

        Assert.Equal(Texts.Length, embeddings.Count);
        for (var i = 0; i < Texts.Length; i++)
        {
            var expected = await model.EmbedAsync(model.EncodePrompt(Texts[i]), EmbeddingPooling.Mean, Ct);
            Assert.Equal(expected, embeddings[i].Vector.ToArray());
            Assert.Equal(model.ModelId, embeddings[i].ModelId);
            Assert.NotNull(embeddings[i].CreatedAt);
        }
    }

    [Fact]
    public async Task Usage_counts_every_token_of_every_text()
    {
        SharedModel.SkipIfAbsent();
        using var model = SharedModel.LoadLocal();
        using var generator = new PetalsEmbeddingGenerator(model);

        var embeddings = await generator.GenerateAsync(Texts, cancellationToken: Ct);

        var tokens = Texts.Sum(t => model.EncodePrompt(t).Length);
        Assert.Equal(tokens, embeddings.Usage!.InputTokenCount);
        Assert.Equal(tokens, embeddings.Usage.TotalTokenCount);
    }

    [Fact]
    public async Task Mean_and_last_token_pooling_are_the_mean_and_the_last_of_the_final_norm_hidden_states()
    {
        SharedModel.SkipIfAbsent();
        using var model = SharedModel.LoadLocal();
        const string text = "Lily and Ben went to the park to play.";
        var (mean, last) = await ReferencePoolingsAsync(model, model.EncodePrompt(text));

        using var meanGenerator = new PetalsEmbeddingGenerator(model);
        using var lastGenerator = new PetalsEmbeddingGenerator(model, new PetalsEmbeddingGeneratorOptions { Pooling = EmbeddingPooling.LastToken });
        var byMean = (await meanGenerator.GenerateAsync([text], cancellationToken: Ct))[0].Vector.ToArray();
        var byLast = (await lastGenerator.GenerateAsync([text], cancellationToken: Ct))[0].Vector.ToArray();

        AssertClose(mean, byMean, 1e-5f);
        AssertClose(last, byLast, 1e-5f);
        Assert.True(TensorPrimitives.Distance(byMean, byLast) > 1e-2f, "mean and last-token pooling should differ on a multi-token text");
    }

    [Fact]
    public async Task Normalize_scales_each_vector_to_unit_length_in_the_same_direction()
    {
        SharedModel.SkipIfAbsent();
        using var model = SharedModel.LoadLocal();
        using var raw = new PetalsEmbeddingGenerator(model);
        using var unit = new PetalsEmbeddingGenerator(model, new PetalsEmbeddingGeneratorOptions { Normalize = true });

        var plain = await raw.GenerateAsync(Texts, cancellationToken: Ct);
        var normalized = await unit.GenerateAsync(Texts, cancellationToken: Ct);

        for (var i = 0; i < Texts.Length; i++)
        {
            var p = plain[i].Vector.ToArray();
            var n = normalized[i].Vector.ToArray();
            Assert.Equal(1f, TensorPrimitives.Norm(n), 1e-5f);
            Assert.Equal(1f, TensorPrimitives.CosineSimilarity(p, n), 1e-5f);
            Assert.NotEqual(1f, TensorPrimitives.Norm(p), 1e-3f);
        }
    }

    [Fact]
    public async Task No_more_texts_than_MaxConcurrency_run_at_once_and_each_runs_once()
    {
        SharedModel.SkipIfAbsent();
        using var local = SharedModel.LoadLocal();
        var blocks = new ConcurrencyTrackingBlocks(local.Blocks);
        using var model = new CausalLanguageModel(local.Head, blocks, local.Tokenizer);
        using var generator = new PetalsEmbeddingGenerator(model, new PetalsEmbeddingGeneratorOptions { MaxConcurrency = 2 });
        var texts = Enumerable.Range(0, 12).Select(i => $"Story number {i} begins here.").ToArray();

        var embeddings = await generator.GenerateAsync(texts, cancellationToken: Ct);

        Assert.Equal(12, blocks.SessionsOpened);
        Assert.InRange(blocks.PeakSessions, 1, 2);
        for (var i = 0; i < texts.Length; i++)
        {
            Assert.Equal(await local.EmbedAsync(local.EncodePrompt(texts[i]), cancellationToken: Ct), embeddings[i].Vector.ToArray());
        }
    }

    [Fact]
    public void Any_batch_at_any_concurrency_gives_each_texts_own_embedding_in_order_and_counts_its_tokens()
    {
        SharedModel.SkipIfAbsent();
        using var model = SharedModel.LoadLocal();
        string[] words = ["Once", "upon", "a", "time", "Lily", "dog", "park", "happy", "!", "the", ""];
        var texts = Gen.ListOf(Gen.ListOf(Gen.Elements(words)).Select(w => string.Join(' ', w))).Select(l => l.Take(8).ToArray());
        Prop.ForAll(
            Gen.Zip(texts, Gen.Choose(1, 6)).ToArbitrary(),
            async input =>
            {
                var (batch, concurrency) = input;
                using var generator = new PetalsEmbeddingGenerator(model, new PetalsEmbeddingGeneratorOptions { MaxConcurrency = concurrency });
                var embeddings = await generator.GenerateAsync(batch, cancellationToken: Ct);
                Assert.Equal(batch.Length, embeddings.Count);
                long tokens = 0;
                for (var i = 0; i < batch.Length; i++)
                {
                    var ids = model.EncodePrompt(batch[i]);
                    tokens += ids.Length;
                    Assert.Equal(await model.EmbedAsync(ids, cancellationToken: Ct), embeddings[i].Vector.ToArray());
                }

                Assert.Equal(tokens, embeddings.Usage!.InputTokenCount);
            }).Check(Config.QuickThrowOnFailure.WithMaxTest(30));
    }

    [Fact]
    public async Task Cancellation_stops_the_batch_and_closes_every_session_it_opened()
    {
        SharedModel.SkipIfAbsent();
        using var local = SharedModel.LoadLocal();
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        var blocks = new ConcurrencyTrackingBlocks(local.Blocks) { OnForward = count => { if (count == 3) { cts.Cancel(); } } };
        using var model = new CausalLanguageModel(local.Head, blocks, local.Tokenizer);
        using var generator = new PetalsEmbeddingGenerator(model, new PetalsEmbeddingGeneratorOptions { MaxConcurrency = 2 });
        var texts = Enumerable.Range(0, 40).Select(i => $"Story number {i}.").ToArray();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => generator.GenerateAsync(texts, cancellationToken: cts.Token));

        Assert.InRange(blocks.SessionsOpened, 3, 4);
        Assert.Equal(0, blocks.OpenSessions);
    }

    [Fact]
    public async Task Dimensions_other_than_the_hidden_size_are_refused_and_the_hidden_size_is_accepted()
    {
        SharedModel.SkipIfAbsent();
        using var model = SharedModel.LoadLocal();
        using var generator = new PetalsEmbeddingGenerator(model);

        var e = await Assert.ThrowsAsync<NotSupportedException>(() => generator.GenerateAsync(["x"], new EmbeddingGenerationOptions { Dimensions = 32 }, Ct));
        Assert.Equal(
            "EmbeddingGenerationOptions.Dimensions is 32, but this model's embeddings have its hidden size, 64, and are not truncated or projected.",
            e.Message);
        var ok = await generator.GenerateAsync(["x"], new EmbeddingGenerationOptions { Dimensions = 64 }, Ct);
        Assert.Equal(64, ok[0].Vector.Length);
    }

    [Fact]
    public async Task Another_model_id_is_refused_and_the_own_one_is_accepted()
    {
        SharedModel.SkipIfAbsent();
        using var model = SharedModel.LoadLocal();
        using var generator = new PetalsEmbeddingGenerator(model, new PetalsEmbeddingGeneratorOptions { ModelId = "stories" });

        var e = await Assert.ThrowsAsync<NotSupportedException>(() => generator.GenerateAsync(["x"], new EmbeddingGenerationOptions { ModelId = "gpt-4" }, Ct));
        Assert.Equal("EmbeddingGenerationOptions.ModelId is 'gpt-4', but this generator serves the model 'stories' only.", e.Message);
        var ok = await generator.GenerateAsync(["x"], new EmbeddingGenerationOptions { ModelId = "stories" }, Ct);
        Assert.Equal("stories", ok[0].ModelId);
    }

    [Fact]
    public async Task Bad_values_are_refused_by_index_before_any_text_runs()
    {
        SharedModel.SkipIfAbsent();
        using var local = SharedModel.LoadLocal();
        var blocks = new ConcurrencyTrackingBlocks(local.Blocks);
        using var model = new CausalLanguageModel(local.Head, blocks, local.Tokenizer);
        using var generator = new PetalsEmbeddingGenerator(model);

        var nullValue = await Assert.ThrowsAsync<ArgumentException>(() => generator.GenerateAsync(["fine", null!], cancellationToken: Ct));
        Assert.StartsWith("Value 1 is null.", nullValue.Message, StringComparison.Ordinal);
        var context = model.Config.MaxPositionEmbeddings;
        var tooLong = string.Join(' ', Enumerable.Repeat("Once upon a time", context));
        var length = model.EncodePrompt(tooLong).Length;
        var overflow = await Assert.ThrowsAsync<ArgumentException>(() => generator.GenerateAsync(["fine", "also fine", tooLong], cancellationToken: Ct));
        Assert.StartsWith(
            $"Value 2 is {length} tokens, longer than the model's context of {context}; shorten it (it is not truncated).",
            overflow.Message,
            StringComparison.Ordinal);
        Assert.Equal(0, blocks.SessionsOpened);
    }

    [Fact]
    public async Task Metadata_and_GetService_expose_the_provider_the_model_and_its_hidden_size()
    {
        SharedModel.SkipIfAbsent();
        using var model = SharedModel.LoadLocal();
        using var generator = new PetalsEmbeddingGenerator(model);

        var metadata = generator.GetService<EmbeddingGeneratorMetadata>();
        Assert.NotNull(metadata);
        Assert.Equal("petals", metadata.ProviderName);
        Assert.Equal(model.ModelId, metadata.DefaultModelId);
        Assert.Equal(64, metadata.DefaultModelDimensions);
        Assert.Null(metadata.ProviderUri);
        Assert.Same(model, generator.GetService<CausalLanguageModel>());
        Assert.Same(generator, generator.GetService<IEmbeddingGenerator<string, Embedding<float>>>());
        Assert.Equal(EmbeddingPooling.Mean, generator.GetService<PetalsEmbeddingGeneratorOptions>()!.Pooling);
        Assert.Null(generator.GetService(typeof(CausalLanguageModel), serviceKey: "other"));
        Assert.Null(generator.GetService<string>());
    }

    [Fact]
    public async Task An_empty_batch_gives_no_embedding_and_no_token()
    {
        SharedModel.SkipIfAbsent();
        using var local = SharedModel.LoadLocal();
        var blocks = new ConcurrencyTrackingBlocks(local.Blocks);
        using var model = new CausalLanguageModel(local.Head, blocks, local.Tokenizer);
        using var generator = new PetalsEmbeddingGenerator(model);

        var embeddings = await generator.GenerateAsync([], cancellationToken: Ct);

        Assert.Empty(embeddings);
        Assert.Equal(0, embeddings.Usage!.InputTokenCount);
        Assert.Equal(0, blocks.SessionsOpened);
    }

    [Fact]
    public async Task A_model_without_a_tokenizer_is_refused()
    {
        SharedModel.SkipIfAbsent();
        using var local = SharedModel.LoadLocal();
        using var model = new CausalLanguageModel(local.Head, local.Blocks);
        using var generator = new PetalsEmbeddingGenerator(model);

        var e = await Assert.ThrowsAsync<InvalidOperationException>(() => generator.GenerateAsync(["text"], cancellationToken: Ct));
        Assert.Equal("The model has no tokenizer, so it cannot embed text.", e.Message);
    }

    [Fact]
    public async Task Disposing_the_generator_leaves_a_given_model_open()
    {
        SharedModel.SkipIfAbsent();
        using var model = SharedModel.LoadLocal();
        var generator = new PetalsEmbeddingGenerator(model);
        generator.Dispose();

        var vector = await model.EmbedAsync(model.EncodePrompt("still open"), cancellationToken: Ct);
        Assert.Equal(64, vector.Length);
    }

    [Theory]
    [InlineData(0, "PetalsEmbeddingGeneratorOptions.MaxConcurrency must be at least 1, not 0. (Parameter 'options')")]
    [InlineData(-3, "PetalsEmbeddingGeneratorOptions.MaxConcurrency must be at least 1, not -3. (Parameter 'options')")]
    public void Out_of_range_options_are_refused_by_the_constructor(int concurrency, string message)
    {
        SharedModel.SkipIfAbsent();
        using var model = SharedModel.LoadLocal();
        var e = Assert.Throws<ArgumentException>(() => new PetalsEmbeddingGenerator(model, new PetalsEmbeddingGeneratorOptions { MaxConcurrency = concurrency }));
        Assert.Equal(message, e.Message);
    }

    [Fact]
    public void Unknown_pooling_and_blank_model_id_are_refused_together()
    {
        SharedModel.SkipIfAbsent();
        using var model = SharedModel.LoadLocal();
        var e = Assert.Throws<ArgumentException>(() => new PetalsEmbeddingGenerator(model, new PetalsEmbeddingGeneratorOptions { Pooling = (EmbeddingPooling)7, ModelId = " " }));
        Assert.Equal(
            "PetalsEmbeddingGeneratorOptions.Pooling must be Mean or LastToken, not 7. PetalsEmbeddingGeneratorOptions.ModelId is blank: give an id, or null for the model's own. (Parameter 'options')",
            e.Message);
    }

    /// <summary>The mean and the last of the final-norm hidden states, computed from the model's blocks and head directly.</summary>
    private static async Task<(float[] Mean, float[] Last)> ReferencePoolingsAsync(CausalLanguageModel model, int[] ids)
    {
        var h = model.Config.HiddenSize;
        var hidden = new float[ids.Length * h];
        model.Head.Embed(ids, hidden);
        await using (var session = await model.Blocks.OpenSessionAsync(1, ids.Length, Ct))
        {
            await session.ForwardAsync(hidden, ids.Length, Ct);
        }

        var mean = new float[h];
        var normed = new float[h];
        for (var t = 0; t < ids.Length; t++)
        {
            model.Head.Normalize(hidden.AsSpan(t * h, h), normed);
            TensorPrimitives.Add(mean, normed, mean);
        }

        TensorPrimitives.Multiply(mean, 1f / ids.Length, mean);
        return (mean, normed.ToArray());
    }

    private static void AssertClose(float[] expected, float[] actual, float tolerance)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (var i = 0; i < expected.Length; i++)
        {
            Assert.True(Math.Abs(expected[i] - actual[i]) <= tolerance, $"element {i}: expected {expected[i]}, got {actual[i]}");
        }
    }
}
