using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using System.Threading.Channels;
using Petals.Protocol;
using Petals.Testing;
using Petals.Transport;
using Petals.Transport.Tcp;

namespace Petals.Cli.Tests;

/// <summary>
/// <c>petals serve</c> under a small open-file limit (<c>ulimit -n 1024</c>) and a flood of idle TCP connections: before
/// the connection limits and the listener's back-off, accepting ran out of descriptors and the runtime aborted the
/// process with "Out of memory." (exit 134). Now the process survives, refuses what is over its limits and serves a
/// normal client.
/// </summary>
public sealed class ServeConnectionFloodTests
{
    private const string ModelId = "stories260K-f32:llama-5x64-v512";
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(60);

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task WithLimitsAboveTheDescriptorLimitTheListenerKeepsDescriptorsFreeAndTheServerSurvivesAFlood()
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        Assert.SkipUnless(OperatingSystem.IsLinux(), "ulimit -n and /proc/<pid>/fd are Linux's.");

        // Server limits above the descriptor limit on purpose (before: EMFILE, then the runtime's "Out of memory." abort).
        // The TCP listener's own cap (1024 - 256 open connections) keeps descriptors for the runtime.
        await using var serve = ServeProcess.Start("--max-connections", "4000", "--max-connections-per-address", "4000", "--handshake-timeout", "3");
        var address = await serve.ListeningAsync();
        var flood = Flood(address, IPAddress.Loopback, 1000);
        var most = 0;
        try
        {
            var until = DateTime.UtcNow + TimeSpan.FromSeconds(6);
            while (DateTime.UtcNow < until)
            {
                serve.AssertRunning("under the flood");
                most = Math.Max(most, serve.OpenDescriptors());
                await Task.Delay(20, Ct);
            }
        }
        finally
        {
            foreach (var socket in flood)
            {
                socket.Dispose();
            }
        }

