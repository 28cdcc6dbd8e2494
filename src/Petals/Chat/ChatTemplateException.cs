namespace Petals.Chat;

/// <summary>
/// A chat template that does not parse (the message names the line and column), that fails while rendering (an undefined
/// filter, a type error), or that refuses the conversation itself (<c>raise_exception('…')</c> in the template, e.g. roles
/// that do not alternate).
/// </summary>
public sealed class ChatTemplateException : Exception
{
    /// <summary>Creates the exception.</summary>
    public ChatTemplateException()
    {
    }

    /// <summary>Creates the exception with a message.</summary>
    /// <param name="message">What went wrong, and where.</param>
    public ChatTemplateException(string message)
        : base(message)
    {
    }

    /// <summary>Creates the exception with a message and its cause.</summary>
    /// <param name="message">What went wrong, and where.</param>
    /// <param name="innerException">The cause.</param>
    public ChatTemplateException(string message, Exception innerException)
        : base(message, innerException)
    {
    }

    /// <summary>Whether the template itself raised the error (<c>raise_exception</c>): the conversation, not the template, is at fault.</summary>
    public bool RaisedByTemplate { get; init; }

    /// <summary>The 1-based line in the template source, when known.</summary>
    public int? Line { get; init; }

    /// <summary>The 1-based column in the template source, when known.</summary>
    public int? Column { get; init; }
}
