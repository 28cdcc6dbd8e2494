using System.Globalization;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using Petals.Client;
using Petals.Execution;
using Petals.Protocol;
using Petals.Server;
using Petals.Transport;

namespace Petals.Hosting;

/// <summary>Checks <see cref="PetalsServerOptions"/> and that the server builder got an executor and a transport.</summary>
internal sealed class PetalsServerOptionsValidator(IServiceProvider services) : IValidateOptions<PetalsServerOptions>
{
    internal const string MissingExecutor =
        "AddPetalsServer has no block executor: call UseCpuExecutor() (package Petals.Backends.Cpu) or UseExecutor(…) on the server builder.";

    internal const string MissingTransport =
        "AddPetalsServer has no transport: call UseTcpTransport() (Petals.Transport.Tcp), UseQuicTransport() (Petals.Transport.Quic), "
        + "UseMemoryTransport(…) (Petals.Testing) or UseTransport(…) on the server builder.";

    internal const string MissingDiscoveryForPlacement =
        "PetalsServerOptions.Blocks is null, so the server places itself in the swarm, which needs a discovery: call UseDhtDiscovery(…) "
        + "(Petals.Discovery) or UseDiscovery(…) on the server builder, or set Blocks to place it by hand.";

    public ValidateOptionsResult Validate(string? name, PetalsServerOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var failures = new List<string>();
        PetalsValidation.CheckModelPath(options.ModelPath, nameof(PetalsServerOptions), failures);
        if (options.Blocks is { Count: <= 0 } blocks)
        {
            failures.Add($"PetalsServerOptions.Blocks must name at least one block (e.g. new BlockRange(0, 4)), or be null to let the swarm place the server, not {blocks}.");
        }

        if (options.Blocks is not null && (options.NumBlocks is not null || options.MemoryBudget is not null))
        {
            failures.Add("PetalsServerOptions.Blocks places the server by hand: leave NumBlocks and MemoryBudget null (they size a span the swarm places).");
        }

        if (options.NumBlocks is <= 0)
        {
            failures.Add($"PetalsServerOptions.NumBlocks must be at least 1, not {options.NumBlocks}.");
        }

        if (options.MemoryBudget is <= 0)
        {
            failures.Add($"PetalsServerOptions.MemoryBudget must be a positive number of bytes, not {options.MemoryBudget}.");
        }

        PetalsValidation.Check(options.Balancing, "PetalsServerOptions.Balancing", static b => b.Validate(), failures);

        if (!PeerAddress.TryParse(options.ListenAddress, out _))
        {
            failures.Add($"PetalsServerOptions.ListenAddress '{options.ListenAddress}' is not a peer address scheme://location (e.g. tcp://127.0.0.1:0 or mem://server-1).");
        }

        PetalsValidation.CheckModelId(options.ModelId, nameof(PetalsServerOptions), failures);

        // The block server's own checks, on a copy with the fields the host fills in, so that only the knobs are judged.
        if (options.Server is null)
        {
            failures.Add("PetalsServerOptions.Server must not be null.");
        }
        else
        {
            var knobs = options.Server.Clone();
            knobs.Blocks = options.Blocks is { Count: > 0 } span ? span : new(0, 1);
            knobs.ModelId = "model";
            knobs.Limits = PetalsValidation.CheckLimits(options.Server.Limits, "PetalsServerOptions.Server", failures);
            PetalsValidation.Check(knobs.Validate, "PetalsServerOptions.Server", failures);
        }

        ValidateAdapters(options, failures);
        PetalsValidation.Check(options.Announcer, "PetalsServerOptions.Announcer", static a => a.Validate(), failures);
        PetalsValidation.Check(options.Throughput, "PetalsServerOptions.Throughput", static t => t.Validate(), failures);
        if (options.OfflineAnnounceTimeout <= TimeSpan.Zero || options.OfflineAnnounceTimeout > BlockServerOptions.MaxTimeout)
        {
            failures.Add($"PetalsServerOptions.OfflineAnnounceTimeout must be positive and at most 49.7 days, not {options.OfflineAnnounceTimeout}.");
        }

        if (services.GetService<IServiceProviderIsKeyedService>() is { } registered)
        {
            if (!registered.IsKeyedService(typeof(IBlockExecutorFactory), PetalsServiceKeys.Provider(PetalsServiceKeys.Server)))
            {
                failures.Add(MissingExecutor);
            }

            if (!registered.IsKeyedService(typeof(ITransport), PetalsServiceKeys.Provider(PetalsServiceKeys.Server)))
            {
                failures.Add(MissingTransport);
            }

            if (options.Blocks is null && !registered.IsKeyedService(typeof(Discovery.IPeerDiscovery), PetalsServiceKeys.Provider(PetalsServiceKeys.Server)))
            {
                failures.Add(MissingDiscoveryForPlacement);
            }
        }

        PetalsValidation.RunStartupChecks(services, PetalsServiceKeys.Server, failures);
        return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
    }

