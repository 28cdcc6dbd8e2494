using Microsoft.ML;
using Microsoft.ML.Data;
using Petals.Generation;

namespace Petals.ML.Tests;

/// <summary>PetalsEmbed: schema checks as ML.NET's own transforms make them, vectors equal to the model's, lazy batched cursors.</summary>
public sealed class PetalsEmbedTests
{
    private static readonly string[] Texts =
    [
        "Lily saw a big dog in the park.",
        "Tom ate a red apple.",
        "The ball was very shiny.",
        "One day, Sue had a little cat.",
        "Ben liked the soft bread a lot.",
        "Max found a new kite near the house.",
        "There was a funny frog in the garden.",
    ];

    public sealed class TextRow
    {
        public string? Text { get; set; }
    }

    public sealed class NumberRow
    {
        public float Text { get; set; }
    }

    private static IDataView Rows(MLContext ml, IEnumerable<string?> texts) => ml.Data.LoadFromEnumerable(texts.Select(t => new TextRow { Text = t }).ToList());

    private static List<float[]> Column(IDataView view, string name) =>
        view.GetColumn<VBuffer<float>>(name).Select(v => v.DenseValues().ToArray()).ToList();

    [Fact]
    public async Task Vectors_have_the_models_hidden_size_in_the_schema_and_equal_the_models_own_embeddings()
    {
        PetalsModels.RequireSharedModel();
        var ml = new MLContext(seed: 1);
        using var petals = ml.UsePetals(PetalsModels.Connector());
        var data = Rows(ml, Texts);
        var estimator = ml.Transforms.Text.PetalsEmbed("Features", "Text", PetalsModels.LocalReference, new PetalsEmbeddingOptions { BatchSize = 3 });

        var shape = estimator.GetOutputSchema(MLNetInternals.ShapeOf(data.Schema)).Single(c => c.Name == "Features");
        Assert.Equal(SchemaShape.Column.VectorKind.Vector, shape.Kind);
        Assert.Equal(NumberDataViewType.Single, shape.ItemType);

        var transformer = estimator.Fit(data);
        var output = transformer.Transform(data);
        Assert.Equal(new VectorDataViewType(NumberDataViewType.Single, 64), output.Schema["Features"].Type);
        Assert.Equal(TextDataViewType.Instance, output.Schema["Text"].Type);

        using var model = PetalsModels.LoadLocal();
        var actual = Column(output, "Features");
        Assert.Equal(Texts.Length, actual.Count);
        for (var i = 0; i < Texts.Length; i++)
        {
            var expected = await model.EmbedAsync(model.EncodePrompt(Texts[i]), EmbeddingPooling.Mean, TestContext.Current.CancellationToken);
            Assert.Equal(expected, actual[i]);
        }

        // The input columns pass through unchanged.
        Assert.Equal(Texts, output.GetColumn<string>("Text").ToArray());
    }

    [Fact]
    public async Task Last_token_pooling_gives_the_models_last_token_embedding()
    {
        PetalsModels.RequireSharedModel();
        var ml = new MLContext(seed: 1);
        using var petals = ml.UsePetals(PetalsModels.Connector());
        var data = Rows(ml, Texts.Take(2));
        var output = ml.Transforms.Text.PetalsEmbed("Features", "Text", PetalsModels.LocalReference, new PetalsEmbeddingOptions { Pooling = EmbeddingPooling.LastToken }).Fit(data).Transform(data);
        using var model = PetalsModels.LoadLocal();
        var expected = await model.EmbedAsync(model.EncodePrompt(Texts[1]), EmbeddingPooling.LastToken, TestContext.Current.CancellationToken);
        Assert.Equal(expected, Column(output, "Features")[1]);
    }

