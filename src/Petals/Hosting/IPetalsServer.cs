using Microsoft.Extensions.DependencyInjection;
using Petals.Models;
using Petals.Server;
using Petals.Transport;

namespace Petals.Hosting;

/// <summary>
/// The block server registered by <see cref="PetalsServiceCollectionExtensions.AddPetalsServer"/> (also its
/// <c>IHostedService</c>): what it serves and where, once started.
/// </summary>
/// <remarks>
/// Thread-safe. <see cref="LocalAddress"/>, <see cref="ModelId"/>, <see cref="Blocks"/> and <see cref="PeerId"/> need a
/// running server; the figures (<see cref="Throughput"/>, <see cref="GetStatistics"/>, <see cref="GetAnnouncerStatistics"/>)
/// stay readable after it stopped.
/// </remarks>
public interface IPetalsServer
{
    /// <summary>Whether the server is started and not stopped.</summary>
    bool IsRunning { get; }

    /// <summary>The address the server listens at (the port is the bound one when the listen address asked for 0).</summary>
    /// <exception cref="InvalidOperationException">The server is not running.</exception>
    PeerAddress LocalAddress { get; }

    /// <summary>The model id clients must name.</summary>
    /// <exception cref="InvalidOperationException">The server is not running.</exception>
    string ModelId { get; }

    /// <summary>The span served.</summary>
    /// <exception cref="InvalidOperationException">The server is not running.</exception>
    BlockRange Blocks { get; }

    /// <summary>The peer id the server introduces itself with (the discovery's when one is registered).</summary>
    /// <exception cref="InvalidOperationException">The server is not running.</exception>
    string PeerId { get; }

    /// <summary>
    /// How the executor holds the span's weights, as announced (<see cref="Discovery.ServerInfo.Quantization"/>): <c>"none"</c>,
    /// <c>"int8"</c>, <c>"nf4"</c>, <c>"q4_k+q6_k"</c>, … (<see cref="Execution.ExecutorWeightsInfo"/>; <c>"none"</c> when the
    /// executor reports nothing).
    /// </summary>
    /// <exception cref="InvalidOperationException">The server is not running.</exception>
    string Quantization { get; }

    /// <summary>
    /// The LoRA adapters the server holds for its span, by name (announced as <see cref="Discovery.ServerInfo.Adapters"/>):
    /// those of <see cref="PetalsServerOptions.AdapterDirectories"/> loaded for the span, and those given in
    /// <see cref="Server.BlockServerOptions.Adapters"/>. Empty when none (the default for implementations that hold none).
    /// </summary>
    /// <exception cref="InvalidOperationException">The server is not running.</exception>
    IReadOnlyDictionary<string, Execution.LoraWeights> Adapters => new Dictionary<string, Execution.LoraWeights>();

    /// <summary>The throughput measured at start and announced, or null without a discovery (nothing is announced); after the server stopped, the last one.</summary>
    /// <exception cref="InvalidOperationException">The server was never started.</exception>
    ThroughputMeasurement? Throughput { get; }

    /// <summary>The server's counters; after it stopped, the final ones.</summary>
    /// <returns>The statistics.</returns>
    /// <exception cref="InvalidOperationException">The server was never started.</exception>
    BlockServerStatistics GetStatistics();

    /// <summary>The announcer's counters, or null without a discovery; after the server stopped, the final ones.</summary>
    /// <returns>The statistics.</returns>
    /// <exception cref="InvalidOperationException">The server was never started.</exception>
    ServerAnnouncerStatistics? GetAnnouncerStatistics();

    /// <summary>
    /// How the span was chosen (by hand, or by the swarm with the reasons) and the moves since; changes as the server
    /// moves.
    /// </summary>
    /// <exception cref="InvalidOperationException">The server was never started.</exception>
    ServerPlacement Placement { get; }

    /// <summary>Raised after the server moved to another span (it was placed by the swarm and rebalancing found a better span).</summary>
    event EventHandler<ServerMovedEventArgs>? Moved;
}
