namespace Petals.Client;

/// <summary>The servers given for a remote chain cannot form one: a gap or overlap in the blocks, another model, hidden size or codec.</summary>
public sealed class RemoteChainException : Exception
{
    /// <summary>Creates the exception.</summary>
    public RemoteChainException()
    {
    }

    /// <summary>Creates the exception with a message.</summary>
    /// <param name="message">What is wrong with the chain.</param>
    public RemoteChainException(string message)
        : base(message)
    {
    }

    /// <summary>Creates the exception with a message and a cause.</summary>
    /// <param name="message">What is wrong with the chain.</param>
    /// <param name="innerException">The cause.</param>
    public RemoteChainException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}
