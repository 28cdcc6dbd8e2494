using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Petals.Models;

namespace Petals.Server;

/// <summary>
/// The on-disk throughput cache: one JSON file of measurements keyed by model, span size, executor, dtype, weight
/// quantization and a hardware fingerprint, so a rerun of the same server does not measure again. Writes are atomic (temporary file, then rename)
/// under a lock file, so servers started together do not lose each other's entries. A file that does not parse or has
/// another <see cref="Version"/> is ignored with a warning and rewritten by the next store.
/// </summary>
/// <remarks>Thread-safe and process-safe through the lock file.</remarks>
internal sealed class ThroughputCache
{
    /// <summary>The file format version; files with another one are ignored.</summary>
    public const int Version = 1;

    private static readonly TimeSpan LockTimeout = TimeSpan.FromSeconds(10);
    private readonly ILogger _logger;

    public ThroughputCache(string path, ILogger? logger = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        Path = path;
        _logger = logger ?? NullLogger.Instance;
    }

    public string Path { get; }

    /// <summary>The default file: <c>$XDG_CACHE_HOME/petals/throughput.json</c>, else <c>~/.cache/petals/throughput.json</c>.</summary>
    public static string DefaultPath()
    {
        var root = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
        if (string.IsNullOrEmpty(root))
        {
            root = System.IO.Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache");
        }

        return System.IO.Path.Combine(root, "petals", "throughput.json");
    }

    /// <summary>The cache key of a server's measurement.</summary>
    /// <remarks>
    /// The weight quantization is part of the key (quantized blocks run at another speed); <c>"none"</c> keeps the key of
    /// the files written before it was (<c>|quant=</c> is then left out), so their figures stay valid for unquantized servers.
    /// </remarks>
    public static string Key(string modelId, int spanBlocks, string executor, string dtype, string hardware, string quantization = "none") =>
        string.Equals(quantization, "none", StringComparison.Ordinal)
            ? string.Create(CultureInfo.InvariantCulture, $"{modelId}|blocks={spanBlocks}|executor={executor}|dtype={dtype}|hw={hardware}")
            : string.Create(CultureInfo.InvariantCulture, $"{modelId}|blocks={spanBlocks}|executor={executor}|dtype={dtype}|quant={quantization}|hw={hardware}");

    /// <summary>This machine's fingerprint: CPU model (/proc/cpuinfo), logical cores, total memory, architecture.</summary>
    public static string HardwareFingerprint()
    {
        var cpu = "unknown-cpu";
        try
        {
            foreach (var line in File.ReadLines("/proc/cpuinfo"))
            {
                if (line.StartsWith("model name", StringComparison.Ordinal) && line.IndexOf(':', StringComparison.Ordinal) is var colon and > 0)
                {
                    cpu = line[(colon + 1)..].Trim();
                    break;
                }
            }
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }

        var memoryGiB = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes / (1024.0 * 1024 * 1024);
        return string.Create(CultureInfo.InvariantCulture,
            $"{cpu};cores={Environment.ProcessorCount};mem={Math.Round(memoryGiB)}GiB;{System.Runtime.InteropServices.RuntimeInformation.ProcessArchitecture}");
    }

    /// <summary>The cached measurement for <paramref name="key"/>, as a <c>cached</c> record over <paramref name="blocks"/>; null on a miss.</summary>
    public ThroughputMeasurement? TryGet(string key, BlockRange blocks)
    {
        JsonObject? entries;
        try
        {
            using var held = AcquireLock();
            entries = ReadEntries();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            ServerLog.ThroughputCacheIgnored(_logger, Path, e.Message);
            return null;
        }

        if (entries?[key] is not JsonObject entry)
        {
            return null;
        }

        try
        {
            var announced = entry["tokensPerSecondPerBlock"]!.GetValue<double>();
            var stepMs = entry["stepMs"]!.GetValue<double>();
            var measurement = new ThroughputMeasurement(blocks, announced, TimeSpan.FromMilliseconds(stepMs), entry["steps"]!.GetValue<int>())
            {
                DecodeTokensPerSecondPerBlock = entry["decodeTokensPerSecondPerBlock"]!.GetValue<double>(),
                ForwardTokensPerSecondPerBlock = entry["forwardTokensPerSecondPerBlock"]!.GetValue<double>(),
                NetworkTokensPerSecond = entry["networkTokensPerSecond"]?.GetValue<double>(),
                Rounds = entry["rounds"]!.GetValue<int>(),
                Spread = entry["spread"]!.GetValue<double>(),
                Busy = entry["busy"]!.GetValue<bool>(),
                Source = "cached",
                Method = entry["method"]!.GetValue<string>(),
            };
            ServerLog.ThroughputCached(_logger, announced, Path, key);
            return measurement;
        }
        catch (Exception e) when (e is NullReferenceException or InvalidOperationException or FormatException)
        {
            ServerLog.ThroughputCacheIgnored(_logger, Path, $"entry {key} is malformed: {e.Message}");
            return null;
        }
    }