    [Fact]
    public void A_cursor_computes_nothing_until_it_moves_then_a_batch_at_a_time_with_bounded_concurrency()
    {
        PetalsModels.RequireSharedModel();
        var ml = new MLContext(seed: 1);
        CountingBlocks? blocks = null;
        using var petals = ml.UsePetals((reference, ct) => ValueTask.FromResult(CountingBlocks.Wrap(PetalsModels.LoadLocal(), out blocks)));
        var data = Rows(ml, Texts);
        var transformer = ml.Transforms.Text.PetalsEmbed("Features", "Text", PetalsModels.LocalReference, new PetalsEmbeddingOptions { BatchSize = 3, MaxConcurrency = 2 }).Fit(data);
        Assert.NotNull(blocks);
        var output = transformer.Transform(data);
        Assert.Equal(0, blocks.Opened);

        // A cursor without the vector column never calls the model.
        using (var textOnly = output.GetRowCursor([output.Schema["Text"]]))
        {
            while (textOnly.MoveNext())
            {
            }
        }

        Assert.Equal(0, blocks.Opened);
        using var cursor = output.GetRowCursor(output.Schema);
        var getter = cursor.GetGetter<VBuffer<float>>(output.Schema["Features"]);
        var opened = new List<int>();
        while (cursor.MoveNext())
        {
            opened.Add(blocks.Opened);
        }

        // Rows 0-2 are computed when the cursor reaches row 0, rows 3-5 at row 3, row 6 at row 6.
        Assert.Equal([3, 3, 3, 6, 6, 6, 7], opened);
        Assert.InRange(blocks.MaxOpen, 1, 2);
    }

    [Fact]
    public void An_output_named_as_its_input_hides_the_text_column_and_still_reads_the_text()
    {
        PetalsModels.RequireSharedModel();
        var ml = new MLContext(seed: 1);
        using var petals = ml.UsePetals(PetalsModels.Connector());
        var data = Rows(ml, Texts.Take(3));
        var estimator = ml.Transforms.Text.PetalsEmbed("Text", null, PetalsModels.LocalReference);
        Assert.Equal(SchemaShape.Column.VectorKind.Vector, Assert.Single(estimator.GetOutputSchema(MLNetInternals.ShapeOf(data.Schema)), c => c.Name == "Text").Kind);
        var output = estimator.Fit(data).Transform(data);
        Assert.Equal(new VectorDataViewType(NumberDataViewType.Single, 64), output.Schema["Text"].Type);
        var byName = Column(output, "Text");
        var separate = Column(ml.Transforms.Text.PetalsEmbed("Features", "Text", PetalsModels.LocalReference).Fit(data).Transform(data), "Features");
        Assert.Equal(separate, byName);
    }

    [Fact]
    public void Empty_and_missing_texts_embed_the_BOS_token_alone()
    {
        PetalsModels.RequireSharedModel();
        var ml = new MLContext(seed: 1);
        using var petals = ml.UsePetals(PetalsModels.Connector());
        var data = Rows(ml, ["", null, "Tom ate a red apple."]);
        var vectors = Column(ml.Transforms.Text.PetalsEmbed("Features", "Text", PetalsModels.LocalReference).Fit(data).Transform(data), "Features");
        Assert.All(vectors, v => Assert.All(v, x => Assert.True(float.IsFinite(x))));
        Assert.Equal(vectors[0], vectors[1]);
        Assert.NotEqual(vectors[0], vectors[2]);
    }

    [Fact]
    public void A_text_longer_than_the_context_fails_naming_the_row_and_the_column()
    {
        PetalsModels.RequireSharedModel();
        var ml = new MLContext(seed: 1);
        using var petals = ml.UsePetals(PetalsModels.Connector());
        var data = Rows(ml, ["Tom ate a red apple.", string.Join(' ', Enumerable.Repeat("The dog ran.", 300))]);
        var output = ml.Transforms.Text.PetalsEmbed("Features", "Text", PetalsModels.LocalReference, new PetalsEmbeddingOptions { BatchSize = 1 }).Fit(data).Transform(data);
        var e = Assert.Throws<InvalidOperationException>(() => Column(output, "Features"));
        Assert.StartsWith("The Petals embedding of row 1 (column 'Text') failed: ", e.Message, StringComparison.Ordinal);
        Assert.IsType<ArgumentException>(e.InnerException);
    }

