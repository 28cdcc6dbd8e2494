using System.Collections.Concurrent;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Petals.Backends.Cpu;
using Petals.Client;
using Petals.Generation;
using Petals.Hosting;
using Petals.Models;
using Petals.Protocol;
using Petals.Server;
using Petals.Testing;
using Petals.Testing.Time;
using Petals.Testing.Transport;
using Petals.Transport;
using Petals.Transport.Quic;
using Petals.Transport.Tcp;

namespace Petals.Tests.Hosting;

/// <summary>
/// The DI composition end to end: real hosts (Microsoft.Extensions.Hosting) running block servers from
/// <c>AddPetalsServer().UseCpuExecutor().Use…Transport()</c> and clients from <c>AddPetalsClient().Use…Transport()</c>.
/// </summary>
public sealed class PetalsHostingTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(60);
    private static readonly GenerationOptions Greedy = new() { MaxNewTokens = 16, StopTokenIds = [] };

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Two_hosted_servers_and_a_hosted_client_over_memory_generate_exactly_what_local_greedy_generation_does()
    {
        RequireSharedModel();
        var path = TestData.Stories260KGguf;
        var network = new MemoryTransport();
        var logs = new CapturingLoggerProvider();
        using var first = BuildHost(s => s.AddPetalsServer(o => Server(o, path, new(0, 2), "mem://first")).UseCpuExecutor(Threads).UseMemoryTransport(network), logs);
        using var second = BuildHost(s => s.AddPetalsServer(o => Server(o, path, new(2, 5), "mem://second")).UseCpuExecutor(Threads).UseMemoryTransport(network), logs);
        using var client = BuildHost(s => s.AddPetalsClient(o => Client(o, path, "mem://first", "mem://second")).UseMemoryTransport(network), logs);
        await first.StartAsync(Ct).WaitAsync(Bound, Ct);
        await second.StartAsync(Ct).WaitAsync(Bound, Ct);
        await client.StartAsync(Ct).WaitAsync(Bound, Ct);

        var server = first.Services.GetRequiredService<IPetalsServer>();
        Assert.True(server.IsRunning);
        Assert.Equal("mem://first", server.LocalAddress.ToString());
        Assert.Equal(new BlockRange(0, 2), server.Blocks);

        using var remote = await client.Services.GetRequiredService<IPetalsClient>().ConnectAsync(Ct).WaitAsync(Bound, Ct);
        var spans = Assert.IsType<RemoteTransformerBlocks>(remote.Blocks).Spans;
        Assert.Equal([new BlockRange(0, 2), new BlockRange(2, 5)], spans.Select(s => s.Blocks));
        using var local = CausalLanguageModel.LoadLocal(path, new CpuBlockExecutorFactory(new CpuExecutorOptions { ThreadCount = 2 }));
        var prompt = local.EncodePrompt("Once upon a time");
        var expected = await local.GenerateAsync(prompt, Greedy, Ct).ToListAsync(Ct).AsTask().WaitAsync(Bound, Ct);
        var actual = await remote.GenerateAsync(prompt, Greedy, Ct).ToListAsync(Ct).AsTask().WaitAsync(Bound, Ct);
        Assert.Equal(16, expected.Count);
        Assert.Equal(expected, actual);
        Assert.True(server.GetStatistics().InferenceSteps > 0);

        // Both servers logged where they listen; the client logged its connection.
        Assert.Contains(logs.Messages, m => m.StartsWith("Petals server listening on mem://first", StringComparison.Ordinal));
        Assert.Contains(logs.Messages, m => m.StartsWith("Petals server listening on mem://second", StringComparison.Ordinal));
        Assert.Contains(logs.Messages, m => m == "Petals client connected: 2 spans cover 5 blocks");

        await client.StopAsync(Ct).WaitAsync(Bound, Ct);
        await second.StopAsync(Ct).WaitAsync(Bound, Ct);
        await first.StopAsync(Ct).WaitAsync(Bound, Ct);
        Assert.Contains(logs.Messages, m => m.StartsWith("Petals server on mem://first stopped: 1 connections, 1 sessions", StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_hosted_server_over_tcp_on_a_free_port_serves_a_hosted_client_and_stopping_the_host_stops_it()
    {
        RequireSharedModel();
        var path = TestData.Stories260KGguf;
        using var serverHost = BuildHost(s => s.AddPetalsServer(o => Server(o, path, new(0, 5), "tcp://127.0.0.1:0")).UseCpuExecutor(Threads).UseTcpTransport());
        await serverHost.StartAsync(Ct).WaitAsync(Bound, Ct);
        var server = serverHost.Services.GetRequiredService<IPetalsServer>();
        var address = server.LocalAddress;
        Assert.Equal("tcp", address.Scheme);
        Assert.NotEqual(0, address.Port);

        using var clientHost = BuildHost(s => s.AddPetalsClient(o => Client(o, path, address.ToString())).UseTcpTransport(t => t.ConnectTimeout = TimeSpan.FromSeconds(20)));
        await clientHost.StartAsync(Ct).WaitAsync(Bound, Ct);
        var client = clientHost.Services.GetRequiredService<IPetalsClient>();
        using (var remote = await client.ConnectAsync(Ct).WaitAsync(Bound, Ct))
        {
            using var local = CausalLanguageModel.LoadLocal(path, new CpuBlockExecutorFactory(new CpuExecutorOptions { ThreadCount = 2 }));
            var prompt = local.EncodePrompt("The little dog");
            var expected = await local.GenerateAsync(prompt, Greedy, Ct).ToListAsync(Ct).AsTask().WaitAsync(Bound, Ct);
            var actual = await remote.GenerateAsync(prompt, Greedy, Ct).ToListAsync(Ct).AsTask().WaitAsync(Bound, Ct);
            Assert.Equal(expected, actual);
        }

        await serverHost.StopAsync(Ct).WaitAsync(Bound, Ct);
        Assert.False(server.IsRunning);
        Assert.Throws<InvalidOperationException>(() => server.LocalAddress);
        Assert.Equal(1, server.GetStatistics().SessionsOpened);
        var refused = await Assert.ThrowsAsync<TransportException>(() => client.ConnectAsync(Ct).WaitAsync(Bound, Ct));
        Assert.Equal(TransportErrorKind.ConnectionRefused, refused.Kind);
    }

    [Fact]
    public async Task A_hosted_server_over_tls_is_named_by_its_key_and_clients_refuse_one_whose_handshake_claims_another_id()
    {
        RequireSharedModel();
        var path = TestData.Stories260KGguf;
        using var key = TlsPeerIdentity.Create();
        using var honestHost = BuildHost(s => s.AddPetalsServer(o =>
        {
            Server(o, path, new(0, 5), "tls://127.0.0.1:0");
            o.Server.PeerId = new BlockServerOptions().PeerId; // left at its default: the key names it
        }).UseCpuExecutor(Threads).UseTcpTransport(t => t.Identity = key));
        await honestHost.StartAsync(Ct).WaitAsync(Bound, Ct);
        var honest = honestHost.Services.GetRequiredService<IPetalsServer>();
        Assert.Equal(key.PeerId, honest.LocalAddress.PeerId);
        Assert.Equal(key.ShortPeerId, honest.PeerId);

        // Pinned by the short id (the handshake's), the client connects and reads the proven key's server.
        using (var clientHost = BuildHost(s => s.AddPetalsClient(o => Client(o, path, honest.LocalAddress.WithPeerId(key.ShortPeerId).ToString())).UseTcpTransport()))
        {
            await clientHost.StartAsync(Ct).WaitAsync(Bound, Ct);
            using var remote = await clientHost.Services.GetRequiredService<IPetalsClient>().ConnectAsync(Ct).WaitAsync(Bound, Ct);
            Assert.Equal(key.ShortPeerId, Assert.Single(((RemoteTransformerBlocks)remote.Blocks).Spans).PeerId);
        }

        // A server that proves its own key but introduces itself as someone else ("server-0") is refused.
        using var liarKey = TlsPeerIdentity.Create();
        using var liarHost = BuildHost(s => s.AddPetalsServer(o => Server(o, path, new(0, 5), "tls://127.0.0.1:0")).UseCpuExecutor(Threads).UseTcpTransport(t => t.Identity = liarKey));
        await liarHost.StartAsync(Ct).WaitAsync(Bound, Ct);
        var liar = liarHost.Services.GetRequiredService<IPetalsServer>();
        Assert.Equal("server-0", liar.PeerId);
        using var victimClient = BuildHost(s => s.AddPetalsClient(o => Client(o, path, liar.LocalAddress.ToString())).UseTcpTransport());
        await victimClient.StartAsync(Ct).WaitAsync(Bound, Ct);
        var refused = await Assert.ThrowsAsync<TransportException>(() => victimClient.Services.GetRequiredService<IPetalsClient>().ConnectAsync(Ct).WaitAsync(Bound, Ct));
        Assert.Equal(TransportErrorKind.AuthenticationFailed, refused.Kind);
        Assert.Contains($"proved the key {liarKey.PeerId} but its handshake claims the peer id 'server-0'", refused.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_server_without_a_transport_or_an_executor_fails_at_start_naming_the_missing_use_call()
    {
        RequireSharedModel();
        var path = TestData.Stories260KGguf;
        using var noTransport = BuildHost(s => s.AddPetalsServer(o => Server(o, path, new(0, 5), "mem://a")).UseCpuExecutor());
        var e = await Assert.ThrowsAsync<OptionsValidationException>(() => noTransport.StartAsync(Ct).WaitAsync(Bound, Ct));
        var failure = Assert.Single(e.Failures);
        Assert.StartsWith("AddPetalsServer has no transport: call UseTcpTransport()", failure, StringComparison.Ordinal);
        Assert.Contains("UseMemoryTransport(", failure, StringComparison.Ordinal);

        using var noExecutor = BuildHost(s => s.AddPetalsServer(o => Server(o, path, new(0, 5), "mem://b")).UseMemoryTransport(new MemoryTransport()));
        e = await Assert.ThrowsAsync<OptionsValidationException>(() => noExecutor.StartAsync(Ct).WaitAsync(Bound, Ct));
        Assert.Equal(
            "AddPetalsServer has no block executor: call UseCpuExecutor() (package Petals.Backends.Cpu) or UseExecutor(…) on the server builder.",
            Assert.Single(e.Failures));

        using var client = BuildHost(s => s.AddPetalsClient(o => Client(o, path, "mem://a")));
        e = await Assert.ThrowsAsync<OptionsValidationException>(() => client.StartAsync(Ct).WaitAsync(Bound, Ct));
        Assert.StartsWith("AddPetalsClient has no transport: call UseTcpTransport()", Assert.Single(e.Failures), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Invalid_server_options_fail_at_start_with_one_precise_message_per_setting()
    {
        var network = new MemoryTransport();
        using var host = BuildHost(s => s.AddPetalsServer(o =>
        {
            o.ModelPath = "/nonexistent/model.gguf";
            o.Blocks = default(BlockRange); // an empty span (null would mean: placed by the swarm)
            o.ListenAddress = "127.0.0.1:5000";
            o.ModelId = string.Empty;
            o.Server.CacheTokens = 0;
            o.Server.Limits = new ProtocolLimits { MaxFrameSize = 16 };
        }).UseCpuExecutor().UseMemoryTransport(network));
        var e = await Assert.ThrowsAsync<OptionsValidationException>(() => host.StartAsync(Ct).WaitAsync(Bound, Ct));
        Assert.Equal(
            [
                "PetalsServerOptions.ModelPath '/nonexistent/model.gguf' does not exist.",
                "PetalsServerOptions.Blocks must name at least one block (e.g. new BlockRange(0, 4)), or be null to let the swarm place the server, not 0:0.",
                "PetalsServerOptions.ListenAddress '127.0.0.1:5000' is not a peer address scheme://location (e.g. tcp://127.0.0.1:0 or mem://server-1).",
                "PetalsServerOptions.ModelId must not be empty (leave it null to compute it from the model).",
                "PetalsServerOptions.Server.Limits.MaxFrameSize: MaxFrameSize ('16') must be greater than or equal to '1024'.",
                "PetalsServerOptions.Server.CacheTokens: CacheTokens ('0') must be a non-negative and non-zero value.",
            ],
            e.Failures);
        Assert.False(host.Services.GetRequiredService<IPetalsServer>().IsRunning);
    }

    [Fact]
    public async Task A_span_past_the_models_blocks_and_a_bad_executor_option_fail_at_start()
    {
        RequireSharedModel();
        var path = TestData.Stories260KGguf;
        using var past = BuildHost(s => s.AddPetalsServer(o => Server(o, path, new(3, 9), "mem://x")).UseCpuExecutor().UseMemoryTransport(new MemoryTransport()));
        var e = await Assert.ThrowsAsync<OptionsValidationException>(() => past.StartAsync(Ct).WaitAsync(Bound, Ct));
        Assert.Equal($"PetalsServerOptions.Blocks 3:9 goes past the model's 5 blocks ({path}).", Assert.Single(e.Failures));

        using var threads = BuildHost(s => s.AddPetalsServer(o => Server(o, path, new(0, 5), "mem://y")).UseCpuExecutor(c => c.ThreadCount = 0).UseMemoryTransport(new MemoryTransport()));
        var bad = await Assert.ThrowsAnyAsync<ArgumentException>(() => threads.StartAsync(Ct).WaitAsync(Bound, Ct));
        Assert.Contains("ThreadCount", bad.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Invalid_client_options_fail_at_start_and_on_connect_with_precise_messages()
    {
        RequireSharedModel();
        var network = new MemoryTransport();
        Action<PetalsClientOptions> configure = o =>
        {
            o.ModelPath = TestData.Stories260KGguf;
            o.Peers.Add("mem://ok");
            o.Peers.Add("no-scheme");
            o.Sequence.ConnectTimeout = TimeSpan.Zero;
            o.Sequence.PeerId = string.Empty;
            o.Swarm.Router.AllowedPeers.Add("peer-a");
            o.Swarm.Router.BlockedPeers.Add("peer-a");
        };
        string[] expected =
        [
            "PetalsClientOptions.Peers[1] 'no-scheme' is not a peer address scheme://location (e.g. tcp://127.0.0.1:5000).",
            "PetalsClientOptions.Sequence.PeerId must not be empty (the default is a random client id).",
            "PetalsClientOptions.Sequence.ConnectTimeout: ConnectTimeout must be positive.",
            "PetalsClientOptions.Swarm.Router.BlockedPeers: Peer 'peer-a' is in both AllowedPeers and BlockedPeers.",
        ];
        using var host = BuildHost(s => s.AddPetalsClient(configure).UseMemoryTransport(network));
        var e = await Assert.ThrowsAsync<OptionsValidationException>(() => host.StartAsync(Ct).WaitAsync(Bound, Ct));
        Assert.Equal(expected, e.Failures);

        // Without a host (a plain container), the same check runs on connect.
        var services = new ServiceCollection();
        services.AddPetalsClient(configure).UseMemoryTransport(network);
        await using var provider = services.BuildServiceProvider();
        e = await Assert.ThrowsAsync<OptionsValidationException>(() => provider.GetRequiredService<IPetalsClient>().ConnectAsync(Ct).WaitAsync(Bound, Ct));
        Assert.Equal(expected, e.Failures);

        var empty = new ServiceCollection();
        empty.AddPetalsClient(o => o.ModelPath = string.Empty).UseMemoryTransport(network);
        await using var emptyProvider = empty.BuildServiceProvider();
        e = await Assert.ThrowsAsync<OptionsValidationException>(() => emptyProvider.GetRequiredService<IPetalsClient>().ConnectAsync(Ct).WaitAsync(Bound, Ct));
        Assert.Equal(
            [
                "PetalsClientOptions.ModelPath is required: the .gguf file or Hugging Face directory of the model.",
                "AddPetalsClient has no way to find servers: list them in PetalsClientOptions.Peers (e.g. tcp://127.0.0.1:5000), "
                    + "or call UseDhtDiscovery(…) (Petals.Discovery) or UseDiscovery(…) on the client builder.",
            ],
            e.Failures);
    }

    [Fact]
    public async Task The_servers_knobs_model_id_and_the_containers_clock_reach_the_block_server()
    {
        RequireSharedModel();
        var path = TestData.Stories260KGguf;
        var network = new MemoryTransport();
        var time = new ManualTimeProvider();
        using var serverHost = BuildHost(s =>
        {
            s.AddSingleton<TimeProvider>(time);
            s.AddPetalsServer(o =>
            {
                Server(o, path, new(0, 5), "mem://clocked");
                o.ModelId = "stories-custom";
                o.Server.CacheTokens = 1024;
                o.Server.SessionIdleTimeout = TimeSpan.FromMinutes(10); // Far beyond the test's bound on the real clock.
            }).UseCpuExecutor(Threads).UseMemoryTransport(network);
        });
        await serverHost.StartAsync(Ct).WaitAsync(Bound, Ct);
        var server = serverHost.Services.GetRequiredService<IPetalsServer>();
        Assert.Equal("stories-custom", server.ModelId);
        Assert.Equal(1024, server.GetStatistics().CacheTokens);

        // A client announcing the model's default id is refused; one naming the server's id gets in.
        using var wrongId = BuildHost(s => s.AddPetalsClient(o => Client(o, path, "mem://clocked")).UseMemoryTransport(network));
        var refused = await Assert.ThrowsAsync<ProtocolException>(() => wrongId.Services.GetRequiredService<IPetalsClient>().ConnectAsync(Ct).WaitAsync(Bound, Ct));
        Assert.Contains("is for model 'stories-custom'", refused.Message, StringComparison.Ordinal);
        using var clientHost = BuildHost(s => s.AddPetalsClient(o =>
        {
            Client(o, path, "mem://clocked");
            o.ModelId = "stories-custom";
        }).UseMemoryTransport(network));
        using var model = await clientHost.Services.GetRequiredService<IPetalsClient>().ConnectAsync(Ct).WaitAsync(Bound, Ct);
        await using var session = await model.Blocks.OpenSessionAsync(batchSize: 1, maxLength: 64, Ct);
        await session.ForwardAsync(new float[model.Config.HiddenSize], 1, Ct).AsTask().WaitAsync(Bound, Ct);
        Assert.Equal(1, server.GetStatistics().ActiveSessions);
        Assert.Equal(1024 - 64, server.GetStatistics().CacheTokensLeft);

        // Only the manual clock moves: the server's idle sweeper must be running on it.
        time.Advance(TimeSpan.FromMinutes(11));
        var deadline = DateTime.UtcNow + Bound;
        while (server.GetStatistics() is { ActiveSessions: > 0 } or { CacheTokensLeft: < 1024 })
        {
            Assert.True(DateTime.UtcNow < deadline, "the idle session was not freed by the container's clock");
            await Task.Delay(20, Ct);
        }

        await serverHost.StopAsync(Ct).WaitAsync(Bound, Ct);
    }

    [Fact]
    public async Task Without_a_host_the_hosted_service_can_be_started_and_stopped_by_hand()
    {
        RequireSharedModel();
        var path = TestData.Stories260KGguf;
        var network = new MemoryTransport();
        var services = new ServiceCollection();
        services.AddPetalsServer(o => Server(o, path, new(0, 5), "mem://manual")).UseCpuExecutor(Threads).UseMemoryTransport(network);
        services.AddPetalsClient(o => Client(o, path, "mem://manual")).UseMemoryTransport(network);
        await using var provider = services.BuildServiceProvider();
        var hosted = Assert.Single(provider.GetServices<IHostedService>());
        await hosted.StartAsync(Ct).WaitAsync(Bound, Ct);
        await Assert.ThrowsAsync<InvalidOperationException>(() => hosted.StartAsync(Ct).WaitAsync(Bound, Ct));

        var client = provider.GetRequiredService<IPetalsClient>();
        using (var model = await client.ConnectAsync(Ct).WaitAsync(Bound, Ct))
        {
            var tokens = await model.GenerateAsync(model.EncodePrompt("Lily"), Greedy with { MaxNewTokens = 3 }, Ct).ToListAsync(Ct).AsTask().WaitAsync(Bound, Ct);
            Assert.Equal(3, tokens.Count);
        }

        await hosted.StopAsync(Ct).WaitAsync(Bound, Ct);
        var refused = await Assert.ThrowsAsync<TransportException>(() => client.ConnectAsync(Ct).WaitAsync(Bound, Ct));
        Assert.Equal(TransportErrorKind.ConnectionRefused, refused.Kind);
    }

    [Fact]
    public async Task Disposing_a_container_synchronously_stops_a_server_that_still_runs()
    {
        RequireSharedModel();
        var network = new MemoryTransport();
        var services = new ServiceCollection();
        services.AddPetalsServer(o => Server(o, TestData.Stories260KGguf, new(0, 5), "mem://disposed")).UseCpuExecutor(Threads).UseMemoryTransport(network);
        var provider = services.BuildServiceProvider();
        await provider.GetRequiredService<IHostedService>().StartAsync(Ct).WaitAsync(Bound, Ct);
        var server = provider.GetRequiredService<IPetalsServer>();
        Assert.True(server.IsRunning);
        await using (await network.ConnectAsync(PeerAddress.Parse("mem://disposed"), Ct).AsTask().WaitAsync(Bound, Ct))
        {
        }

        await Task.Run(provider.Dispose, Ct).WaitAsync(Bound, Ct);
        Assert.False(server.IsRunning);
        var refused = await Assert.ThrowsAsync<TransportException>(() => network.ConnectAsync(PeerAddress.Parse("mem://disposed"), Ct).AsTask().WaitAsync(Bound, Ct));
        Assert.Equal(TransportErrorKind.ConnectionRefused, refused.Kind);
    }

    [Fact]
    [System.Runtime.Versioning.SupportedOSPlatform("linux")] // Skipped elsewhere: the check below.
    public async Task Quic_where_it_is_unsupported_fails_at_start_with_the_reason()
    {
        if (!OperatingSystem.IsLinux() || QuicTransport.IsSupported)
        {
            Assert.Skip("QUIC (libmsquic) is available here, or this is not Linux; this test covers Linux machines without libmsquic.");
        }

        RequireSharedModel();
        var path = TestData.Stories260KGguf;
        using var server = BuildHost(s => s.AddPetalsServer(o => Server(o, path, new(0, 5), "quic://127.0.0.1:0")).UseCpuExecutor().UseQuicTransport());
        var e = await Assert.ThrowsAsync<OptionsValidationException>(() => server.StartAsync(Ct).WaitAsync(Bound, Ct));
        Assert.Equal(QuicTransport.UnsupportedMessage, Assert.Single(e.Failures));

        using var client = BuildHost(s => s.AddPetalsClient(o => Client(o, path, "quic://127.0.0.1:4433")).UseQuicTransport());
        e = await Assert.ThrowsAsync<OptionsValidationException>(() => client.StartAsync(Ct).WaitAsync(Bound, Ct));
        Assert.Equal(QuicTransport.UnsupportedMessage, Assert.Single(e.Failures));
    }

    private static void Threads(CpuExecutorOptions options) => options.ThreadCount = 2;

    private static void Server(PetalsServerOptions options, string path, BlockRange blocks, string address)
    {
        options.ModelPath = path;
        options.Blocks = blocks;
        options.ListenAddress = address;
        options.Server.PeerId = "server-" + blocks.Start;
    }

    private static void Client(PetalsClientOptions options, string path, params string[] peers)
    {
        options.ModelPath = path;
        foreach (var peer in peers)
        {
            options.Peers.Add(peer);
        }
    }

    private static void RequireSharedModel()
    {
        if (!TestData.SharedAvailable)
        {
            Assert.Skip(TestData.MissingMessage);
        }
    }

    private static IHost BuildHost(Action<IServiceCollection> configure, CapturingLoggerProvider? logs = null)
    {
        var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        if (logs is not null)
        {
            builder.Logging.AddProvider(logs);
        }

        configure(builder.Services);
        return builder.Build();
    }

    /// <summary>Keeps every formatted log message of categories under <c>Petals.</c>.</summary>
    private sealed class CapturingLoggerProvider : ILoggerProvider
    {
        private readonly ConcurrentQueue<string> _messages = new();

        public IReadOnlyCollection<string> Messages => _messages.ToArray();

        public ILogger CreateLogger(string categoryName) => new Logger(categoryName.StartsWith("Petals.", StringComparison.Ordinal) ? _messages : null);

        public void Dispose()
        {
        }

        private sealed class Logger(ConcurrentQueue<string>? messages) : ILogger
        {
            public IDisposable? BeginScope<TState>(TState state)
                where TState : notnull => null;

            public bool IsEnabled(LogLevel logLevel) => messages is not null;

            public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
                messages?.Enqueue(formatter(state, exception));
        }
    }
}
