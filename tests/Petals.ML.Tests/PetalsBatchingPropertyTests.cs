using FsCheck;
using FsCheck.Fluent;
using Microsoft.ML;
using Microsoft.ML.Data;

namespace Petals.ML.Tests;

/// <summary>Batching is invisible in the output: any rows, batch size and concurrency give each row its own embedding, in order.</summary>
public sealed class PetalsBatchingPropertyTests
{
    private static readonly string[] Pool = ["", "Tom ate a red apple.", "The dog ran.", "One day, Sue had a little cat.", "Lily saw a big bird in the park."];

    public sealed class TextRow
    {
        public string Text { get; set; } = "";
    }

    [Fact]
    public void Any_rows_batch_size_and_concurrency_give_every_row_its_own_embedding_in_order()
    {
        PetalsModels.RequireSharedModel();
        var ml = new MLContext(seed: 1);
        using var petals = ml.UsePetals(PetalsModels.Connector());
        using var model = PetalsModels.LoadLocal();
        var expected = Pool.ToDictionary(t => t, t => model.EmbedAsync(model.EncodePrompt(t)).GetAwaiter().GetResult());
        var cases = Gen.Zip(Gen.ListOf(Gen.Choose(0, Pool.Length - 1)).Select(l => l.Take(12).ToArray()), Gen.Zip(Gen.Choose(1, 6), Gen.Choose(1, 4)));
        Prop.ForAll(cases.ToArbitrary(), c =>
        {
            var (rows, (batchSize, concurrency)) = c;
            var texts = rows.Select(i => Pool[i]).ToArray();
            var data = ml.Data.LoadFromEnumerable(texts.Select(t => new TextRow { Text = t }).ToList());
            var options = new PetalsEmbeddingOptions { BatchSize = batchSize, MaxConcurrency = concurrency };
            var vectors = ml.Transforms.Text.PetalsEmbed("Features", "Text", PetalsModels.LocalReference, options).Fit(data).Transform(data)
                .GetColumn<VBuffer<float>>("Features").Select(v => v.DenseValues().ToArray()).ToList();
            return vectors.Count == texts.Length && texts.Select((t, i) => expected[t].AsSpan().SequenceEqual(vectors[i])).All(ok => ok);
        }).Check(Config.QuickThrowOnFailure.WithMaxTest(30));
    }
}
