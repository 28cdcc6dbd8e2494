using System.Globalization;

namespace Petals.Discovery;

/// <summary>
/// The limits every <see cref="IPeerDiscovery"/> announcement respects, shared by the DHT encoding, the server's
/// announcer and the model-id computation so that an id or model a server accepts is one the swarm can carry; and the
/// argument checks every implementation makes before it announces or reads anything, so that all of them refuse the
/// same input with the same exceptions.
/// </summary>
public static class AnnouncementLimits
{
    /// <summary>
    /// The longest model id, in UTF-8 bytes: block keys <c>"{modelId}.{block}"</c> must fit the DHT's 256-byte key
    /// limit (the wire handshake alone would allow 255).
    /// </summary>
    public const int MaxModelIdBytes = 240;

    /// <summary>The largest model, in blocks, an announcement or the model index may name (real models have a few hundred).</summary>
    public const int MaxBlockCount = 1024;

    /// <summary>
    /// The longest announced weight quantization (<see cref="ServerInfo.Quantization"/>), in bytes: room for every block
    /// type of a mixed file joined by <c>'+'</c> (<c>"q4_k+q6_k"</c>).
    /// </summary>
    public const int MaxQuantizationBytes = 64;

    /// <summary>The most LoRA adapter names one announcement carries (<see cref="ServerInfo.Adapters"/>).</summary>
    public const int MaxAdapters = 32;

    /// <summary>The longest LoRA adapter name (<see cref="ServerInfo.Adapters"/>), in characters (ASCII, so also bytes).</summary>
    public const int MaxAdapterNameBytes = 64;

    /// <summary>
    /// Whether <paramref name="name"/> may name a server-held LoRA adapter (<see cref="ServerInfo.Adapters"/>, a session's
    /// adapter): 1 to <see cref="MaxAdapterNameBytes"/> characters, each an ASCII letter, a digit, <c>'_'</c>, <c>'-'</c> or
    /// <c>'.'</c>, not starting with <c>'.'</c> or <c>'-'</c>, e.g. <c>"style"</c>, <c>"chat-v2"</c>, <c>"rhymes_r8"</c>.
    /// </summary>
    /// <param name="name">The name.</param>
    /// <param name="fault">Why it may not, naming the first bad character; null when it may.</param>
    /// <returns>Whether it may.</returns>
    public static bool IsValidAdapterName(string? name, out string? fault)
    {
        if (string.IsNullOrEmpty(name))
        {
            fault = "the adapter name is empty.";
            return false;
        }

        if (name.Length > MaxAdapterNameBytes)
        {
            fault = string.Create(CultureInfo.InvariantCulture, $"the adapter name is {name.Length} characters; at most {MaxAdapterNameBytes}.");
            return false;
        }

        for (var i = 0; i < name.Length; i++)
        {
            var c = name[i];
            if (!(char.IsAsciiLetterOrDigit(c) || c is '_' or '-' or '.') || (i == 0 && c is '.' or '-'))
            {
                fault = string.Create(CultureInfo.InvariantCulture, $"the adapter name '{name}' holds '{c}' (U+{(int)c:X4}) at {i}; only ASCII letters, digits, '_', '-' and '.' are allowed, and not '.' or '-' first.");
                return false;
            }
        }

        fault = null;
        return true;
    }

    /// <summary>
    /// Whether <paramref name="adapters"/> may be announced as <see cref="ServerInfo.Adapters"/>: at most
    /// <see cref="MaxAdapters"/> distinct names, each valid (<see cref="IsValidAdapterName"/>).
    /// </summary>
    /// <param name="adapters">The names.</param>
    /// <param name="fault">Why they may not; null when they may.</param>
    /// <returns>Whether they may.</returns>
    public static bool IsValidAdapterList(IReadOnlyList<string>? adapters, out string? fault)
    {
        fault = null;
        if (adapters is null)
        {
            return true;
        }

        if (adapters.Count > MaxAdapters)
        {
            fault = string.Create(CultureInfo.InvariantCulture, $"{adapters.Count} adapters; an announcement carries at most {MaxAdapters}.");
            return false;
        }

        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var name in adapters)
        {
            if (!IsValidAdapterName(name, out fault))
            {
                return false;
            }

            if (!seen.Add(name))
            {
                fault = $"the adapter '{name}' is listed twice.";
                return false;
            }
        }

