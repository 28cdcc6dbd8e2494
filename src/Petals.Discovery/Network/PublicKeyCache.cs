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

    /// <summary>Whether <paramref name="signature"/> over <paramref name="data"/> verifies against the P-256 key <paramref name="subjectPublicKeyInfo"/>; false for a malformed key or signature.</summary>
    public static bool Verify(ReadOnlySpan<byte> subjectPublicKeyInfo, ReadOnlySpan<byte> data, ReadOnlySpan<byte> signature)
    {
        if (signature.Length != PeerIdentity.SignatureSize || subjectPublicKeyInfo.IsEmpty)
        {
            return false;
        }

        var id = NodeId.FromPublicKey(subjectPublicKeyInfo);
        if (!Keys.TryGetValue(id, out var entry) || !entry.Bytes.AsSpan().SequenceEqual(subjectPublicKeyInfo))
        {
            var key = PeerIdentity.TryImportPublicKey(subjectPublicKeyInfo);
            if (key is null)
            {
                return false;
            }

            entry = new Entry(subjectPublicKeyInfo.ToArray(), key);
            if (Keys.Count >= Capacity)
            {
                // Keys removed here may be in use by another thread: they are left to the finalizer, not disposed.
                Keys.Clear();
            }

            Keys[id] = entry;
        }

        lock (entry.Key)
        {
            return entry.Key.VerifyData(data, signature, HashAlgorithmName.SHA256, DSASignatureFormat.IeeeP1363FixedFieldConcatenation);
        }
    }

    private sealed record Entry(byte[] Bytes, ECDsa Key);
}
