namespace Petals.Chat.Jinja;

/// <summary>Builds <see cref="ChatTemplateException"/>s that name the line and column of a template offset.</summary>
internal static class JinjaErrors
{
    /// <summary>The 1-based line and column of <paramref name="offset"/> in <paramref name="source"/>.</summary>
    public static (int Line, int Column) Position(string source, int offset)
    {
        offset = Math.Clamp(offset, 0, source.Length);
        int line = 1;
        int lineStart = 0;
        for (int i = 0; i < offset; i++)
        {
            if (source[i] == '\n')
            {
                line++;
                lineStart = i + 1;
            }
        }

        return (line, offset - lineStart + 1);
    }

    /// <summary>A template that does not parse.</summary>
    public static ChatTemplateException Syntax(string message, string source, int offset)
    {
        var (line, column) = Position(source, offset);
        return new ChatTemplateException($"Chat template syntax error at line {line}, column {column}: {message}") { Line = line, Column = column };
    }

    /// <summary>A template that fails while rendering.</summary>
    public static ChatTemplateException Runtime(string message, string source, int offset)
    {
        var (line, column) = Position(source, offset);
        return new ChatTemplateException($"Chat template error at line {line}, column {column}: {message}") { Line = line, Column = column };
    }
}

/// <summary>An error while rendering, thrown inside the interpreter and given a position where it surfaces.</summary>
internal sealed class JinjaRuntimeException : Exception
{
    public JinjaRuntimeException()
    {
    }

    public JinjaRuntimeException(string message)
        : base(message)
    {
    }

    public JinjaRuntimeException(string message, Exception innerException)
        : base(message, innerException)
    {
    }

    /// <summary>The offset in the source of the node that failed, when known.</summary>
    public int? Offset { get; init; }
}
