using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.ML;
using Microsoft.ML.Data;
using Petals.Client;
using Petals.Hosting;
using Petals.Models;
using Petals.Testing;
using Petals.Testing.Discovery;
using Petals.Testing.Transport;

namespace Petals.ML.Tests;

/// <summary>A swarm reference (model id, DHT nodes) fits, saves and reloads; the connector finds the servers through discovery.</summary>
public sealed class PetalsSwarmTests
{
    public sealed class TextRow
    {
        public string Text { get; set; } = "";
    }

    private static readonly string[] Texts = ["Lily saw a big dog in the park.", "Tom ate a red apple.", "The ball was very shiny."];

    [Fact]
    public async Task An_embedding_over_a_swarm_equals_the_local_one_and_its_reloaded_file_finds_the_swarm_again()
    {
        PetalsModels.RequireSharedModel();
        var ct = TestContext.Current.CancellationToken;
        var path = PetalsModels.ModelPath;
        var network = new MemoryTransport();
        var discovery = new MemoryDiscoveryNetwork();
        var servers = new List<ServiceProvider>();
        try
        {
            foreach (var (start, end) in new[] { (0, 3), (3, 5) })
            {
                var services = new ServiceCollection();
                services.AddPetalsServer(o =>
                {
                    o.ModelPath = path;
                    o.Blocks = new BlockRange(start, end);
                    o.ListenAddress = $"mem://ml-{start}-{end}";
                }).UseCpuExecutor(o => o.ThreadCount = 1).UseMemoryTransport(network).UseDiscovery(_ => discovery.CreatePeer($"ml-{start}-{end}"));
                var provider = services.BuildServiceProvider();
                servers.Add(provider);
                foreach (var hosted in provider.GetServices<IHostedService>())
                {
                    await hosted.StartAsync(ct);
                }
            }

            var modelId = servers[0].GetRequiredService<IPetalsServer>().ModelId;
            var swarmModels = 0;
            PetalsModelConnector connector = async (reference, token) =>
            {
                Assert.Equal(PetalsModelLocation.Swarm, reference.Location);
                Interlocked.Increment(ref swarmModels);
                // The in-memory discovery stands in for joining the DHT through reference.Peers.
                return await RemoteModel.ConnectAsync(reference.ModelPath, network, discovery.CreatePeer(), modelId: reference.ModelId, cancellationToken: token);
            };
            var swarm = PetalsModelReference.Swarm(path, ["tcp://127.0.0.1:31340"], modelId);
            using var dir = TestData.CreateTempDirectory();
            var file = Path.Combine(dir.Path, "swarm.zip");
            List<float[]> fitted;
            {
                var ml = new MLContext(seed: 1);
                using var petals = ml.UsePetals(connector);
                var data = ml.Data.LoadFromEnumerable(Texts.Select(t => new TextRow { Text = t }).ToList());
                var transformer = ml.Transforms.Text.PetalsEmbed("Features", "Text", swarm).Fit(data);
                fitted = Vectors(transformer.Transform(data));
                ml.Model.Save(transformer, data.Schema, file);
            }

            using var local = PetalsModels.LoadLocal();
            for (var i = 0; i < Texts.Length; i++)
            {
                var expected = await local.EmbedAsync(local.EncodePrompt(Texts[i]), cancellationToken: ct);
                Assert.Equal(expected, fitted[i], (a, b) => Math.Abs(a - b) <= 1e-4f);
            }

            var loadedContext = new MLContext(seed: 2);
            using var loadedPetals = loadedContext.UsePetals(connector);
            var loaded = loadedContext.Model.Load(file, out _);
            var reloaded = Vectors(loaded.Transform(loadedContext.Data.LoadFromEnumerable(Texts.Select(t => new TextRow { Text = t }).ToList())));
            Assert.Equal(fitted, reloaded);
            Assert.Equal(2, swarmModels);
        }
        finally
        {
            foreach (var provider in servers)
            {
                await provider.DisposeAsync();
            }
        }
    }

    private static List<float[]> Vectors(IDataView view) =>
        view.GetColumn<VBuffer<float>>("Features").Select(v => v.DenseValues().ToArray()).ToList();
}