    /// <summary>Stores <paramref name="measurement"/> under <paramref name="key"/>, keeping the other keys of a valid file.</summary>
    public void Store(string key, ThroughputMeasurement measurement)
    {
        ArgumentNullException.ThrowIfNull(measurement);
        try
        {
            using var held = AcquireLock();
            var entries = ReadEntries() ?? new JsonObject();
            entries[key] = new JsonObject
            {
                ["tokensPerSecondPerBlock"] = measurement.TokensPerSecondPerBlock,
                ["decodeTokensPerSecondPerBlock"] = measurement.DecodeTokensPerSecondPerBlock,
                ["forwardTokensPerSecondPerBlock"] = measurement.ForwardTokensPerSecondPerBlock,
                ["networkTokensPerSecond"] = measurement.NetworkTokensPerSecond,
                ["stepMs"] = measurement.StepTime.TotalMilliseconds,
                ["steps"] = measurement.Steps,
                ["rounds"] = measurement.Rounds,
                ["spread"] = measurement.Spread,
                ["busy"] = measurement.Busy,
                ["method"] = measurement.Method,
                ["measuredAt"] = DateTimeOffset.UtcNow.ToString("O", CultureInfo.InvariantCulture),
            };
            var root = new JsonObject { ["version"] = Version, ["entries"] = entries };
            var temporary = Path + "." + Environment.ProcessId.ToString(CultureInfo.InvariantCulture) + ".tmp";
            File.WriteAllText(temporary, root.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
            File.Move(temporary, Path, overwrite: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            ServerLog.ThroughputCacheWriteFailed(_logger, Path, e.Message);
        }
    }

    /// <summary>The entries of a valid file; null (with a warning) when it is missing, corrupt or of another version.</summary>
    private JsonObject? ReadEntries()
    {
        string text;
        try
        {
            text = File.ReadAllText(Path);
        }
        catch (FileNotFoundException)
        {
            return null;
        }
        catch (DirectoryNotFoundException)
        {
            return null;
        }

        try
        {
            if (JsonNode.Parse(text) is not JsonObject root)
            {
                ServerLog.ThroughputCacheIgnored(_logger, Path, "not a JSON object");
                return null;
            }

            var version = root["version"] is JsonValue v && v.TryGetValue<int>(out var n) ? n : (int?)null;
            if (version != Version)
            {
                ServerLog.ThroughputCacheIgnored(_logger, Path, string.Create(CultureInfo.InvariantCulture, $"version {(version?.ToString(CultureInfo.InvariantCulture) ?? "missing")}, expected {Version}"));
                return null;
            }

            if (root["entries"] is not JsonObject entries)
            {
                ServerLog.ThroughputCacheIgnored(_logger, Path, "no entries object");
                return null;
            }

            root.Remove("entries");
            return entries;
        }
        catch (JsonException e)
        {
            ServerLog.ThroughputCacheIgnored(_logger, Path, "corrupt JSON: " + e.Message);
            return null;
        }
    }

    private FileStream AcquireLock()
    {
        var directory = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(Path));
        if (!string.IsNullOrEmpty(directory))
        {
            Directory.CreateDirectory(directory);
        }

        var deadline = DateTime.UtcNow + LockTimeout;
        while (true)
        {
            try
            {
                return new FileStream(Path + ".lock", FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None, 1, FileOptions.None); // Left in place: deleting it on close races with a waiting opener.
            }
            catch (IOException) when (DateTime.UtcNow < deadline)
            {
                Thread.Sleep(20);
            }
        }
    }
}
