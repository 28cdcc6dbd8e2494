namespace Petals.Tokenization;

/// <summary>
/// Incremental decoding: feed ids one at a time and receive the text they complete. Bytes of an
/// incomplete UTF-8 character are held back until the character is complete.
/// </summary>
/// <remarks>Not thread-safe. The concatenation of all returned pieces and <see cref="Flush"/> equals
/// <see cref="ITokenizer.Decode"/> of all ids.</remarks>
public interface IStreamingDecoder
{
    /// <summary>Adds one id and returns the newly completed text (possibly empty).</summary>
    /// <param name="id">A token id.</param>
    /// <returns>The text completed by this id.</returns>
    string Append(int id);

    /// <summary>Returns any text still held back (incomplete characters become U+FFFD) and resets the decoder.</summary>
    /// <returns>The remaining text.</returns>
    string Flush();
}
