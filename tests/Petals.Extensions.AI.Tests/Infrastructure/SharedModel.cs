using Petals.Backends.Cpu;
using Petals.Generation;
using Petals.Testing;

namespace Petals.Extensions.AI.Tests.Infrastructure;

/// <summary>The shared real tiny Llama (stories260K), loaded with every block in this process.</summary>
internal static class SharedModel
{
    public static string Path => TestData.Stories260KGguf;

    /// <summary>Skips the test when ../shared is absent.</summary>
    public static void SkipIfAbsent() => Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);

    /// <summary>A fresh local model (the caller disposes it), one compute thread so that tests in parallel share the CPUs.</summary>
    public static CausalLanguageModel LoadLocal() =>
        CausalLanguageModel.LoadLocal(Path, new CpuBlockExecutorFactory(new CpuExecutorOptions { ThreadCount = 1 }));
}