    [Fact]
    public void A_prediction_engine_embeds_row_by_row_like_the_batched_transform()
    {
        PetalsModels.RequireSharedModel();
        var ml = new MLContext(seed: 1);
        using var petals = ml.UsePetals(PetalsModels.Connector());
        var data = Rows(ml, Texts);
        var transformer = ml.Transforms.Text.PetalsEmbed("Features", "Text", PetalsModels.LocalReference).Fit(data);
        Assert.True(transformer.IsRowToRowMapper);
        var batched = Column(transformer.Transform(data), "Features");
        var engine = ml.Model.CreatePredictionEngine<TextRow, EmbeddingRow>(transformer);
        Assert.Equal(batched[0], engine.Predict(new TextRow { Text = Texts[0] }).Features);
        Assert.Equal(batched[4], engine.Predict(new TextRow { Text = Texts[4] }).Features);
    }

    public sealed class EmbeddingRow
    {
        public string? Text { get; set; }

        [VectorType(64)]
        public float[] Features { get; set; } = [];
    }

    [Fact]
    public void A_non_text_column_is_refused_as_MLNET_refuses_it_when_fitting_and_when_transforming()
    {
        PetalsModels.RequireSharedModel();
        var ml = new MLContext(seed: 1);
        using var petals = ml.UsePetals(PetalsModels.Connector());
        var numbers = ml.Data.LoadFromEnumerable([new NumberRow { Text = 1 }]);
        var estimator = ml.Transforms.Text.PetalsEmbed("Features", "Text", PetalsModels.LocalReference);
        const string Expected = "Schema mismatch for input column 'Text': expected String, got Single (Parameter 'inputSchema')";

        // The same exception type, message and parameter as ML.NET's FeaturizeText (which also accepts vectors of text).
        var theirs = Assert.Throws<ArgumentOutOfRangeException>(() => ml.Transforms.Text.FeaturizeText("Features", "Text").Fit(numbers));
        Assert.StartsWith("Schema mismatch for input column 'Text': expected String", theirs.Message, StringComparison.Ordinal);

        Assert.Equal(Expected, Assert.Throws<ArgumentOutOfRangeException>(() => estimator.Fit(numbers)).Message);
        Assert.Equal(Expected, Assert.Throws<ArgumentOutOfRangeException>(() => estimator.GetOutputSchema(MLNetInternals.ShapeOf(numbers.Schema))).Message);

        var texts = Rows(ml, Texts);
        var transformer = estimator.Fit(texts);
        Assert.Equal(Expected, Assert.Throws<ArgumentOutOfRangeException>(() => transformer.Transform(numbers)).Message);
        Assert.Equal(Expected, Assert.Throws<ArgumentOutOfRangeException>(() => transformer.GetOutputSchema(numbers.Schema)).Message);

        var vectors = ml.Transforms.Text.TokenizeIntoWords("Words", "Text").Fit(texts).Transform(texts);
        var vectorError = Assert.Throws<ArgumentOutOfRangeException>(() => ml.Transforms.Text.PetalsEmbed("Features", "Words", PetalsModels.LocalReference).GetOutputSchema(MLNetInternals.ShapeOf(vectors.Schema)));
        Assert.Equal("Schema mismatch for input column 'Words': expected String, got VarVector<String> (Parameter 'inputSchema')", vectorError.Message);
    }

    [Fact]
    public void A_missing_column_is_refused_as_MLNET_refuses_it()
    {
        PetalsModels.RequireSharedModel();
        var ml = new MLContext(seed: 1);
        using var petals = ml.UsePetals(PetalsModels.Connector());
        var data = Rows(ml, Texts);
        var estimator = ml.Transforms.Text.PetalsEmbed("Features", "Story", PetalsModels.LocalReference);
        const string Expected = "Could not find input column 'Story' (Parameter 'inputSchema')";
        Assert.Equal(Expected, Assert.Throws<ArgumentOutOfRangeException>(() => ml.Transforms.Text.FeaturizeText("Features", "Story").Fit(data)).Message);
        Assert.Equal(Expected, Assert.Throws<ArgumentOutOfRangeException>(() => estimator.Fit(data)).Message);
        Assert.Equal(Expected, Assert.Throws<ArgumentOutOfRangeException>(() => estimator.GetOutputSchema(MLNetInternals.ShapeOf(data.Schema))).Message);
    }

