using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.Json;
using Petals.Transport;

namespace Petals.Cli.Swarm;

/// <summary>
/// A <c>petals serve</c> child process: started with this command line's own entry point, ready once it prints its
/// <c>listening</c> line, stopped with SIGTERM (then killed if it does not exit), its final <c>stats</c> line kept.
/// </summary>
internal sealed partial class ServerProcess : IAsyncDisposable
{
    private const int KeptLines = 40;

    private readonly Process _process;
    private readonly TaskCompletionSource<PeerAddress> _listening = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly Queue<string> _lastLines = new();
    private readonly Lock _linesLock = new();
    private readonly Stopwatch _started = Stopwatch.StartNew();
    private readonly TaskCompletionSource _outputDone = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _errorDone = new(TaskCreationOptions.RunContinuationsAsynchronously);

    private readonly string _readyPrefix;

    private ServerProcess(string name, Process process, string readyPrefix)
    {
        Name = name;
        _process = process;
        _readyPrefix = readyPrefix;
    }

    /// <summary>A short name for messages, e.g. <c>server 2</c>.</summary>
    public string Name { get; }

    /// <summary>The process id.</summary>
    public int ProcessId => _process.Id;

    /// <summary>The time from start to the listening line.</summary>
    public TimeSpan? StartupTime { get; private set; }

    /// <summary>The DHT address the process printed (<c>dht tls://ID@HOST:PORT</c>, <c>tcp://</c> with <c>--insecure</c>), or null: its peer id is the server's id in the swarm.</summary>
    public PeerAddress? DhtAddress { get; private set; }

    /// <summary>The statistics the server printed when it stopped, or null.</summary>
    public JsonElement? Stats { get; private set; }

    /// <summary>The process's exit code once it exited.</summary>
    public int? ExitCode => _process.HasExited ? _process.ExitCode : null;

    /// <summary>Starts <c>petals serve</c> with <paramref name="arguments"/> (everything after <c>serve</c>).</summary>
    public static ServerProcess Start(string name, IEnumerable<string> arguments) => Start(name, "serve", "listening ", arguments);

    /// <summary>Starts <c>petals <paramref name="command"/></c> (e.g. <c>dht</c>), ready once it prints a line starting with <paramref name="readyPrefix"/> followed by an address.</summary>
    /// <param name="name">The name used in messages, e.g. <c>"bootstrap"</c>.</param>
    /// <param name="command">The petals command to run.</param>
    /// <param name="readyPrefix">The start of the line that announces the address, e.g. <c>"dht "</c>.</param>
    /// <param name="arguments">The command's arguments (<c>--stop-when-input-closes</c> is added).</param>
    /// <returns>The started process.</returns>
    public static ServerProcess Start(string name, string command, string readyPrefix, IEnumerable<string> arguments)
    {
        var (host, prefix) = ResolveEntryPoint();
        var info = new ProcessStartInfo(host)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
            CreateNoWindow = true,
        };
        // The child stops when its input ends: when this process dies, however it dies, its servers stop too.
        foreach (var argument in prefix.Append(command).Concat(arguments).Append("--stop-when-input-closes"))
        {
            info.ArgumentList.Add(argument);
        }

