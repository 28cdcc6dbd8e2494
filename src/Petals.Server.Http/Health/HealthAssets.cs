using System.Collections.Frozen;

namespace Petals.Server.Http.Health;

/// <summary>The monitor's page, script and style, read once from the assembly's embedded resources.</summary>
internal sealed class HealthAssets
{
    private const string Prefix = "Petals.Server.Http.Health.Assets.";

    public HealthAssets()
    {
        var assembly = typeof(HealthAssets).Assembly;
        var files = new Dictionary<string, byte[]>(StringComparer.Ordinal);
        foreach (var name in assembly.GetManifestResourceNames())
        {
            if (!name.StartsWith(Prefix, StringComparison.Ordinal))
            {
                continue;
            }

            using var stream = assembly.GetManifestResourceStream(name)!;
            using var copy = new MemoryStream();
            stream.CopyTo(copy);
            files[name[Prefix.Length..]] = copy.ToArray();
        }

        Files = files.ToFrozenDictionary(StringComparer.Ordinal);
    }

    /// <summary>The files by name (e.g. <c>health.js</c>).</summary>
    public FrozenDictionary<string, byte[]> Files { get; }

    public static string ContentType(string name) => Path.GetExtension(name) switch
    {
        ".js" => "text/javascript; charset=utf-8",
        ".css" => "text/css; charset=utf-8",
        ".html" => "text/html; charset=utf-8",
        ".svg" => "image/svg+xml",
        _ => "application/octet-stream",
    };
}
