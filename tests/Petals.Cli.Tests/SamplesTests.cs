using System.Diagnostics;
using System.Reflection;
using Petals.Testing;

namespace Petals.Cli.Tests;

/// <summary>Every sample under samples/ runs to its end on the real tiny model and prints what its README promises.</summary>
public sealed class SamplesTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromMinutes(2);

    [Theory]
    [InlineData("LocalGeneration", "", "Once upon a time, there was")]
    [InlineData("InProcessSwarm", "", "recoveries: 1")]
    [InlineData("HostedServer", "--once", "served ")]
    [InlineData("MLPipeline", "", "held-out accuracy: Petals embeddings ")]
    [InlineData("MLPipeline", "--server", "reloaded model: \"Sue found a little bird in the garden.\" -> ")]
    [InlineData("ChatOverSwarm", "", "turn 3 usage: ")]
    [InlineData("ChatClientDI", "", "Activity.DisplayName:")]
    [InlineData("SemanticKernelChat", "", "kernel reply: ")]
    public async Task The_sample_runs_and_prints_its_result(string sample, string arguments, string expected)
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        var (code, output) = await RunAsync(sample, arguments);
        Assert.True(code == 0, $"{sample} exited with {code}:\n{output}");
        Assert.Contains(expected, output, StringComparison.Ordinal);
    }

    /// <summary>Runs the sample's built assembly (same configuration as these tests) with the dotnet host; stdout and stderr together.</summary>
    private static async Task<(int Code, string Output)> RunAsync(string sample, string arguments)
    {
        var root = typeof(SamplesTests).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>().Single(a => a.Key == "RepositoryRoot").Value!;
        // These tests' own output is bin/<configuration>/net10.0/ (or, with PETALS_ARTIFACTS, <artifacts>/bin/<project>/<configuration>/).
        var own = new DirectoryInfo(Path.TrimEndingDirectorySeparator(AppContext.BaseDirectory));
        string[] candidates =
        [
            Path.Combine(root, "samples", sample, "bin", own.Parent!.Name, own.Name, sample + ".dll"),
            Path.Combine(own.Parent.Parent!.FullName, sample, own.Name, sample + ".dll"),
        ];
        var dll = candidates.FirstOrDefault(File.Exists);
        Assert.True(dll is not null, $"the sample was not built: none of {string.Join(", ", candidates)}");
        var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        info.ArgumentList.Add(dll);
        foreach (var argument in arguments.Split(' ', StringSplitOptions.RemoveEmptyEntries))
        {
            info.ArgumentList.Add(argument);
        }

        using var process = Process.Start(info)!;
        var stdout = process.StandardOutput.ReadToEndAsync(TestContext.Current.CancellationToken);
        var stderr = process.StandardError.ReadToEndAsync(TestContext.Current.CancellationToken);
        try
        {
            await process.WaitForExitAsync(TestContext.Current.CancellationToken).WaitAsync(Bound, TestContext.Current.CancellationToken);
        }
        finally
        {
            if (!process.HasExited)
            {
                process.Kill(entireProcessTree: true);
            }
        }

        return (process.ExitCode, await stdout + await stderr);
    }
}
