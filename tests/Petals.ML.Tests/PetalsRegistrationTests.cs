using Microsoft.ML;
using Microsoft.ML.Data;

namespace Petals.ML.Tests;

/// <summary>UsePetals: one connector per context, one connection per reference, models disposed with the registration.</summary>
public sealed class PetalsRegistrationTests
{
    public sealed class TextRow
    {
        public string Text { get; set; } = "";
    }

    private sealed class DisposeFlag : IDisposable
    {
        public int Disposals { get; private set; }

        public void Dispose() => Disposals++;
    }

    [Fact]
    public void A_context_connects_each_reference_once_disposes_its_models_with_the_registration_and_then_refuses_to_compute()
    {
        PetalsModels.RequireSharedModel();
        var ml = new MLContext(seed: 1);
        var connections = 0;
        var flag = new DisposeFlag();
        var petals = ml.UsePetals((reference, ct) =>
        {
            connections++;
            var local = PetalsModels.LoadLocal();
            return ValueTask.FromResult(new Petals.Generation.CausalLanguageModel(local.Head, local.Blocks, local.Tokenizer, local, flag));
        });
        var data = ml.Data.LoadFromEnumerable([new TextRow { Text = "Tom ate a red apple." }]);
        var embed = ml.Transforms.Text.PetalsEmbed("Features", "Text", PetalsModels.LocalReference).Fit(data);
        var generate = ml.Transforms.Text.PetalsGenerate("Story", "Text", PetalsModels.LocalReference, new PetalsGenerationOptions { MaxNewTokens = 4 }).Fit(data);
        Assert.Single(embed.Transform(data).GetColumn<VBuffer<float>>("Features"));
        Assert.Single(generate.Transform(data).GetColumn<string>("Story"));
        Assert.Equal(1, connections);

        // One live registration per context.
        var second = Assert.Throws<InvalidOperationException>(() => ml.UsePetals((r, ct) => throw new IOException()));
        Assert.Equal("This MLContext already has a Petals connector; dispose its registration before registering another.", second.Message);

        petals.Dispose();
        Assert.Equal(1, flag.Disposals);
        var e = Assert.Throws<InvalidOperationException>(() => embed.Transform(data).GetColumn<VBuffer<float>>("Features").ToList());
        Assert.StartsWith("No Petals connector is registered with this MLContext", e.Message, StringComparison.Ordinal);

        // A new registration reconnects.
        using var again = ml.UsePetals((reference, ct) => { connections++; return ValueTask.FromResult(PetalsModels.LoadLocal()); });
        Assert.Single(embed.Transform(data).GetColumn<VBuffer<float>>("Features"));
        Assert.Equal(2, connections);
    }

    [Fact]
    public void A_failed_connection_is_not_cached()
    {
        PetalsModels.RequireSharedModel();
        var ml = new MLContext(seed: 1);
        var attempts = 0;
        using var petals = ml.UsePetals((reference, ct) =>
        {
            if (++attempts == 1)
            {
                throw new IOException("not yet");
            }

            return ValueTask.FromResult(PetalsModels.LoadLocal());
        });
        var data = ml.Data.LoadFromEnumerable([new TextRow { Text = "Tom ate a red apple." }]);
        var estimator = ml.Transforms.Text.PetalsEmbed("Features", "Text", PetalsModels.LocalReference);
        var e = Assert.Throws<InvalidOperationException>(() => estimator.Fit(data));
        Assert.Equal($"Petals.ML could not reach the model {PetalsModels.ModelPath} (local blocks): not yet", e.Message);
        Assert.IsType<IOException>(e.InnerException);
        Assert.Single(estimator.Fit(data).Transform(data).GetColumn<VBuffer<float>>("Features"));
        Assert.Equal(2, attempts);
    }
}
