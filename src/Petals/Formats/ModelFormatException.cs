namespace Petals.Formats;

/// <summary>
/// A model or tokenizer file is malformed or disagrees with its configuration. The message names the
/// file and the field or tensor at fault; <see cref="FilePath"/> and <see cref="Field"/> carry them for callers.
/// </summary>
/// <remarks>Every format reader in this library lets only this exception type escape for bad input.</remarks>
public sealed class ModelFormatException : Exception
{
    /// <summary>Creates the exception.</summary>
    /// <param name="filePath">The file (or directory) at fault.</param>
    /// <param name="field">The header field, metadata key or tensor name at fault, if known.</param>
    /// <param name="message">What is wrong.</param>
    /// <param name="innerException">The underlying error, if any.</param>
    public ModelFormatException(string filePath, string? field, string message, Exception? innerException = null)
        : base(Format(filePath, field, message), innerException)
    {
        FilePath = filePath;
        Field = field;
    }

    /// <summary>The file (or directory) at fault.</summary>
    public string FilePath { get; }

    /// <summary>The field, metadata key or tensor at fault, if known.</summary>
    public string? Field { get; }

    private static string Format(string filePath, string? field, string message) =>
        field is null ? $"{filePath}: {message}" : $"{filePath}: '{field}': {message}";
}
