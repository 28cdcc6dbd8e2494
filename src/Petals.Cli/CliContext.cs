using System.Diagnostics;
using System.Text.Encodings.Web;
using System.Text.Json;
using Petals.Formats;

namespace Petals.Cli;

/// <summary>Where commands write, and the shared handling of errors and JSON output.</summary>
internal sealed class CliContext(TextWriter output, TextWriter error)
{
    /// <summary>Exit code of a command that failed because of its input (bad file, bad option value).</summary>
    public const int InputError = 1;

    /// <summary>Exit code of a command cancelled by Ctrl-C / SIGTERM.</summary>
    public const int Cancelled = 130;

    /// <summary>Exit code when servers cannot be reached, refuse, or fail a call.</summary>
    public const int SwarmError = 3;

    public static readonly JsonWriterOptions JsonOptions = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public TextWriter Output { get; } = output;

    public TextWriter Error { get; } = error;

    /// <summary>Runs a command body, turning expected failures into one clear line on stderr and an exit code.</summary>
    public async Task<int> RunAsync(Func<CancellationToken, Task<int>> body, CancellationToken cancellationToken)
    {
        try
        {
            return await body(cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            await Error.WriteLineAsync("cancelled").ConfigureAwait(false);
            return Cancelled;
        }
        catch (Exception ex) when (ex is ModelFormatException or InvalidDataException or IOException or ArgumentException or InvalidOperationException or UnauthorizedAccessException or KeyNotFoundException)
        {
            await Error.WriteLineAsync($"error: {ex.Message}").ConfigureAwait(false);
            return InputError;
        }
        catch (Exception ex) when (ex is Petals.Protocol.ProtocolException or Petals.Transport.TransportException or Petals.Client.RemoteChainException or TimeoutException)
        {
            await Error.WriteLineAsync($"error: {ex.Message}").ConfigureAwait(false);
            return SwarmError;
        }
    }

    /// <summary>Writes one JSON object as a line on the output.</summary>
    public void WriteJsonLine(Action<Utf8JsonWriter> write)
    {
        using var buffer = new MemoryStream();
        using (var writer = new Utf8JsonWriter(buffer, JsonOptions))
        {
            write(writer);
        }

        Output.WriteLine(System.Text.Encoding.UTF8.GetString(buffer.GetBuffer(), 0, (int)buffer.Length));
    }

    /// <summary>Writes a progress/diagnostic line on stderr with the elapsed time.</summary>
    public void Info(string message, Stopwatch? since = null) =>
        Error.WriteLine(since is null ? message : FormattableString.Invariant($"{message} ({since.Elapsed.TotalSeconds:F2} s)"));
}
