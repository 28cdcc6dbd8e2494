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
