using System.CommandLine;
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
        root.Subcommands.Add(TokenizeCommand.Create(context));
        root.Subcommands.Add(ConvertCommand.Create(context));
        root.Subcommands.Add(ServeCommand.Create(context));
        root.Subcommands.Add(SwarmCommand.Create(context));
        root.Subcommands.Add(DhtCommand.Create(context));
        root.Subcommands.Add(StatusCommand.Create(context));
        return root;
    }

    /// <summary>Parses and runs <paramref name="args"/>; returns the process exit code.</summary>
    public static async Task<int> RunAsync(string[] args, TextWriter output, TextWriter error, CancellationToken cancellationToken = default)
    {
        var root = Create(output, error);
        var parse = root.Parse(args);
        // On SIGTERM / Ctrl-C System.CommandLine cancels the command's token, then ends the process with 143 / 130 if the
        // command has not returned within ProcessTerminationTimeout (default 2 s). A serving process needs longer to stop
        // cleanly on a loaded machine (announce offline in the DHT, end sessions, print its stats): give it 30 s.
        var configuration = new InvocationConfiguration
        {
            Output = output, Error = error, EnableDefaultExceptionHandler = false, ProcessTerminationTimeout = TimeSpan.FromSeconds(30),
        };
        return await parse.InvokeAsync(configuration, cancellationToken).ConfigureAwait(false);
    }
}