        return true;
    }

    /// <summary>
    /// Whether <paramref name="quantization"/> may be announced as <see cref="ServerInfo.Quantization"/> (or required by a
    /// client): 1 to <see cref="MaxQuantizationBytes"/> characters, each a lower-case ASCII letter, a digit, <c>'_'</c> or
    /// <c>'+'</c>, e.g. <c>"none"</c>, <c>"nf4"</c>, <c>"q4_k+q6_k"</c>.
    /// </summary>
    /// <param name="quantization">The text.</param>
    /// <param name="fault">Why it may not, naming the first bad character; null when it may.</param>
    /// <returns>Whether it may.</returns>
    public static bool IsValidQuantization(string? quantization, out string? fault)
    {
        if (string.IsNullOrEmpty(quantization))
        {
            fault = "the quantization is empty.";
            return false;
        }

        if (quantization.Length > MaxQuantizationBytes)
        {
            fault = string.Create(CultureInfo.InvariantCulture, $"the quantization is {quantization.Length} characters; at most {MaxQuantizationBytes}.");
            return false;
        }

        for (var i = 0; i < quantization.Length; i++)
        {
            var c = quantization[i];
            if (!(char.IsAsciiLetterLower(c) || char.IsAsciiDigit(c) || c is '_' or '+'))
            {
                fault = string.Create(CultureInfo.InvariantCulture, $"the quantization '{quantization}' holds '{c}' (U+{(int)c:X4}) at {i}; only a-z, 0-9, '_' and '+' are allowed.");
                return false;
            }
        }

        fault = null;
        return true;
    }

    /// <summary>Throws what <see cref="IPeerDiscovery.GetServersAsync"/> documents for a bad model id.</summary>
    /// <param name="modelId">The model id.</param>
    /// <exception cref="ArgumentNullException"><paramref name="modelId"/> is null.</exception>
    /// <exception cref="ArgumentException"><paramref name="modelId"/> is empty or longer than <see cref="MaxModelIdBytes"/> UTF-8 bytes.</exception>
    public static void CheckModelId(string modelId)
    {
        ArgumentException.ThrowIfNullOrEmpty(modelId);
        if (System.Text.Encoding.UTF8.GetByteCount(modelId) > MaxModelIdBytes)
        {
            throw new ArgumentException($"The model id is longer than {MaxModelIdBytes} UTF-8 bytes.", nameof(modelId));
        }
    }

    /// <summary>
    /// Throws what <see cref="IPeerDiscovery.AnnounceAsync"/> documents for bad arguments, in this order: a null
    /// announcement, a bad model id, a block count out of range, a foreign peer id, a span past the block count, a time
    /// to live that is not positive, an invalid announcement. An implementation may refuse more (e.g. a maximum time to live).
    /// </summary>
    /// <param name="localPeerId">The implementation's <see cref="IPeerDiscovery.LocalPeerId"/>.</param>
    /// <param name="modelId">The model id.</param>
    /// <param name="blockCount">The model's number of blocks.</param>
    /// <param name="info">The announcement.</param>
    /// <param name="timeToLive">The time to live.</param>
    /// <exception cref="ArgumentNullException"><paramref name="modelId"/> or <paramref name="info"/> is null.</exception>
    /// <exception cref="ArgumentException">The model id, the peer id, the span or a field of <paramref name="info"/> is bad; the message says which.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="blockCount"/> is not 1 to <see cref="MaxBlockCount"/>, or <paramref name="timeToLive"/> is not positive.</exception>
    public static void CheckAnnouncement(string localPeerId, string modelId, int blockCount, ServerInfo info, TimeSpan timeToLive)
    {
        ArgumentNullException.ThrowIfNull(info);
        CheckModelId(modelId);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(blockCount);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(blockCount, MaxBlockCount);
        if (info.PeerId != localPeerId)
        {
            throw new ArgumentException($"The announcement's peer id '{info.PeerId}' is not this node's id {localPeerId}.", nameof(info));
        }

        if (info.Span.End > blockCount)
        {
            throw new ArgumentException($"Span {info.Span} goes past the model's {blockCount} blocks.", nameof(info));
        }

        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(timeToLive, TimeSpan.Zero);
        if (FindFault(info) is { } fault)
        {
            throw new ArgumentException($"The announcement is invalid: {fault}", nameof(info));
        }
    }

    private static string? FindFault(ServerInfo info)
    {
        if (info.Address.IsEmpty)
        {
            return "the server address is empty.";
        }

        if (!Enum.IsDefined(info.State))
        {
            return $"server state {(int)info.State} is not defined.";
        }

        if (!Enum.IsDefined(info.DType))
        {
            return $"dtype {(int)info.DType} is not defined.";
        }

        if (!double.IsFinite(info.Throughput) || info.Throughput < 0)
        {
            return $"throughput {info.Throughput.ToString(CultureInfo.InvariantCulture)} is not a finite non-negative number.";
        }

        if (info.CacheTokensLeft < 0)
        {
            return $"cache tokens left {info.CacheTokensLeft} is negative.";
        }

        if (info.Quantization is not null && !IsValidQuantization(info.Quantization, out var quantizationFault))
        {
            return quantizationFault;
        }

        if (!IsValidAdapterList(info.Adapters, out var adapterFault))
        {
            return adapterFault;
        }

        foreach (var (peer, rtt) in info.NextServerRtts ?? new Dictionary<string, TimeSpan>())
        {
            if (rtt < TimeSpan.Zero)
            {
                return $"the round-trip time to {peer} is negative.";
            }
        }

        return null;
    }
}