        Assert.InRange(most, 768, 1000);
        await AssertServesAsync(serve, address);
        var (code, stats) = await serve.StopAsync();
        Assert.True(code == 0, serve.Errors);
        Assert.True(stats.GetProperty("handshake_timeouts").GetInt64() > 0, stats.ToString());
    }

    [Fact]
    public async Task TheDefaultConnectionLimitDerivedFromTheDescriptorLimitRefusesAFloodBeforeDescriptorsRunOut()
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        Assert.SkipUnless(OperatingSystem.IsLinux(), "ulimit -n and /proc/<pid>/fd are Linux's.");

        // Under ulimit -n 1024 the default total is 512 connections; the per-address limit is lifted so that it applies.
        await using var serve = ServeProcess.Start("--max-connections-per-address", "4000", "--handshake-timeout", "2");
        var address = await serve.ListeningAsync();
        var flood = Flood(address, IPAddress.Parse("127.0.0.2"), 700);
        try
        {
            await AssertServesAsync(serve, address);
            Assert.InRange(serve.OpenDescriptors(), 1, 1000);
        }
        finally
        {
            foreach (var socket in flood)
            {
                socket.Dispose();
            }
        }

        var (code, stats) = await serve.StopAsync();
        Assert.True(code == 0, serve.Errors);
        Assert.True(stats.GetProperty("connections_refused").GetInt64() >= 700 - 512, stats.ToString());
    }

    [Fact]
    public async Task WithDefaultLimitsAFloodFromOneAddressIsRefusedAtOnceWhileAnotherAddressIsServed()
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        Assert.SkipUnless(OperatingSystem.IsLinux(), "127.0.0.2 is a loopback address on Linux.");
        await using var serve = ServeProcess.Start();
        var address = await serve.ListeningAsync();

        // 200 idle connections from 127.0.0.2: 64 are admitted (the per-address default), the rest refused at once.
        var flood = Flood(address, IPAddress.Parse("127.0.0.2"), 200);
        try
        {
            // A refused connection gets the server's preamble and error, then the end of the stream; an admitted one waits.
            using var wait = CancellationTokenSource.CreateLinkedTokenSource(Ct);
            wait.CancelAfter(TimeSpan.FromSeconds(5));
            var ended = await Task.WhenAll(flood.Select(async socket =>
            {
                var buffer = new byte[512];
                try
                {
                    while (await socket.ReceiveAsync(buffer, SocketFlags.None, wait.Token) > 0)
                    {
                    }

                    return true;
                }
                catch (OperationCanceledException) when (!Ct.IsCancellationRequested)
                {
                    return false;
                }
                catch (SocketException)
                {
                    return true;
                }
            }));
            var refused = ended.Count(e => e);
            Assert.Equal(200 - 64, refused);
            await AssertServesAsync(serve, address);
            serve.AssertRunning("during the flood");
        }
        finally
        {
            foreach (var socket in flood)
            {
                socket.Dispose();
            }
        }

        var (code, stats) = await serve.StopAsync();
        Assert.True(code == 0, serve.Errors);
        Assert.Equal(200 - 64, stats.GetProperty("connections_refused").GetInt64());
    }

    private static List<Socket> Flood(PeerAddress server, IPAddress from, int count)
    {
        var sockets = new List<Socket>(count);
        for (var i = 0; i < count; i++)
        {
            var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            sockets.Add(socket);
            socket.Bind(new IPEndPoint(from, 0));
            socket.Connect(new IPEndPoint(IPAddress.Loopback, server.Port));
        }

        return sockets;
    }

    /// <summary>A normal client: handshake and an info call (retried while the listener drains its backlog).</summary>
    private static async Task AssertServesAsync(ServeProcess serve, PeerAddress address)
    {
        var deadline = DateTime.UtcNow + Bound;
        while (true)
        {
            try
            {
                var connection = await ProtocolConnection.ConnectAsync(new TcpTransport(), address, new ConnectionPreamble("normal-client", ModelId), cancellationToken: Ct).WaitAsync(TimeSpan.FromSeconds(10), Ct);
                await using (connection)
                {
                    var inbox = Channel.CreateUnbounded<ProtocolMessage>();
                    var handler = new Inbox(inbox);
                    var reading = connection.RunAsync(handler, Ct);
                    await connection.SendAsync(connection.NewStreamId(), InfoRequest.Instance, Ct);
                    var info = Assert.IsType<InfoResponse>(await inbox.Reader.ReadAsync(Ct).AsTask().WaitAsync(TimeSpan.FromSeconds(10), Ct));
                    Assert.Equal(ModelId, info.ModelId);
                    return;
                }
            }
            catch (Exception e) when (e is TransportException or ProtocolException or TimeoutException && DateTime.UtcNow < deadline)
            {
                serve.AssertRunning("while a normal client retried (" + e.Message + ")");
                await Task.Delay(100, Ct);
            }
        }
    }

    private sealed class Inbox(Channel<ProtocolMessage> messages) : IProtocolMessageHandler
    {
        public ValueTask OnMessageAsync(ProtocolConnection connection, uint streamId, ProtocolMessage message, CancellationToken ct)
        {
            messages.Writer.TryWrite(message);
            return ValueTask.CompletedTask;
        }

        public void OnStreamFailed(ProtocolConnection connection, uint streamId, ProtocolException error) =>
            messages.Writer.TryWrite(ErrorMessage.From(error, ProtocolLimits.Default));
    }

    /// <summary><c>petals serve</c> started by bash under <c>ulimit -n 1024</c>; always killed on dispose.</summary>
    private sealed class ServeProcess : IAsyncDisposable
    {
        private readonly Process _process;
        private readonly List<string> _lines = [];
        private readonly Task _reading;
        private readonly Task<string> _errors;

        private ServeProcess(Process process)
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

        public bool HasExited => _process.HasExited;

        public void AssertRunning(string when)
        {
            if (_process.HasExited)
            {
                Assert.Fail($"petals serve exited ({_process.ExitCode}) {when}: {_errors.Result}");
            }
        }

        public string Errors => _errors.IsCompleted ? _errors.Result : "(stderr still open)";

        public static ServeProcess Start(params string[] extra)
        {
            var dll = Path.Combine(AppContext.BaseDirectory, "Petals.Cli.dll");
            var args = string.Join(' ', new[] { "serve", "--model", TestData.Stories260KGguf, "--blocks", "0:5", "--threads", "1" }.Concat(extra).Select(a => "'" + a + "'"));
            var info = new ProcessStartInfo("bash") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            info.ArgumentList.Add("-c");
            info.ArgumentList.Add($"ulimit -n 1024 && exec dotnet '{dll}' {args}");
            return new ServeProcess(Process.Start(info)!);
        }

        public int OpenDescriptors() => _process.HasExited ? 0 : Directory.GetFiles($"/proc/{_process.Id.ToString(CultureInfo.InvariantCulture)}/fd").Length;

        public async Task<PeerAddress> ListeningAsync()
        {
            var deadline = DateTime.UtcNow + Bound;
            while (true)
            {
                lock (_lines)
                {
                    if (_lines.FirstOrDefault(l => l.StartsWith("listening ", StringComparison.Ordinal)) is { } line)
                    {
                        return PeerAddress.Parse(line.Split(' ')[1]);
                    }
                }

                Assert.False(_process.HasExited && _reading.IsCompleted, $"petals serve exited ({(_process.HasExited ? _process.ExitCode : 0)}): {Errors}");
                Assert.True(DateTime.UtcNow < deadline, "petals serve printed no 'listening' line.");
                await Task.Delay(10, Ct);
            }
        }

        public async Task<(int ExitCode, JsonElement Stats)> StopAsync()
        {
            using (var kill = Process.Start("kill", ["-TERM", _process.Id.ToString(CultureInfo.InvariantCulture)])!)
            {
                await kill.WaitForExitAsync(Ct).WaitAsync(Bound, Ct);
            }

            await _process.WaitForExitAsync(Ct).WaitAsync(Bound, Ct);
            await _reading.WaitAsync(Bound, Ct);
            string stats;
            lock (_lines)
            {
                stats = _lines.Single(l => l.StartsWith("stats ", StringComparison.Ordinal));
            }

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
}
