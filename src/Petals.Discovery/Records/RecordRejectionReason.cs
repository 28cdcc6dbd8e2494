namespace Petals.Discovery;

/// <summary>Why a node refuses a record (<see cref="RecordValidator"/>, <see cref="RecordStorage"/>).</summary>
public enum RecordRejectionReason
{
    /// <summary>Not rejected.</summary>
    None = 0,

    /// <summary>The record has no public key or no signature.</summary>
    NotSigned,

    /// <summary>The public key is not a well-formed P-256 SubjectPublicKeyInfo.</summary>
    MalformedPublicKey,

    /// <summary>The sub-key is not the node id of the public key: a peer tried to write under another peer's id.</summary>
    SubKeyMismatch,

    /// <summary>The signature does not verify against the public key.</summary>
    ForgedSignature,

    /// <summary>The record's expiration is not in the future.</summary>
    Expired,

    /// <summary>The expiration lies further in the future than <see cref="RecordLimits.MaxTimeToLive"/>.</summary>
    ExpirationTooFar,

    /// <summary>The key exceeds <see cref="RecordLimits.MaxKeyBytes"/>.</summary>
    KeyTooLarge,

    /// <summary>The value exceeds <see cref="RecordLimits.MaxValueBytes"/>.</summary>
    ValueTooLarge,

    /// <summary>A sub-record with a later expiration (or the same expiration and other content) is already stored: an old version replayed.</summary>
    Replayed,

    /// <summary>The storage is full of records that all expire later than this one (or this key's sub-record budget is).</summary>
    StorageFull,

    /// <summary>The signer already holds its quota of records or bytes in this node's storage (<see cref="RecordStorageOptions.MaxRecordsPerSigner"/>, <see cref="RecordStorageOptions.MaxBytesPerSigner"/>).</summary>
    SignerQuotaExceeded,
}
