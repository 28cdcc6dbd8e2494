using System.IO.Compression;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.ML;
using Microsoft.ML.Data;
using Petals.Backends.Cpu;
using Petals.Hosting;
using Petals.Models;
using Petals.Testing;
using Petals.Transport.Tcp;

namespace Petals.ML.Tests;

/// <summary>
/// Saving and loading with the ML.NET model file: the file records the model reference (not the weights), and a context
/// with a connector loads it back into transformers that reconnect and compute the same values.
/// </summary>
public sealed class PetalsModelFileTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromMinutes(2);

    private static readonly string[] Texts = ["Lily saw a big dog in the park.", "Tom ate a red apple.", "", "The ball was very shiny."];

    public sealed class TextRow
    {
        public string? Text { get; set; }
    }

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static IDataView Rows(MLContext ml) => ml.Data.LoadFromEnumerable(Texts.Select(t => new TextRow { Text = t }).ToList());

    private static List<float[]> Vectors(IDataView view) =>
        view.GetColumn<VBuffer<float>>("Features").Select(v => v.DenseValues().ToArray()).ToList();

    [Fact]
    public void An_embedding_saved_and_loaded_in_another_context_reconnects_and_gives_the_same_vectors()
    {
        PetalsModels.RequireSharedModel();
        using var dir = TestData.CreateTempDirectory();
        var file = Path.Combine(dir.Path, "embed.zip");
        List<float[]> before;
        DataViewSchema schema;
        {
            var ml = new MLContext(seed: 1);
            using var petals = ml.UsePetals(PetalsModels.Connector());
            var data = Rows(ml);
            var pipeline = ml.Transforms.Text.PetalsEmbed("Features", "Text", PetalsModels.LocalReference, new PetalsEmbeddingOptions { BatchSize = 3, MaxConcurrency = 2 })
                .Append(ml.Transforms.NormalizeMinMax("Normalized", "Features"));
            var model = pipeline.Fit(data);
            before = Vectors(model.Transform(data));
            ml.Model.Save(model, data.Schema, file);
            schema = data.Schema;
        }

        // The file holds the reference, not the weights: it is a few kilobytes, and names the model file.
        Assert.InRange(new FileInfo(file).Length, 1, 64 * 1024);
        Assert.True(new FileInfo(PetalsModels.ModelPath).Length > 512 * 1024);
        using (var zip = ZipFile.OpenRead(file))
        {
            var entry = Assert.Single(zip.Entries, e => ReadAll(e).Contains(PetalsModels.ModelPath, StringComparison.Ordinal));
            Assert.Equal("TransformerChain/Transform_000/Model.key", entry.FullName);
            Assert.Contains("\"Location\":\"Local\"", ReadAll(entry), StringComparison.Ordinal);
        }

        var loadedContext = new MLContext(seed: 2);
        using var loadedPetals = loadedContext.UsePetals(PetalsModels.Connector());
        var loaded = loadedContext.Model.Load(file, out var loadedSchema);
        Assert.Equal(schema.Select(c => c.Name), loadedSchema.Select(c => c.Name));
        var output = loaded.Transform(Rows(loadedContext));
        Assert.Equal(new VectorDataViewType(NumberDataViewType.Single, 64), output.Schema["Features"].Type);
        Assert.Equal(before, Vectors(output));
        Assert.Equal(4, output.GetColumn<VBuffer<float>>("Normalized").Count());
    }

    [Fact]
    public async Task A_generation_saved_and_loaded_gives_the_same_text_as_the_model()
    {
        PetalsModels.RequireSharedModel();
        using var dir = TestData.CreateTempDirectory();
        var file = Path.Combine(dir.Path, "generate.zip");
        var options = new PetalsGenerationOptions { MaxNewTokens = 12, BatchSize = 2 };
        {
            var ml = new MLContext(seed: 1);
            using var petals = ml.UsePetals(PetalsModels.Connector());
            var data = Rows(ml);
            var model = ml.Transforms.Text.PetalsGenerate("Story", "Text", PetalsModels.LocalReference, options).Fit(data);
            ml.Model.Save(model, data.Schema, file);
        }

        var loadedContext = new MLContext(seed: 2);
        using var loadedPetals = loadedContext.UsePetals(PetalsModels.Connector());
        var loaded = loadedContext.Model.Load(file, out _);
        var output = loaded.Transform(Rows(loadedContext));
        Assert.Equal(TextDataViewType.Instance, output.Schema["Story"].Type);
        var stories = output.GetColumn<string>("Story").ToList();
        using var local = PetalsModels.LoadLocal();
        for (var i = 0; i < Texts.Length; i++)
        {
            var expected = string.Concat(await local.GenerateTextAsync(Texts[i], new Petals.Generation.GenerationOptions { MaxNewTokens = 12 }, Ct).ToListAsync(Ct));
            Assert.Equal(expected, stories[i]);
            Assert.NotEmpty(stories[i]);
        }
    }

    [Fact]
    public void Loading_without_a_connector_fails_and_transforming_a_model_whose_peers_are_gone_names_them()
    {
        PetalsModels.RequireSharedModel();
        using var dir = TestData.CreateTempDirectory();
        var file = Path.Combine(dir.Path, "embed.zip");
        {
            var ml = new MLContext(seed: 1);
            using var petals = ml.UsePetals(PetalsModels.Connector());
            var data = Rows(ml);
            ml.Model.Save(ml.Transforms.Text.PetalsEmbed("Features", "Text", PetalsModels.LocalReference).Fit(data), data.Schema, file);
        }

        // Without UsePetals, ML.NET does not know the Petals loader and says which part of the file it could not load.
        var bare = new MLContext(seed: 2);
        var unknown = Assert.Throws<FormatException>(() => bare.Model.Load(file, out _));
        Assert.Equal("Couldn't load model: 'TransformerChain'", unknown.Message);

        // With a connector that cannot reach the model, loading works (it is lazy) and the first rows say why they fail.
        var broken = new MLContext(seed: 3);
        using var brokenPetals = broken.UsePetals((reference, ct) => throw new IOException("the model server is down"));
        var loaded = broken.Model.Load(file, out _);
        var e = Assert.Throws<InvalidOperationException>(() => Vectors(loaded.Transform(Rows(broken))));
        Assert.Equal($"Petals.ML could not reach the model {PetalsModels.ModelPath} (local blocks): the model server is down", e.Message);
    }

    [Fact]
    public async Task A_fixed_peer_embedding_saved_and_loaded_reconnects_to_the_server_and_fails_precisely_once_it_stops()
    {
        PetalsModels.RequireSharedModel();
        var path = PetalsModels.ModelPath;
        var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        builder.Services.AddPetalsServer(o =>
        {
            o.ModelPath = path;
            o.Blocks = new BlockRange(0, 5);
            o.ListenAddress = "tcp://127.0.0.1:0";
        }).UseCpuExecutor(o => o.ThreadCount = 1).UseTcpTransport();
        using var host = builder.Build();
        await host.StartAsync(Ct).WaitAsync(Bound, Ct);
        var address = host.Services.GetRequiredService<IPetalsServer>().LocalAddress.ToString();
        var transport = new TcpTransport();
        using var dir = TestData.CreateTempDirectory();
        var file = Path.Combine(dir.Path, "embed.zip");
        var reference = PetalsModelReference.FixedPeers(path, address);
        List<float[]> local;
        {
            var ml = new MLContext(seed: 1);
            using var petals = ml.UsePetals(PetalsModels.Connector(transport));
            var data = Rows(ml);
            local = Vectors(ml.Transforms.Text.PetalsEmbed("Features", "Text", PetalsModels.LocalReference).Fit(data).Transform(data));
            var remote = ml.Transforms.Text.PetalsEmbed("Features", "Text", reference).Fit(data);
            ml.Model.Save(remote, data.Schema, file);
        }

        var loadedContext = new MLContext(seed: 2);
        using (var loadedPetals = loadedContext.UsePetals(PetalsModels.Connector(transport)))
        {
            var loaded = loadedContext.Model.Load(file, out _);
            var remoteVectors = Vectors(loaded.Transform(Rows(loadedContext)));
            Assert.Equal(local.Count, remoteVectors.Count);
            for (var i = 0; i < local.Count; i++)
            {
                Assert.Equal(local[i], remoteVectors[i], (a, b) => Math.Abs(a - b) <= 1e-4f);
            }
        }

        await host.StopAsync(Ct).WaitAsync(Bound, Ct);
        var afterStop = new MLContext(seed: 3);
        using var afterStopPetals = afterStop.UsePetals(PetalsModels.Connector(transport));
        var stale = afterStop.Model.Load(file, out _);
        var e = Assert.Throws<InvalidOperationException>(() => Vectors(stale.Transform(Rows(afterStop))));
        Assert.StartsWith($"Petals.ML could not reach the model {path} (fixed peers {address}): ", e.Message, StringComparison.Ordinal);
        Assert.IsType<Petals.Transport.TransportException>(e.InnerException);
    }

    private static string ReadAll(ZipArchiveEntry entry)
    {
        using var reader = new StreamReader(entry.Open());
        return reader.ReadToEnd();
    }
}
