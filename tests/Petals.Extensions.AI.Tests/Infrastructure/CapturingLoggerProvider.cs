using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;

namespace Petals.Extensions.AI.Tests.Infrastructure;

/// <summary>A logger provider that keeps every record written at <see cref="MinimumLevel"/> or above.</summary>
internal sealed class CapturingLoggerProvider(LogLevel minimumLevel = LogLevel.Trace) : ILoggerProvider
{
    public LogLevel MinimumLevel { get; } = minimumLevel;

    public ConcurrentQueue<LogRecord> Records { get; } = new();

    public ILogger CreateLogger(string categoryName) => new Logger(this, categoryName);

    public void Dispose()
    {
    }

    public sealed record LogRecord(string Category, LogLevel Level, EventId EventId, string Message);

    private sealed class Logger(CapturingLoggerProvider owner, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel >= owner.MinimumLevel;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (IsEnabled(logLevel))
            {
                owner.Records.Enqueue(new LogRecord(category, logLevel, eventId, formatter(state, exception)));
            }
        }
    }
}