        var process = new Process { StartInfo = info, EnableRaisingEvents = true };
        var server = new ServerProcess(name, process, readyPrefix);
        process.OutputDataReceived += (_, e) => server.OnOutput(e.Data);
        process.ErrorDataReceived += (_, e) => server.OnError(e.Data);
        process.Exited += (_, _) => server._listening.TrySetException(new InvalidOperationException(server.Describe("exited before it was ready")));
        if (!process.Start())
        {
            throw new InvalidOperationException($"{name}: '{host}' did not start.");
        }

        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return server;
    }

    /// <summary>Waits for the listening line.</summary>
    /// <exception cref="TimeoutException">When the server is not ready in time; the message has its last output.</exception>
    /// <exception cref="InvalidOperationException">When the server exited first; the message has its last output.</exception>
    public async Task<PeerAddress> WaitUntilListeningAsync(TimeSpan timeout, CancellationToken cancellationToken)
    {
        try
        {
            return await _listening.Task.WaitAsync(timeout, cancellationToken).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            throw new TimeoutException(Describe(string.Create(CultureInfo.InvariantCulture, $"was not listening after {timeout.TotalSeconds:0} s")));
        }
    }

    /// <summary>Asks the server to stop (SIGTERM), waits for it to exit and print its statistics, kills it after <paramref name="grace"/>.</summary>
    /// <returns>Whether it exited by itself.</returns>
    public async Task<bool> StopAsync(TimeSpan grace)
    {
        if (!_process.HasExited)
        {
            if (OperatingSystem.IsWindows() || Kill(_process.Id, SigTerm) != 0)
            {
                _process.Kill(entireProcessTree: true);
            }
        }

        using var wait = new CancellationTokenSource(grace);
        try
        {
            await _process.WaitForExitAsync(wait.Token).ConfigureAwait(false);
            await Task.WhenAll(_outputDone.Task, _errorDone.Task).WaitAsync(grace).ConfigureAwait(false);
            return true;
        }
        catch (Exception e) when (e is OperationCanceledException or TimeoutException)
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync(CancellationToken.None).ConfigureAwait(false);
            return false;
        }
    }

    /// <summary>
    /// Kills the process at once with SIGKILL (<c>kill -9</c>), as a crash or the OOM killer would: it gets no chance to
    /// announce itself offline or to close its connections (the kernel closes them). Returns without waiting for the exit.
    /// </summary>
    /// <exception cref="InvalidOperationException">When the signal cannot be delivered (e.g. the process is gone).</exception>
    public void KillHard()
    {
        if (OperatingSystem.IsWindows())
        {
            _process.Kill();
            return;
        }

        if (Kill(_process.Id, SigKill) != 0)
        {
            throw new InvalidOperationException(Describe(string.Create(CultureInfo.InvariantCulture, $"could not be sent SIGKILL (errno {Marshal.GetLastPInvokeError()})")));
        }
    }

    /// <summary>Waits for the process to exit, however it was stopped.</summary>
    /// <exception cref="TimeoutException">When it has not exited within <paramref name="timeout"/>.</exception>
    public async Task WaitForExitAsync(TimeSpan timeout, CancellationToken cancellationToken)
    {
        try
        {
            await _process.WaitForExitAsync(cancellationToken).WaitAsync(timeout, cancellationToken).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            throw new TimeoutException(Describe(string.Create(CultureInfo.InvariantCulture, $"had not exited after {timeout.TotalSeconds:0.#} s")));
        }
    }

    /// <summary>The last lines the server wrote, for error messages.</summary>
    public string Describe(string what)
    {
        lock (_linesLock)
        {
            var exit = _process.HasExited ? string.Create(CultureInfo.InvariantCulture, $" (exit code {_process.ExitCode})") : string.Empty;
            return _lastLines.Count == 0
                ? $"{Name} {what}{exit}; it wrote nothing."
                : $"{Name} {what}{exit}; its last output:{Environment.NewLine}  {string.Join(Environment.NewLine + "  ", _lastLines)}";
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            await StopAsync(TimeSpan.FromSeconds(10)).ConfigureAwait(false);
        }

        _process.Dispose();
    }

    private static (string Host, string[] Prefix) ResolveEntryPoint()
    {
        // Always run the same Petals.Cli.dll as this process through the dotnet host: correct under `dotnet run`,
        // an installed tool, and test hosts alike.
        var dll = typeof(ServerProcess).Assembly.Location;
        var current = Environment.ProcessPath;
        string host;
        if (current is not null && Path.GetFileNameWithoutExtension(current).Equals("dotnet", StringComparison.OrdinalIgnoreCase))
        {
            host = current;
        }
        else if (Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } fromSdk && File.Exists(fromSdk))
        {
            host = fromSdk;
        }
        else if (Environment.GetEnvironmentVariable("DOTNET_ROOT") is { Length: > 0 } root && File.Exists(Path.Combine(root, OperatingSystem.IsWindows() ? "dotnet.exe" : "dotnet")))
        {
            host = Path.Combine(root, OperatingSystem.IsWindows() ? "dotnet.exe" : "dotnet");
        }
        else
        {
            host = "dotnet";
        }

        return (host, [dll]);
    }

    private void OnOutput(string? line)
    {
        if (line is null)
        {
            _outputDone.TrySetResult();
            return;
        }

        Keep(line);
        if (line.StartsWith("dht ", StringComparison.Ordinal) && PeerAddress.TryParse(line[4..].Trim(), out var dht))
        {
            DhtAddress = dht;
        }

        if (line.StartsWith(_readyPrefix, StringComparison.Ordinal) && !_listening.Task.IsCompleted)
        {
            var address = line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1];
            if (PeerAddress.TryParse(address, out var parsed))
            {
                StartupTime = _started.Elapsed;
                _listening.TrySetResult(parsed);
            }
            else
            {
                _listening.TrySetException(new InvalidOperationException(Describe($"printed an address that does not parse: '{address}'")));
            }
        }
        else if (line.StartsWith("stats ", StringComparison.Ordinal))
        {
            try
            {
                using var document = JsonDocument.Parse(line.AsMemory(6));
                Stats = document.RootElement.Clone();
            }
            catch (JsonException)
            {
                // Kept in the last lines; the statistics are then reported as missing.
            }
        }
    }

    private void OnError(string? line)
    {
        if (line is null)
        {
            _errorDone.TrySetResult();
            return;
        }

        Keep(line);
    }

    private void Keep(string line)
    {
        lock (_linesLock)
        {
            _lastLines.Enqueue(line);
            while (_lastLines.Count > KeptLines)
            {
                _lastLines.Dequeue();
            }
        }
    }

    private const int SigTerm = 15;

    private const int SigKill = 9;

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static partial int Kill(int pid, int signal);
}
