using System.Security.Cryptography;

namespace Petals.Discovery;

/// <summary>
/// Decides whether a node accepts a record: within <see cref="RecordLimits"/>, unexpired, not dated further out than
/// the maximum time to live, signed, its sub-key the hash of its public key, and its signature valid; and whether it
/// may replace the sub-record already stored under the same key and sub-key (only a strictly later expiration may).
/// Cheap checks run before the signature is verified. Thread-safe.
/// </summary>
public sealed class RecordValidator
{
    private readonly TimeProvider _time;

    /// <summary>Creates a validator.</summary>
    /// <param name="limits">The limits; <see cref="RecordLimits.Default"/> when null.</param>
    /// <param name="timeProvider">The clock; <see cref="TimeProvider.System"/> when null.</param>
    /// <exception cref="ArgumentOutOfRangeException">A limit is out of range.</exception>
    public RecordValidator(RecordLimits? limits = null, TimeProvider? timeProvider = null)
    {
        Limits = limits ?? RecordLimits.Default;
        Limits.Validate();
        _time = timeProvider ?? TimeProvider.System;
    }

    /// <summary>The limits applied.</summary>
    public RecordLimits Limits { get; }

    /// <summary>Validates <paramref name="record"/> against the current time.</summary>
    /// <param name="record">The record.</param>
    public RecordValidationResult Validate(DhtRecord record) => Validate(record, _time.GetUtcNow());

    /// <summary>Validates <paramref name="record"/> as of <paramref name="now"/>.</summary>
    /// <param name="record">The record.</param>
    /// <param name="now">The time to judge expiration against.</param>
    public RecordValidationResult Validate(DhtRecord record, DateTimeOffset now)
    {
        ArgumentNullException.ThrowIfNull(record);
        if (record.KeyByteCount > Limits.MaxKeyBytes)
        {
            return RecordValidationResult.Reject(RecordRejectionReason.KeyTooLarge, $"Record {Describe(record)}: the key is {record.KeyByteCount} UTF-8 bytes; at most {Limits.MaxKeyBytes}.");
        }

        if (record.Value.Length > Limits.MaxValueBytes)
        {
            return RecordValidationResult.Reject(RecordRejectionReason.ValueTooLarge, $"Record {Describe(record)}: the value is {record.Value.Length} bytes; at most {Limits.MaxValueBytes}.");
        }

        var nowMs = now.ToUnixTimeMilliseconds();
        if (record.ExpirationUnixMilliseconds <= nowMs)
        {
            return RecordValidationResult.Reject(RecordRejectionReason.Expired, $"Record {Describe(record)} expired at {record.ExpiresAt:O} (now {now:O}).");
        }

        if (record.ExpirationUnixMilliseconds - nowMs > (long)Limits.MaxTimeToLive.TotalMilliseconds)
        {
            return RecordValidationResult.Reject(RecordRejectionReason.ExpirationTooFar, $"Record {Describe(record)} expires at {record.ExpiresAt:O}, more than the maximum time to live {Limits.MaxTimeToLive} after now ({now:O}).");
        }

        if (!record.IsSigned)
        {
            return RecordValidationResult.Reject(RecordRejectionReason.NotSigned, $"Record {Describe(record)} is unsigned (it has {(record.PublicKey.IsEmpty ? "no public key" : "no signature")}).");
        }

        // The signer's id is one hash; the key import (the costly part) is cached by id across records and messages.
        var signer = NodeId.FromPublicKey(record.PublicKey.Span);
        if (signer != record.SubKey)
        {
            return PeerIdentity.IsValidPublicKey(record.PublicKey.Span)
                ? RecordValidationResult.Reject(RecordRejectionReason.SubKeyMismatch, $"Record {Describe(record)}: the sub-key is not the id of the signing key ({signer}); a peer may only write its own sub-record.")
                : MalformedKey(record);
        }

        switch (PublicKeyCache.Check(record.PublicKey.Span, record.GetSignedPayload(), record.Signature.Span))
        {
            case PublicKeyCache.Outcome.MalformedKey:
                return MalformedKey(record);
            case PublicKeyCache.Outcome.Invalid:
                return RecordValidationResult.Reject(RecordRejectionReason.ForgedSignature, $"Record {Describe(record)}: the signature does not verify against the signer's public key.");
        }

        return RecordValidationResult.Accepted;
    }

    /// <summary>
    /// Whether <paramref name="incoming"/> may replace <paramref name="existing"/> (same key and sub-key): only a
    /// strictly later expiration replaces; an identical record is accepted (a harmless re-delivery) and anything else
    /// is <see cref="RecordRejectionReason.Replayed"/>.
    /// </summary>
    /// <param name="existing">The stored sub-record, or null when none is stored.</param>
    /// <param name="incoming">The candidate (already validated by <see cref="Validate(DhtRecord)"/>).</param>
    /// <exception cref="ArgumentException">The two records are for different keys or sub-keys.</exception>
    public static RecordValidationResult CheckReplacement(DhtRecord? existing, DhtRecord incoming)
    {
        ArgumentNullException.ThrowIfNull(incoming);
        if (existing is null)
        {
            return RecordValidationResult.Accepted;
        }

        if (existing.Key != incoming.Key || existing.SubKey != incoming.SubKey)
        {
            throw new ArgumentException($"Cannot compare {Describe(existing)} with {Describe(incoming)}: a replacement has the same key and sub-key.", nameof(incoming));
        }

        if (incoming.ExpirationUnixMilliseconds > existing.ExpirationUnixMilliseconds || existing.ContentEquals(incoming))
        {
            return RecordValidationResult.Accepted;
        }

        return RecordValidationResult.Reject(
            RecordRejectionReason.Replayed,
            $"Record {Describe(incoming)} expires at {incoming.ExpiresAt:O}, not after the stored version ({existing.ExpiresAt:O}); an older version is not accepted.");
    }

    private static RecordValidationResult MalformedKey(DhtRecord record) =>
        RecordValidationResult.Reject(RecordRejectionReason.MalformedPublicKey, $"Record {Describe(record)}: the public key ({record.PublicKey.Length} bytes) is not a P-256 SubjectPublicKeyInfo.");

    private static string Describe(DhtRecord record) =>
        $"'{(record.Key.Length > 64 ? record.Key[..64] + "…" : record.Key)}'/{record.SubKey}";
}
