namespace Petals.Tokenization.HuggingFace;

/// <summary>GPT-2's reversible map between bytes and printable characters used by byte-level BPE.</summary>
internal static class ByteLevelAlphabet
{
    /// <summary>Character for each byte value.</summary>
    public static readonly char[] ByteToChar = BuildByteToChar();

    /// <summary>Byte for each character below 324, or -1.</summary>
    public static readonly short[] CharToByte = BuildCharToByte();

    private static char[] BuildByteToChar()
    {
        var map = new char[256];
        int next = 0;
        for (int b = 0; b < 256; b++)
        {
            bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            map[b] = printable ? (char)b : (char)(256 + next++);
        }

        return map;
    }

    private static short[] BuildCharToByte()
    {
        var map = new short[324];
        Array.Fill(map, (short)-1);
        for (int b = 0; b < 256; b++)
        {
            map[ByteToChar[b]] = (short)b;
        }

        return map;
    }

    /// <summary>Maps the UTF-8 bytes of <paramref name="text"/> to byte-level characters.</summary>
    public static string Encode(ReadOnlySpan<char> text)
    {
        int byteCount = System.Text.Encoding.UTF8.GetByteCount(text);
        byte[] rented = System.Buffers.ArrayPool<byte>.Shared.Rent(byteCount);
        char[] rentedChars = System.Buffers.ArrayPool<char>.Shared.Rent(byteCount);
        try
        {
            Span<byte> bytes = rented.AsSpan(0, byteCount);
            System.Text.Encoding.UTF8.GetBytes(text, bytes);
            Span<char> chars = rentedChars.AsSpan(0, byteCount);
            for (int i = 0; i < byteCount; i++)
            {
                chars[i] = ByteToChar[bytes[i]];
            }

            return new string(chars);
        }
        finally
        {
            System.Buffers.ArrayPool<byte>.Shared.Return(rented);
            System.Buffers.ArrayPool<char>.Shared.Return(rentedChars);
        }
    }

    /// <summary>Appends the bytes a byte-level token stands for; false (and nothing appended) when a character is not byte-level.</summary>
    public static bool TryDecode(string token, List<byte> output)
    {
        foreach (char c in token)
        {
            if (c >= CharToByte.Length || CharToByte[c] < 0)
            {
                return false;
            }
        }

        foreach (char c in token)
        {
            output.Add((byte)CharToByte[c]);
        }

        return true;
    }
}
