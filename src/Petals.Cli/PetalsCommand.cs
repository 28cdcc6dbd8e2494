using System.CommandLine;
using System.Runtime.InteropServices;
using Petals.Cli.Commands;

namespace Petals.Cli;

/// <summary>The <c>petals</c> command line: a thin layer over the library.</summary>
internal static class PetalsCommand
{
    /// <summary>Builds the command tree, writing results to <paramref name="output"/> and diagnostics to <paramref name="error"/>.</summary>
    public static RootCommand Create(TextWriter output, TextWriter error)
    {
        var context = new CliContext(output, error);
        var root = new RootCommand("Petals for .NET: run large language models, locally or across a swarm.");
        root.Subcommands.Add(GenerateCommand.Create(context));
        root.Subcommands.Add(PerplexityCommand.Create(context));
        root.Subcommands.Add(FinetuneCommand.Create(context));
        root.Subcommands.Add(TokenizeCommand.Create(context));
        root.Subcommands.Add(ConvertCommand.Create(context));
        root.Subcommands.Add(ServeCommand.Create(context));
        root.Subcommands.Add(SwarmCommand.Create(context));
        root.Subcommands.Add(DhtCommand.Create(context));
        root.Subcommands.Add(StatusCommand.Create(context));
        root.Subcommands.Add(HealthCommand.Create(context));
        return root;
    }

    /// <summary>How long a command may take to stop after SIGTERM / Ctrl-C before the process exits anyway.</summary>
    internal static readonly TimeSpan TerminationGrace = TimeSpan.FromSeconds(30);

    /// <summary>Parses and runs <paramref name="args"/>; returns the process exit code.</summary>
    /// <remarks>
    /// SIGTERM and SIGINT (Ctrl-C) cancel the command's token and are otherwise swallowed, so a server can announce
    /// offline, end its sessions and print its statistics; if the command has not returned <see cref="TerminationGrace"/>
    /// later, the process exits with 128 + the signal number. This replaces System.CommandLine's own termination handling,
    /// which answers a signal that arrives before the command's first asynchronous wait (a command can print its ready
    /// line before that) by ending the process at once with 143 instead of waiting for the command.
    /// </remarks>
    public static async Task<int> RunAsync(string[] args, TextWriter output, TextWriter error, CancellationToken cancellationToken = default)
    {
        var root = Create(output, error);
        var parse = root.Parse(args);
        using var terminate = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        Timer? forceExit = null;
        void OnSignal(PosixSignalContext signal)
        {
            signal.Cancel = true;
            var code = signal.Signal == PosixSignal.SIGINT ? 130 : 143;
            if (Volatile.Read(ref forceExit) is null)
            {
                var timer = new Timer(_ => Environment.Exit(code), null, TerminationGrace, Timeout.InfiniteTimeSpan);
                if (Interlocked.CompareExchange(ref forceExit, timer, null) is not null)
                {
                    timer.Dispose();
                }
            }

            try
            {
                terminate.Cancel();
            }
            catch (ObjectDisposedException)
            {
                // The command already returned.
            }
        }

        using var sigterm = TryRegister(PosixSignal.SIGTERM, OnSignal);
        using var sigint = TryRegister(PosixSignal.SIGINT, OnSignal);
        var configuration = new InvocationConfiguration
        {
            Output = output, Error = error, EnableDefaultExceptionHandler = false, ProcessTerminationTimeout = null,
        };
        try
        {
            return await parse.InvokeAsync(configuration, terminate.Token).ConfigureAwait(false);
        }
        finally
        {
            if (Interlocked.Exchange(ref forceExit, null) is { } timer)
            {
                await timer.DisposeAsync().ConfigureAwait(false);
            }
        }
    }

    private static PosixSignalRegistration? TryRegister(PosixSignal signal, Action<PosixSignalContext> handler)
    {
        try
        {
            return PosixSignalRegistration.Create(signal, handler);
        }
        catch (PlatformNotSupportedException)
        {
            return null;
        }
    }
}
