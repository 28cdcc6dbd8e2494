using System.Reflection;

namespace Petals.Testing;

/// <summary>Locates the repository and the read-only ../shared folder (models, tokenizers) for tests.</summary>
internal static class TestData
{
    /// <summary>The repository root (where Petals.Library.sln is), baked in at build time.</summary>
    public static string RepositoryRoot { get; } =
        typeof(TestData).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>()
            .First(a => a.Key == "RepositoryRoot").Value!;

    /// <summary>The shared folder: $PETALS_SHARED when set, else ../shared beside the repository.</summary>
    public static string SharedRoot { get; } =
        Environment.GetEnvironmentVariable("PETALS_SHARED") is { Length: > 0 } env
            ? env
            : Path.GetFullPath(Path.Combine(RepositoryRoot, "..", "shared"));

    /// <summary>The real tiny Llama (stories260K, GGUF v1, f32).</summary>
    public static string Stories260KGguf => Path.Combine(SharedRoot, "models", "stories260K", "stories260K-f32.gguf");

    /// <summary>The Mistral 7B tokenizer directory (tokenizer.json + tokenizer_config.json).</summary>
    public static string MistralTokenizerDir => Path.Combine(SharedRoot, "tokenizers", "mistral");

    /// <summary>The Llama 3 tokenizer directory (tokenizer.json + tokenizer_config.json).</summary>
    public static string Llama3TokenizerDir => Path.Combine(SharedRoot, "tokenizers", "llama3");

    /// <summary>Whether the shared folder is present; tests that need it skip with <see cref="MissingMessage"/> otherwise.</summary>
    public static bool SharedAvailable => File.Exists(Stories260KGguf);

    /// <summary>The skip message when ../shared is absent.</summary>
    public static string MissingMessage => $"../shared is absent (looked in {SharedRoot}); set PETALS_SHARED to its path.";

    /// <summary>Creates a fresh temporary directory that the caller deletes.</summary>
    public static TempDirectory CreateTempDirectory() => new();
}

/// <summary>A temporary directory deleted on dispose.</summary>
internal sealed class TempDirectory : IDisposable
{
    public TempDirectory()
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "petals-tests-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(Path);
    }

    public string Path { get; }

    public void Dispose()
    {
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
