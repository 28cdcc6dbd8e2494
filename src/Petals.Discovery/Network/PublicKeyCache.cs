using System.Collections.Concurrent;
using System.Security.Cryptography;

namespace Petals.Discovery;

/// <summary>
/// Imported P-256 public keys by node id, so that verifying a known sender's message skips the import (the larger
/// part of a verification's cost). Bounded: beyond <see cref="Capacity"/> keys the cache starts over. A key is
/// looked up by the id that is its hash, and its bytes are compared, so a wrong key never matches. Each key is used
/// under its own lock. Thread-safe.
/// </summary>
internal static class PublicKeyCache
{
    /// <summary>The most keys held.</summary>
    public const int Capacity = 4096;

    private static readonly ConcurrentDictionary<NodeId, Entry> Keys = new();

    /// <summary>The outcome of <see cref="Check"/>.</summary>
    public enum Outcome
    {
        /// <summary>The signature verifies.</summary>
        Valid,

        /// <summary>The key is a P-256 key but the signature does not verify (or is not 64 bytes).</summary>
        Invalid,

        /// <summary>The key is not exactly one well-formed P-256 SubjectPublicKeyInfo.</summary>
        MalformedKey,
    }

    /// <summary>Whether <paramref name="signature"/> over <paramref name="data"/> verifies against the P-256 key <paramref name="subjectPublicKeyInfo"/>; false for a malformed key or signature.</summary>
    public static bool Verify(ReadOnlySpan<byte> subjectPublicKeyInfo, ReadOnlySpan<byte> data, ReadOnlySpan<byte> signature) =>
        Check(subjectPublicKeyInfo, data, signature) == Outcome.Valid;

    /// <summary>Verifies <paramref name="signature"/> over <paramref name="data"/> against the P-256 key <paramref name="subjectPublicKeyInfo"/>, telling a malformed key apart.</summary>
    public static Outcome Check(ReadOnlySpan<byte> subjectPublicKeyInfo, ReadOnlySpan<byte> data, ReadOnlySpan<byte> signature)
    {
        if (subjectPublicKeyInfo.IsEmpty)
        {
            return Outcome.MalformedKey;
        }

        var id = NodeId.FromPublicKey(subjectPublicKeyInfo);
        if (!Keys.TryGetValue(id, out var entry) || !entry.Bytes.AsSpan().SequenceEqual(subjectPublicKeyInfo))
        {
            var key = PeerIdentity.TryImportPublicKey(subjectPublicKeyInfo);
            if (key is null)
            {
                return Outcome.MalformedKey;
            }

            entry = new Entry(subjectPublicKeyInfo.ToArray(), key);
            if (Keys.Count >= Capacity)
            {
                // Keys removed here may be in use by another thread: they are left to the finalizer, not disposed.
                Keys.Clear();
            }

            Keys[id] = entry;
        }

        if (signature.Length != PeerIdentity.SignatureSize)
        {
            return Outcome.Invalid;
        }

        lock (entry.Key)
        {
            return entry.Key.VerifyData(data, signature, HashAlgorithmName.SHA256, DSASignatureFormat.IeeeP1363FixedFieldConcatenation) ? Outcome.Valid : Outcome.Invalid;
        }
    }

    private sealed record Entry(byte[] Bytes, ECDsa Key);
}
