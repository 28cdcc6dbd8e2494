namespace Petals.Discovery;

/// <summary>The verdict on a record: accepted, or rejected with a <see cref="Reason"/> and a message naming the fault.</summary>
public readonly record struct RecordValidationResult
{
    private RecordValidationResult(RecordRejectionReason reason, string? message)
    {
        Reason = reason;
        Message = message;
    }

    /// <summary>The accepting verdict.</summary>
    public static RecordValidationResult Accepted => default;

    /// <summary>Why the record was rejected; <see cref="RecordRejectionReason.None"/> when accepted.</summary>
    public RecordRejectionReason Reason { get; }

    /// <summary>A human-readable explanation naming the record and the fault; null when accepted.</summary>
    public string? Message { get; }

    /// <summary>Whether the record was accepted.</summary>
    public bool IsAccepted => Reason == RecordRejectionReason.None;

    /// <summary>A rejecting verdict.</summary>
    /// <param name="reason">Why; not <see cref="RecordRejectionReason.None"/>.</param>
    /// <param name="message">The explanation.</param>
    /// <exception cref="ArgumentException"><paramref name="reason"/> is <see cref="RecordRejectionReason.None"/>.</exception>
    public static RecordValidationResult Reject(RecordRejectionReason reason, string message)
    {
        if (reason == RecordRejectionReason.None)
        {
            throw new ArgumentException("A rejection needs a reason other than None.", nameof(reason));
        }

        ArgumentException.ThrowIfNullOrEmpty(message);
        return new RecordValidationResult(reason, message);
    }

    /// <summary>"accepted" or the reason and message.</summary>
    public override string ToString() => IsAccepted ? "accepted" : $"{Reason}: {Message}";
}
