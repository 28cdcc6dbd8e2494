using Microsoft.ML;
using Microsoft.ML.Data;
using Petals.Generation;

namespace Petals.ML.Tests;

/// <summary>PetalsGenerate: a text column of what the model writes after each row, as the model's own generation writes it.</summary>
public sealed class PetalsGenerateTests
{
    private static readonly string[] Prompts = ["Once upon a time", "Lily saw a big dog", "Tom ate a red apple", "The sun was"];

    public sealed class PromptRow
    {
        public string? Prompt { get; set; }
    }

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static IDataView Rows(MLContext ml, IEnumerable<string?> prompts) => ml.Data.LoadFromEnumerable(prompts.Select(p => new PromptRow { Prompt = p }).ToList());

    [Fact]
    public async Task Greedy_text_equals_the_models_generation_and_stops_at_MaxNewTokens_or_the_end_of_text()
    {
        PetalsModels.RequireSharedModel();
        var ml = new MLContext(seed: 1);
        CountingBlocks? blocks = null;
        using var petals = ml.UsePetals((reference, ct) => ValueTask.FromResult(CountingBlocks.Wrap(PetalsModels.LoadLocal(), out blocks)));
        var data = Rows(ml, Prompts);
        var estimator = ml.Transforms.Text.PetalsGenerate("Story", "Prompt", PetalsModels.LocalReference, new PetalsGenerationOptions { MaxNewTokens = 20, BatchSize = 3, MaxConcurrency = 2 });
        var shape = estimator.GetOutputSchema(MLNetInternals.ShapeOf(data.Schema)).Single(c => c.Name == "Story");
        Assert.Equal(SchemaShape.Column.VectorKind.Scalar, shape.Kind);
        Assert.Equal(TextDataViewType.Instance, shape.ItemType);
        var output = estimator.Fit(data).Transform(data);
        Assert.Equal(TextDataViewType.Instance, output.Schema["Story"].Type);
        var stories = output.GetColumn<string>("Story").ToList();
        Assert.NotNull(blocks);
        Assert.Equal(Prompts.Length, blocks.Opened);
        Assert.InRange(blocks.MaxOpen, 1, 2);

        using var model = PetalsModels.LoadLocal();
        for (var i = 0; i < Prompts.Length; i++)
        {
            var expected = string.Concat(await model.GenerateTextAsync(Prompts[i], new GenerationOptions { MaxNewTokens = 20 }, Ct).ToListAsync(Ct));
            Assert.Equal(expected, stories[i]);
            Assert.NotEmpty(stories[i]);
        }
    }

    [Fact]
    public void Seeded_sampling_gives_each_row_the_same_text_whatever_its_batch()
    {
        PetalsModels.RequireSharedModel();
        var ml = new MLContext(seed: 1);
        using var petals = ml.UsePetals(PetalsModels.Connector());
        var sampling = new SamplingOptions { Temperature = 0.9, TopK = 20, Seed = 7 };
        string[] Generate(int batch) => [.. ml.Transforms.Text.PetalsGenerate("Story", "Prompt", PetalsModels.LocalReference, new PetalsGenerationOptions { MaxNewTokens = 16, Sampling = sampling, BatchSize = batch })
            .Fit(Rows(ml, Prompts)).Transform(Rows(ml, Prompts)).GetColumn<string>("Story")];
        var one = Generate(1);
        Assert.Equal(one, Generate(4));
        var greedy = ml.Transforms.Text.PetalsGenerate("Story", "Prompt", PetalsModels.LocalReference, new PetalsGenerationOptions { MaxNewTokens = 16 })
            .Fit(Rows(ml, Prompts)).Transform(Rows(ml, Prompts)).GetColumn<string>("Story").ToArray();
        Assert.NotEqual(greedy, one);
    }

    [Fact]
    public void A_non_text_prompt_column_and_bad_options_are_refused()
    {
        PetalsModels.RequireSharedModel();
        var ml = new MLContext(seed: 1);
        using var petals = ml.UsePetals(PetalsModels.Connector());
        var numbers = ml.Data.LoadFromEnumerable([new { Prompt = 3.0 }]);
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => ml.Transforms.Text.PetalsGenerate("Story", "Prompt", PetalsModels.LocalReference).Fit(numbers));
        Assert.Equal("Schema mismatch for input column 'Prompt': expected String, got Double (Parameter 'inputSchema')", e.Message);
        var text = ml.Transforms.Text;
        Assert.Equal("MaxNewTokens", Assert.Throws<ArgumentOutOfRangeException>(() => text.PetalsGenerate("S", "P", PetalsModels.LocalReference, new PetalsGenerationOptions { MaxNewTokens = 0 })).ParamName);
        Assert.Equal("BatchSize", Assert.Throws<ArgumentOutOfRangeException>(() => text.PetalsGenerate("S", "P", PetalsModels.LocalReference, new PetalsGenerationOptions { BatchSize = 0 })).ParamName);
        Assert.ThrowsAny<ArgumentException>(() => text.PetalsGenerate("S", "P", PetalsModels.LocalReference, new PetalsGenerationOptions { Sampling = new SamplingOptions { TopP = 2 } }));
    }

    [Fact]
    public void A_prompt_that_does_not_fit_the_context_fails_naming_its_row()
    {
        PetalsModels.RequireSharedModel();
        var ml = new MLContext(seed: 1);
        using var petals = ml.UsePetals(PetalsModels.Connector());
        var data = Rows(ml, ["Once upon a time", string.Join(' ', Enumerable.Repeat("The dog ran.", 300))]);
        var output = ml.Transforms.Text.PetalsGenerate("Story", "Prompt", PetalsModels.LocalReference, new PetalsGenerationOptions { MaxNewTokens = 4 }).Fit(data).Transform(data);
        var e = Assert.Throws<InvalidOperationException>(() => output.GetColumn<string>("Story").ToList());
        Assert.StartsWith("The Petals generation of row 1 (column 'Prompt') failed: ", e.Message, StringComparison.Ordinal);
    }
}