    private static void ValidateAdapters(PetalsServerOptions options, List<string> failures)
    {
        if (options.AdapterDirectories is null)
        {
            failures.Add("PetalsServerOptions.AdapterDirectories must not be null (leave it empty for no adapters).");
            return;
        }

        var given = options.Server?.Adapters?.Count ?? 0;
        if (options.AdapterDirectories.Count + given > Discovery.AnnouncementLimits.MaxAdapters)
        {
            failures.Add(string.Create(CultureInfo.InvariantCulture, $"PetalsServerOptions.AdapterDirectories: {options.AdapterDirectories.Count + given} adapters in all; a server announces at most {Discovery.AnnouncementLimits.MaxAdapters}."));
        }

        foreach (var adapter in options.Server?.Adapters?.Keys ?? [])
        {
            if (!Discovery.AnnouncementLimits.IsValidAdapterName(adapter, out var fault))
            {
                failures.Add($"PetalsServerOptions.Server.Adapters: {fault}");
            }
        }

        foreach (var (adapter, directory) in options.AdapterDirectories)
        {
            if (!Discovery.AnnouncementLimits.IsValidAdapterName(adapter, out var fault))
            {
                failures.Add($"PetalsServerOptions.AdapterDirectories: {fault}");
            }
            else if (options.Server?.Adapters?.ContainsKey(adapter) == true)
            {
                failures.Add($"PetalsServerOptions.AdapterDirectories: the adapter '{adapter}' is also given in PetalsServerOptions.Server.Adapters.");
            }

            if (string.IsNullOrEmpty(directory))
            {
                failures.Add($"PetalsServerOptions.AdapterDirectories['{adapter}'] must name a PEFT adapter directory.");
            }
            else if (!Directory.Exists(directory))
            {
                failures.Add($"PetalsServerOptions.AdapterDirectories['{adapter}']: the directory '{directory}' does not exist.");
            }
        }
    }
}

/// <summary>Checks <see cref="PetalsClientOptions"/> and that the client builder got a transport.</summary>
internal sealed class PetalsClientOptionsValidator(IServiceProvider services) : IValidateOptions<PetalsClientOptions>
{
    internal const string MissingTransport =
        "AddPetalsClient has no transport: call UseTcpTransport() (Petals.Transport.Tcp), UseQuicTransport() (Petals.Transport.Quic), "
        + "UseMemoryTransport(…) (Petals.Testing) or UseTransport(…) on the client builder.";

    internal const string MissingPeers =
        "AddPetalsClient has no way to find servers: list them in PetalsClientOptions.Peers (e.g. tcp://127.0.0.1:5000), "
        + "or call UseDhtDiscovery(…) (Petals.Discovery) or UseDiscovery(…) on the client builder.";

