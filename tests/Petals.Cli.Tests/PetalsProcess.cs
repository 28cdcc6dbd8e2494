using System.Diagnostics;
using System.Globalization;
using System.Text.Json;

namespace Petals.Cli.Tests;

/// <summary>A real petals process whose stdout lines are collected; always killed on dispose.</summary>
internal sealed class PetalsProcess : IAsyncDisposable
{
    /// <summary>How long any wait on the process may take.</summary>
    public static readonly TimeSpan Bound = TimeSpan.FromSeconds(60);

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private readonly Process _process;
    private readonly List<string> _lines = [];
    private readonly Task _reading;
    private readonly Task<string> _errors;

    private PetalsProcess(Process process)
    {
        _process = process;
        _reading = Task.Run(async () =>
        {
            while (await process.StandardOutput.ReadLineAsync() is { } line)
            {
                lock (_lines)
                {
                    _lines.Add(line);
                }
            }
        });
        _errors = process.StandardError.ReadToEndAsync();
    }

    public string Errors => _errors.IsCompleted ? _errors.Result : "(stderr still open)";

    public static PetalsProcess Start(params string[] args) => Start(false, args);

    public static PetalsProcess Start(bool redirectInput, params string[] args)
    {
        var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = redirectInput, UseShellExecute = false };
        info.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "Petals.Cli.dll"));
        foreach (var a in args)
        {
            info.ArgumentList.Add(a);
        }

        return new PetalsProcess(Process.Start(info)!);
    }

    /// <summary>Starts petals under <c>ulimit -n <paramref name="openFiles"/></c> (through bash, whose <c>exec</c> keeps the pid).</summary>
    public static PetalsProcess StartWithOpenFileLimit(int openFiles, params string[] args)
    {
        var dll = Path.Combine(AppContext.BaseDirectory, "Petals.Cli.dll");
        var quoted = string.Join(' ', args.Select(a => "'" + a + "'"));
        var info = new ProcessStartInfo("bash") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        info.ArgumentList.Add("-c");
        info.ArgumentList.Add(string.Create(CultureInfo.InvariantCulture, $"ulimit -n {openFiles} && exec dotnet '{dll}' {quoted}"));
        return new PetalsProcess(Process.Start(info)!);
    }

    /// <summary>Fails the test, with the process's stderr, when it has exited.</summary>
    public void AssertRunning(string when)
    {
        if (_process.HasExited)
        {
            Assert.Fail($"petals exited ({_process.ExitCode}) {when}: {_errors.Result}");
        }
    }

    /// <summary>The resident memory of the process in MiB (Linux /proc), -1 when not found.</summary>
    public long RssMb()
    {
        foreach (var line in File.ReadAllLines($"/proc/{_process.Id.ToString(CultureInfo.InvariantCulture)}/status"))
        {
            if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
            {
                return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) / 1024;
            }
        }

        return -1;
    }

    /// <summary>The descriptors the process holds open (Linux /proc); 0 once it has exited.</summary>
    public int OpenDescriptors() => _process.HasExited ? 0 : Directory.GetFiles($"/proc/{_process.Id.ToString(CultureInfo.InvariantCulture)}/fd").Length;

    /// <summary>The address of the <c>listening ADDRESS blocks …</c> line a server prints when it is ready.</summary>
    public async Task<Petals.Transport.PeerAddress> ListeningAsync() =>
        Petals.Transport.PeerAddress.Parse((await WaitForLineAsync("listening ")).Split(' ')[1]);

    /// <summary>The process id.</summary>
    public int Id => _process.Id;

    /// <summary>Whether the process has exited.</summary>
    public bool HasExited => _process.HasExited;

    /// <summary>Every line printed so far that starts with <paramref name="prefix"/>, in order.</summary>
    public IReadOnlyList<string> Lines(string prefix)
    {
        lock (_lines)
        {
            return _lines.Where(l => l.StartsWith(prefix, StringComparison.Ordinal)).ToArray();
        }
    }

    public async Task<string> WaitForLineAsync(string prefix)
    {
        var deadline = DateTime.UtcNow + Bound;
        while (true)
        {
            lock (_lines)
            {
                if (_lines.FirstOrDefault(l => l.StartsWith(prefix, StringComparison.Ordinal)) is { } line)
                {
                    return line;
                }
            }

            if (_process.HasExited && _reading.IsCompleted)
            {
                Assert.Fail($"petals exited ({_process.ExitCode}) without a '{prefix}' line: {await _errors}");
            }

            Assert.True(DateTime.UtcNow < deadline, $"petals printed no '{prefix}' line within {Bound}.");
            await Task.Delay(2, Ct);
        }
    }

    /// <summary>Sends the signal <paramref name="name"/> (e.g. <c>TERM</c>, <c>STOP</c>) with kill(1).</summary>
    public async Task SignalAsync(string name)
    {
        using var kill = Process.Start("kill", ["-" + name, _process.Id.ToString(CultureInfo.InvariantCulture)])!;
        await kill.WaitForExitAsync(Ct).WaitAsync(Bound, Ct);
    }

    /// <summary>Sends SIGTERM, waits for the exit, returns the exit code and the parsed stats line.</summary>
    public async Task<(int ExitCode, JsonElement Stats)> StopAsync()
    {
        await SignalAsync("TERM");
        return await WaitForStatsAsync();
    }

    /// <summary>Closes the process's standard input, waits for the exit, returns the exit code and the parsed stats line.</summary>
    public async Task<(int ExitCode, JsonElement Stats)> CloseInputAndWaitAsync()
    {
        _process.StandardInput.Close();
        return await WaitForStatsAsync();
    }

    private async Task<(int ExitCode, JsonElement Stats)> WaitForStatsAsync()
    {
        await _process.WaitForExitAsync(Ct).WaitAsync(Bound, Ct);
        await _reading.WaitAsync(Bound, Ct);
        var stats = await WaitForLineAsync("stats ");
        using var json = JsonDocument.Parse(stats["stats ".Length..]);
        return (_process.ExitCode, json.RootElement.Clone());
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync(CancellationToken.None).WaitAsync(Bound);
        }

        _process.Dispose();
    }
}