    [Fact]
    public void Bad_options_and_references_are_refused_with_the_field_at_fault()
    {
        var ml = new MLContext(seed: 1);
        var text = ml.Transforms.Text;
        var reference = PetalsModelReference.Local("model.gguf");
        Assert.Equal("BatchSize", Assert.Throws<ArgumentOutOfRangeException>(() => text.PetalsEmbed("F", "T", reference, new PetalsEmbeddingOptions { BatchSize = 0 })).ParamName);
        Assert.Equal("BatchSize", Assert.Throws<ArgumentOutOfRangeException>(() => text.PetalsEmbed("F", "T", reference, new PetalsEmbeddingOptions { BatchSize = 4097 })).ParamName);
        Assert.Equal("MaxConcurrency", Assert.Throws<ArgumentOutOfRangeException>(() => text.PetalsEmbed("F", "T", reference, new PetalsEmbeddingOptions { MaxConcurrency = 0 })).ParamName);
        Assert.Equal("Pooling", Assert.Throws<ArgumentOutOfRangeException>(() => text.PetalsEmbed("F", "T", reference, new PetalsEmbeddingOptions { Pooling = (EmbeddingPooling)7 })).ParamName);
        Assert.Throws<ArgumentException>(() => text.PetalsEmbed(" ", "T", reference));
        Assert.Equal("ModelPath", Assert.Throws<ArgumentException>(() => text.PetalsEmbed("F", "T", new PetalsModelReference { ModelPath = "" })).ParamName);
        var noPeers = Assert.Throws<ArgumentException>(() => text.PetalsEmbed("F", "T", PetalsModelReference.FixedPeers("model.gguf")));
        Assert.StartsWith("A FixedPeers model reference needs at least one peer address.", noPeers.Message, StringComparison.Ordinal);
        Assert.Equal("Peers", Assert.Throws<ArgumentException>(() => text.PetalsEmbed("F", "T", reference with { Peers = ["tcp://127.0.0.1:1"] })).ParamName);
        Assert.Equal("ModelId", Assert.Throws<ArgumentException>(() => text.PetalsEmbed("F", "T", reference with { ModelId = "m" })).ParamName);
    }

    [Fact]
    public void Fitting_without_a_connector_says_to_register_one()
    {
        var ml = new MLContext(seed: 1);
        var data = Rows(ml, Texts);
        var e = Assert.Throws<InvalidOperationException>(() => ml.Transforms.Text.PetalsEmbed("Features", "Text", PetalsModelReference.Local("model.gguf")).Fit(data));
        Assert.Equal(
            "No Petals connector is registered with this MLContext, so the model model.gguf (local blocks) cannot be reached: call " +
            "mlContext.UsePetals(connector) first (the connector says how to load or connect to a model reference).",
            e.Message);
    }

    [Fact]
    public async Task A_dead_peer_fails_the_fit_naming_the_reference_and_the_transport_error()
    {
        PetalsModels.RequireSharedModel();
        var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        var port = ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        var transport = new Petals.Transport.Tcp.TcpTransport();
        var ml = new MLContext(seed: 1);
        using var petals = ml.UsePetals(PetalsModels.Connector(transport));
        var data = Rows(ml, Texts);
        var reference = PetalsModelReference.FixedPeers(PetalsModels.ModelPath, $"tcp://127.0.0.1:{port}");
        var e = Assert.Throws<InvalidOperationException>(() => ml.Transforms.Text.PetalsEmbed("Features", "Text", reference).Fit(data));
        Assert.StartsWith($"Petals.ML could not reach the model {PetalsModels.ModelPath} (fixed peers tcp://127.0.0.1:{port}): ", e.Message, StringComparison.Ordinal);
        var transportError = Assert.IsType<Petals.Transport.TransportException>(e.InnerException);
        Assert.Equal(Petals.Transport.TransportErrorKind.ConnectionRefused, transportError.Kind);
    }
}
