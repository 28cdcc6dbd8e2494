using System.Collections.Concurrent;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Petals.Models;
using Petals.Server;

namespace Petals.Tests.Server;

/// <summary>The throughput cache on a real file in a temporary directory.</summary>
public sealed class ThroughputCacheTests : IDisposable
{
    private static readonly BlockRange Span = new(2, 5);
    private readonly string _directory = Directory.CreateTempSubdirectory("petals-throughput-").FullName;
    private readonly CapturingLogger _logger = new();

    private string CachePath => Path.Combine(_directory, "sub", "throughput.json");

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    [Fact]
    public void A_stored_measurement_comes_back_as_cached_with_its_figures()
    {
        var cache = new ThroughputCache(CachePath, _logger);
        var key = Key();
        Assert.Null(cache.TryGet(key, Span));
        cache.Store(key, Sample(1234.5));

        var again = new ThroughputCache(CachePath, _logger).TryGet(key, Span);
        Assert.NotNull(again);
        Assert.Equal("cached", again.Source);
        Assert.Equal(Span, again.Blocks);
        Assert.Equal(1234.5, again.TokensPerSecondPerBlock);
        Assert.Equal(1500.0, again.DecodeTokensPerSecondPerBlock);
        Assert.Equal(9000.0, again.ForwardTokensPerSecondPerBlock);
        Assert.Equal(1234.5, again.NetworkTokensPerSecond);
        Assert.Equal(7, again.Rounds);
        Assert.Equal(0.04, again.Spread);
        Assert.True(again.Busy);
        Assert.Equal("median of 7 rounds", again.Method);
        Assert.Equal(TimeSpan.FromMilliseconds(2), again.StepTime);
    }

    [Fact]
    public void Another_span_size_executor_setting_dtype_or_machine_is_a_miss()
    {
        var cache = new ThroughputCache(CachePath, _logger);
        cache.Store(Key(), Sample(100));
        Assert.NotNull(cache.TryGet(Key(), Span));
        Assert.Null(cache.TryGet(ThroughputCache.Key("m", 4, "cpu;threads=2", "F32", "hw"), Span));
        Assert.Null(cache.TryGet(ThroughputCache.Key("m", 3, "cpu;threads=1", "F32", "hw"), Span));
        Assert.Null(cache.TryGet(ThroughputCache.Key("m", 3, "cpu;threads=2", "Q8_0", "hw"), Span));
        Assert.Null(cache.TryGet(ThroughputCache.Key("m", 3, "cpu;threads=2", "F32", "other-hw"), Span));
        Assert.Null(cache.TryGet(ThroughputCache.Key("other", 3, "cpu;threads=2", "F32", "hw"), Span));

        // Both keys live in one file.
        cache.Store(ThroughputCache.Key("m", 4, "cpu;threads=2", "F32", "hw"), Sample(200));
        Assert.Equal(100, cache.TryGet(Key(), Span)!.TokensPerSecondPerBlock);
        Assert.Equal(200, cache.TryGet(ThroughputCache.Key("m", 4, "cpu;threads=2", "F32", "hw"), Span)!.TokensPerSecondPerBlock);
    }

    [Theory]
    [InlineData("{ not json", "corrupt JSON")]
    [InlineData("[1,2]", "not a JSON object")]
    [InlineData("{\"version\":999,\"entries\":{}}", "version 999, expected 1")]
    [InlineData("{\"entries\":{}}", "version missing")]
    public void A_corrupt_or_other_version_file_is_ignored_logged_and_rewritten(string content, string reason)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(CachePath)!);
        File.WriteAllText(CachePath, content);
        var cache = new ThroughputCache(CachePath, _logger);

        Assert.Null(cache.TryGet(Key(), Span));
        var warning = Assert.Single(_logger.Messages);
        Assert.Contains(CachePath, warning, StringComparison.Ordinal);
        Assert.Contains(reason, warning, StringComparison.Ordinal);
        Assert.Contains("rewritten", warning, StringComparison.Ordinal);

        cache.Store(Key(), Sample(42));
        using var written = JsonDocument.Parse(File.ReadAllText(CachePath));
        Assert.Equal(ThroughputCache.Version, written.RootElement.GetProperty("version").GetInt32());
        Assert.Equal(42, new ThroughputCache(CachePath).TryGet(Key(), Span)!.TokensPerSecondPerBlock);
    }

    [Fact]
    public void Concurrent_stores_of_different_keys_all_survive()
    {
        Parallel.For(0, 16, i => new ThroughputCache(CachePath).Store(ThroughputCache.Key("m", i + 1, "cpu", "F32", "hw"), Sample(i + 1)));
        var cache = new ThroughputCache(CachePath, _logger);
        for (var i = 0; i < 16; i++)
        {
            Assert.Equal(i + 1, cache.TryGet(ThroughputCache.Key("m", i + 1, "cpu", "F32", "hw"), Span)!.TokensPerSecondPerBlock);
        }

        Assert.DoesNotContain(_logger.Messages, m => m.Contains("Ignoring", StringComparison.Ordinal));
        Assert.Empty(Directory.GetFiles(Path.GetDirectoryName(CachePath)!, "*.tmp"));
    }

    [Fact]
    public void The_hardware_fingerprint_names_cores_and_memory()
    {
        var fingerprint = ThroughputCache.HardwareFingerprint();
        Assert.Contains($"cores={Environment.ProcessorCount}", fingerprint, StringComparison.Ordinal);
        Assert.Contains("GiB", fingerprint, StringComparison.Ordinal);
        Assert.Equal(fingerprint, ThroughputCache.HardwareFingerprint());
    }

    private static string Key() => ThroughputCache.Key("m", 3, "cpu;threads=2", "F32", "hw");

    private static ThroughputMeasurement Sample(double announced) => new(Span, announced, TimeSpan.FromMilliseconds(2), 16)
    {
        DecodeTokensPerSecondPerBlock = 1500,
        ForwardTokensPerSecondPerBlock = 9000,
        NetworkTokensPerSecond = 1234.5,
        Rounds = 7,
        Spread = 0.04,
        Busy = true,
        Method = "median of 7 rounds",
    };

    private sealed class CapturingLogger : ILogger
    {
        private readonly ConcurrentQueue<string> _messages = new();

        public IReadOnlyCollection<string> Messages => _messages.ToArray();

        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Warning;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (IsEnabled(logLevel))
            {
                _messages.Enqueue(formatter(state, exception));
            }
        }
    }
}
