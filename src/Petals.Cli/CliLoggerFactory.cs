using Microsoft.Extensions.Logging;

namespace Petals.Cli;

/// <summary>
/// The command's log: warnings and errors of the library (a throughput cache ignored, an announcement that failed, a
/// balance check that failed) as one stderr line each, <c>log warning: …</c>; lower levels are not shown.
/// </summary>
internal sealed class CliLoggerFactory(CliContext context, LogLevel minimum = LogLevel.Warning) : ILoggerFactory
{
    public ILogger CreateLogger(string categoryName) => new Logger(context, minimum);

    public void AddProvider(ILoggerProvider provider) => throw new NotSupportedException("The petals command writes its log to stderr only.");

    public void Dispose()
    {
    }

    private sealed class Logger(CliContext context, LogLevel minimum) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel >= minimum && logLevel != LogLevel.None;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (!IsEnabled(logLevel))
            {
                return;
            }

            var level = logLevel switch
            {
                LogLevel.Critical or LogLevel.Error => "error",
                LogLevel.Warning => "warning",
                _ => "info",
            };
            var line = $"log {level}: {formatter(state, exception)}{(exception is null ? string.Empty : ": " + exception.Message)}";
            lock (context)
            {
                context.Error.WriteLine(line);
            }
        }
    }
}
