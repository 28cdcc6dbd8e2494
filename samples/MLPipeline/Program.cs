// An ML.NET pipeline over a Petals model: PetalsEmbed turns each sentence into the model's mean-pooled final hidden state,
// SDCA maximum entropy learns the three topics of Data/stories-topics.tsv from them, and the held-out accuracy is printed
// beside a bag-of-words pipeline (FeaturizeText, same trainer) trained on the same split. The fitted model is saved (it
// records how to reach the model, not its weights), loaded in a fresh MLContext and asked for one prediction.
// The blocks run in this process by default; --server starts a block server over TCP in this process and the pipeline
// reaches the model through it as fixed peers (a swarm reference would name DHT nodes instead).
// Usage: dotnet run --project samples/MLPipeline -c Release -- [MODEL.gguf|HF-DIR] [--server]
using System.Reflection;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.ML;
using Microsoft.ML.Data;
using Petals.Backends.Cpu;
using Petals.Client;
using Petals.Generation;
using Petals.Hosting;
using Petals.ML;
using Petals.Models;
using Petals.Transport;
using Petals.Transport.Tcp;

var modelPath = args.FirstOrDefault(a => !a.StartsWith("--", StringComparison.Ordinal))
    ?? Assembly.GetEntryAssembly()!.GetCustomAttributes<AssemblyMetadataAttribute>().Single(a => a.Key == "DefaultModel").Value!;

// The connector is the application's choice of executor and transport: Petals.ML itself references only the core.
var transport = new TcpTransport();
PetalsModelConnector connector = async (reference, ct) => reference.Location switch
{
    PetalsModelLocation.Local => CausalLanguageModel.LoadLocal(reference.ModelPath, new CpuBlockExecutorFactory()),
    PetalsModelLocation.FixedPeers => await RemoteModel.ConnectAsync(reference.ModelPath, transport, [.. reference.Peers.Select(PeerAddress.Parse)], cancellationToken: ct),
    _ => throw new NotSupportedException($"This sample does not join swarms ({reference})."),
};

IHost? server = null;
var reference = PetalsModelReference.Local(modelPath);
if (args.Contains("--server"))
{
    var builder = Host.CreateApplicationBuilder();
    builder.Logging.SetMinimumLevel(LogLevel.Warning);
    builder.Services.AddPetalsServer(o =>
    {
        o.ModelPath = modelPath;
        o.Blocks = new BlockRange(0, 5);
        o.ListenAddress = "tcp://127.0.0.1:0";
    }).UseCpuExecutor().UseTcpTransport();
    server = builder.Build();
    await server.StartAsync();
    var address = server.Services.GetRequiredService<IPetalsServer>().LocalAddress.ToString();
    reference = PetalsModelReference.FixedPeers(modelPath, address);
}

var (train, test) = ReadStories(Path.Combine(AppContext.BaseDirectory, "Data", "stories-topics.tsv"));
Console.WriteLine($"rows: {train.Count} train, {test.Count} test; topics: {string.Join(", ", train.Select(s => s.Label).Distinct().Order())}; model: {reference}");

var ml = new MLContext(seed: 16);
using (ml.UsePetals(connector))
{
    var trainView = ml.Data.LoadFromEnumerable(train);
    var testView = ml.Data.LoadFromEnumerable(test);
    var petals = Pipeline(ml, ml.Transforms.Text.PetalsEmbed("Features", "Text", reference, new PetalsEmbeddingOptions { BatchSize = 16, MaxConcurrency = 4 }));
    var bagOfWords = Pipeline(ml, ml.Transforms.Text.FeaturizeText("Features", "Text"));
    var petalsModel = petals.Fit(trainView);
    var petalsAccuracy = ml.MulticlassClassification.Evaluate(petalsModel.Transform(testView)).MicroAccuracy;
    var bagOfWordsAccuracy = ml.MulticlassClassification.Evaluate(bagOfWords.Fit(trainView).Transform(testView)).MicroAccuracy;
    Console.WriteLine($"held-out accuracy: Petals embeddings {petalsAccuracy:P1}, bag of words {bagOfWordsAccuracy:P1} (chance {1.0 / 3:P1})");

    var file = Path.Combine(Path.GetTempPath(), $"petals-mlpipeline-{Environment.ProcessId}.zip");
    ml.Model.Save(petalsModel, trainView.Schema, file);
    Console.WriteLine($"saved {new FileInfo(file).Length / 1024.0:F1} KB (the model reference, not its {new FileInfo(modelPath).Length / 1024.0:F0} KB of weights)");

    // A fresh context (as another process would have) loads the file; its connector reconnects on first use.
    var reloaded = new MLContext(seed: 1);
    using (reloaded.UsePetals(connector))
    {
        var loaded = reloaded.Model.Load(file, out _);
        var engine = reloaded.Model.CreatePredictionEngine<Story, Prediction>(loaded);
        const string Sentence = "Sue found a little bird in the garden.";
        Console.WriteLine($"reloaded model: \"{Sentence}\" -> {engine.Predict(new Story { Text = Sentence }).PredictedLabel}");
    }

    File.Delete(file);
}

if (server is not null)
{
    await server.StopAsync();
    server.Dispose();
}

return 0;

static IEstimator<ITransformer> Pipeline(MLContext ml, IEstimator<ITransformer> featurizer) =>
    ml.Transforms.Conversion.MapValueToKey("Label")
        .Append(featurizer)
        .Append(ml.Transforms.NormalizeMinMax("Features"))
        .AppendCacheCheckpoint(ml)
        .Append(ml.MulticlassClassification.Trainers.SdcaMaximumEntropy("Label", "Features"))
        .Append(ml.Transforms.Conversion.MapKeyToValue("PredictedLabel"));

static (List<Story> Train, List<Story> Test) ReadStories(string path)
{
    var train = new List<Story>();
    var test = new List<Story>();
    foreach (var line in File.ReadLines(path).Skip(1))
    {
        var fields = line.Split('\t');
        (fields[2] == "train" ? train : test).Add(new Story { Label = fields[0], Text = fields[1] });
    }

    return (train, test);
}

/// <summary>A labelled sentence.</summary>
internal sealed class Story
{
    public string Label { get; set; } = "";

    public string Text { get; set; } = "";
}

/// <summary>What the pipeline predicts.</summary>
internal sealed class Prediction
{
    public string PredictedLabel { get; set; } = "";
}
