namespace Petals.Discovery;

/// <summary>Bytes that are not a valid encoding of DHT records: truncated, oversized or malformed. The message names the field and offset.</summary>
public sealed class DhtFormatException : FormatException
{
    /// <summary>Creates the exception.</summary>
    public DhtFormatException()
        : this("Malformed DHT record encoding.")
    {
    }

    /// <summary>Creates the exception with a message.</summary>
    /// <param name="message">The explanation.</param>
    public DhtFormatException(string message)
        : base(message)
    {
    }

    /// <summary>Creates the exception with a message and cause.</summary>
    /// <param name="message">The explanation.</param>
    /// <param name="innerException">The cause.</param>
    public DhtFormatException(string message, Exception innerException)
        : base(message, innerException)
    {
    }

    /// <summary>Creates the exception for a field at an offset.</summary>
    /// <param name="field">The field at fault, e.g. <c>"value length"</c>.</param>
    /// <param name="offset">The byte offset of the field in the input.</param>
    /// <param name="message">What is wrong with it.</param>
    public DhtFormatException(string field, int offset, string message)
        : base($"DHT record encoding: {field} at offset {offset}: {message}")
    {
        Field = field;
        Offset = offset;
    }

    /// <summary>The field at fault, when known.</summary>
    public string? Field { get; }

    /// <summary>The byte offset of the field, or -1 when unknown.</summary>
    public int Offset { get; } = -1;
}