    public ValidateOptionsResult Validate(string? name, PetalsClientOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var failures = new List<string>();
        PetalsValidation.CheckModelPath(options.ModelPath, nameof(PetalsClientOptions), failures);
        if (options.Peers.Count == 0
            && services.GetService<IServiceProviderIsKeyedService>()?.IsKeyedService(typeof(Discovery.IPeerDiscovery), PetalsServiceKeys.Provider(PetalsServiceKeys.Client)) != true)
        {
            failures.Add(MissingPeers);
        }

        for (var i = 0; i < options.Peers.Count; i++)
        {
            if (!PeerAddress.TryParse(options.Peers[i], out _))
            {
                failures.Add(string.Create(CultureInfo.InvariantCulture,
                    $"PetalsClientOptions.Peers[{i}] '{options.Peers[i]}' is not a peer address scheme://location (e.g. tcp://127.0.0.1:5000)."));
            }
        }

        PetalsValidation.CheckModelId(options.ModelId, nameof(PetalsClientOptions), failures);
        if (options.Sequence is null)
        {
            failures.Add("PetalsClientOptions.Sequence must not be null.");
        }
        else
        {
            var knobs = options.Sequence.Clone();
            if (string.IsNullOrEmpty(options.Sequence.PeerId))
            {
                failures.Add("PetalsClientOptions.Sequence.PeerId must not be empty (the default is a random client id).");
                knobs.PeerId = "client";
            }

            knobs.Limits = PetalsValidation.CheckLimits(options.Sequence.Limits, "PetalsClientOptions.Sequence", failures);
            PetalsValidation.Check(knobs.Validate, "PetalsClientOptions.Sequence", failures);
        }

        if (options.Swarm is null)
        {
            failures.Add("PetalsClientOptions.Swarm must not be null.");
        }
        else
        {
            PetalsValidation.Check(options.Swarm.ValidateOwn, "PetalsClientOptions.Swarm", failures);
            PetalsValidation.Check(options.Swarm.Router, "PetalsClientOptions.Swarm.Router", static r => r.Validate(), failures);
            PetalsValidation.Check(options.Swarm.Health, "PetalsClientOptions.Swarm.Health", static h => h.Validate(), failures);
        }

        if (services.GetService<IServiceProviderIsKeyedService>() is { } registered
            && !registered.IsKeyedService(typeof(ITransport), PetalsServiceKeys.Provider(PetalsServiceKeys.Client)))
        {
            failures.Add(MissingTransport);
        }

        PetalsValidation.RunStartupChecks(services, PetalsServiceKeys.Client, failures);
        return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
    }
}

/// <summary>Checks shared by both validators.</summary>
internal static class PetalsValidation
{
    public static void CheckModelPath(string? path, string owner, List<string> failures)
    {
        if (string.IsNullOrWhiteSpace(path))
        {
            failures.Add($"{owner}.ModelPath is required: the .gguf file or Hugging Face directory of the model.");
        }
        else if (!File.Exists(path) && !Directory.Exists(path))
        {
            failures.Add($"{owner}.ModelPath '{path}' does not exist.");
        }
    }

    public static void CheckModelId(string? modelId, string owner, List<string> failures)
    {
        if (modelId is null)
        {
            return;
        }

        if (modelId.Length == 0)
        {
            failures.Add($"{owner}.ModelId must not be empty (leave it null to compute it from the model).");
        }
        else if (System.Text.Encoding.UTF8.GetByteCount(modelId) > 255)
        {
            failures.Add($"{owner}.ModelId takes more than 255 UTF-8 bytes.");
        }
    }

    /// <summary>Checks the protocol limits under the name <c>Limits</c>; returns limits to judge the other settings with.</summary>
    public static ProtocolLimits CheckLimits(ProtocolLimits? limits, string owner, List<string> failures)
    {
        if (limits is null)
        {
            failures.Add($"{owner}.Limits must not be null.");
            return ProtocolLimits.Default;
        }

        var before = failures.Count;
        Check(limits.Validate, owner + ".Limits", failures);
        return failures.Count == before ? limits : ProtocolLimits.Default;
    }

    /// <summary>Adds the failure of every startup check a provider registered for <paramref name="role"/>.</summary>
    public static void RunStartupChecks(IServiceProvider services, string role, List<string> failures)
    {
        foreach (var check in services.GetKeyedServices<PetalsStartupCheck>(role))
        {
            if (check.Run(services) is { } failure)
            {
                failures.Add(failure);
            }
        }
    }

    /// <summary>Checks a nested options object: not null, then its own <c>Validate()</c>, each failure named under <paramref name="owner"/>.</summary>
    public static void Check<T>(T? options, string owner, Action<T> validate, List<string> failures)
        where T : class
    {
        if (options is null)
        {
            failures.Add($"{owner} must not be null.");
            return;
        }

        Check(() => validate(options), owner, failures);
    }

    /// <summary>Runs a <c>Validate()</c> method that throws on the first bad setting and records its message.</summary>
    public static void Check(Action validate, string owner, List<string> failures)
    {
        try
        {
            validate();
        }
        catch (ArgumentException e)
        {
            failures.Add($"{owner}.{e.ParamName ?? "?"}: {FirstLine(e.Message)}");
        }
    }

    private static string FirstLine(string message)
    {
        // ArgumentException appends " (Parameter 'X')" and ArgumentOutOfRangeException "Actual value was …" on new lines / at the end.
        var end = message.IndexOf(" (Parameter '", StringComparison.Ordinal);
        var text = end >= 0 ? message[..end] : message;
        var newline = text.IndexOf('\n', StringComparison.Ordinal);
        return (newline >= 0 ? text[..newline] : text).TrimEnd();
    }
}
