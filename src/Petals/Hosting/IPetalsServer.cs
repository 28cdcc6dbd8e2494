using Microsoft.Extensions.DependencyInjection;
using Petals.Models;
using Petals.Server;
using Petals.Transport;

namespace Petals.Hosting;

/// <summary>
/// The block server run by <see cref="PetalsServiceCollectionExtensions.AddPetalsServer"/>; resolve it from the container
/// to read where it listens once the host has started.
/// </summary>
public interface IPetalsServer
{
    /// <summary>Whether the server is started and not yet stopped.</summary>
    bool IsRunning { get; }

    /// <summary>The address the server listens on (with the real port when the options asked for port 0).</summary>
    /// <exception cref="InvalidOperationException">When the server is not running.</exception>
    PeerAddress LocalAddress { get; }

    /// <summary>The model id the server announces.</summary>
    /// <exception cref="InvalidOperationException">When the server is not running.</exception>
    string ModelId { get; }

    /// <summary>The blocks served.</summary>
    /// <exception cref="InvalidOperationException">When the server is not running.</exception>
    BlockRange Blocks { get; }

    /// <summary>A snapshot of the server's counters.</summary>
    /// <returns>The statistics.</returns>
    /// <exception cref="InvalidOperationException">When the server was never started.</exception>
    BlockServerStatistics GetStatistics();
}
