namespace Petals.Server.Http.Health;

/// <summary>Options of the swarm health monitor (<c>services.AddPetalsHealthMonitor(…)</c>).</summary>
public sealed class HealthMonitorOptions
{
    /// <summary>How often the monitor reads the swarm's DHT again, and how often the page fetches the state. Default 5 seconds; 0.1 s to 1 hour.</summary>
    public TimeSpan RefreshInterval { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>How long one read of the swarm may take before it is given up (the previous state is kept, with the error). Default 30 seconds; positive.</summary>
    public TimeSpan ReadTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>The title of the pages. Default <c>"Petals swarm health"</c>.</summary>
    public string Title { get; set; } = "Petals swarm health";
}
