using System.Collections.Concurrent;
using System.Globalization;
using System.Text;
using System.Text.Json;

namespace Petals.Tokenization.HuggingFace;

/// <summary>
/// Byte-pair encoding as Hugging Face tokenizers' BPE model does it: a word starts as its characters (or their
/// UTF-8 byte tokens with byte_fallback, or unk), then the adjacent pair with the lowest merge rank is merged
/// (leftmost on ties) until no pair has a merge. A priority queue over a linked list of symbols keeps this
/// O(n log n) per word; results for short words are cached.
/// </summary>
internal sealed class BpeModel
{
    private const int CacheCapacity = 50_000;
    private const int CacheMaxWordLength = 128;

    /// <summary>How many ids may be missing below the largest vocabulary id.</summary>
    internal const int MaxIdGap = 1 << 20;

    [ThreadStatic]
    private static Scratch? t_scratch;

    private readonly Dictionary<string, int> _vocab;
    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> _vocabLookup;
    private readonly string[] _idToToken;
    private readonly Dictionary<long, long> _merges;
    private readonly int[] _byteIds;
    private readonly int? _unkId;
    private readonly bool _fuseUnk;
    private readonly bool _byteFallback;
    private readonly bool _ignoreMerges;
    private readonly string? _prefix;
    private readonly string? _suffix;
    private readonly ConcurrentDictionary<string, int[]> _cache = new(StringComparer.Ordinal);
    private int _cacheCount;

    private BpeModel(Dictionary<string, int> vocab, string[] idToToken, Dictionary<long, long> merges, int? unkId, bool fuseUnk, bool byteFallback, bool ignoreMerges, string? prefix, string? suffix)
    {
        _vocab = vocab;
        _vocabLookup = vocab.GetAlternateLookup<ReadOnlySpan<char>>();
        _idToToken = idToToken;
        _merges = merges;
        _unkId = unkId;
        _fuseUnk = fuseUnk;
        _byteFallback = byteFallback;
        _ignoreMerges = ignoreMerges;
        _prefix = string.IsNullOrEmpty(prefix) ? null : prefix;
        _suffix = string.IsNullOrEmpty(suffix) ? null : suffix;
        _byteIds = new int[256];
        for (int b = 0; b < 256; b++)
        {
            _byteIds[b] = vocab.TryGetValue(string.Create(CultureInfo.InvariantCulture, $"<0x{b:X2}>"), out int id) ? id : -1;
        }
    }

    /// <summary>Number of ids (highest id + 1) of the model's own vocabulary.</summary>
    public int Count => _idToToken.Length;

    public string? IdToToken(int id) => (uint)id < (uint)_idToToken.Length ? _idToToken[id] : null;

    public int? TokenToId(string token) => _vocab.TryGetValue(token, out int id) ? id : null;

    public static BpeModel Parse(JsonElement model, string path, JsonFields f)
    {
        JsonElement vocabElement = f.Required(model, "vocab", path);
        if (vocabElement.ValueKind != JsonValueKind.Object)
        {
            throw f.Error(path + ".vocab", "expected an object mapping token strings to ids.");
        }

        var vocab = new Dictionary<string, int>(StringComparer.Ordinal);
        int maxId = -1;
        foreach (JsonProperty p in vocabElement.EnumerateObject())
        {
            if (p.Value.ValueKind != JsonValueKind.Number || !p.Value.TryGetInt32(out int id) || id < 0)
            {
                throw f.Error(path + ".vocab", $"token '{p.Name}' has an invalid id (expected a non-negative integer).");
            }

            if (!vocab.TryAdd(p.Name, id))
            {
                throw f.Error(path + ".vocab", $"token '{p.Name}' appears twice.");
            }

            maxId = Math.Max(maxId, id);
        }

        // Ids index an array: a few holes are fine, an id far beyond the vocabulary (a corrupt file) is not.
        if (maxId >= (long)vocab.Count + MaxIdGap)
        {
            throw f.Error(path + ".vocab", $"id {maxId} is far beyond the {vocab.Count} tokens of the vocabulary (at most {MaxIdGap} unused ids are accepted).");
        }

        var idToToken = new string[maxId + 1];
        foreach ((string token, int id) in vocab)
        {
            if (idToToken[id] is not null)
            {
                throw f.Error(path + ".vocab", $"id {id} is used by both '{idToToken[id]}' and '{token}'.");
            }

            idToToken[id] = token;
        }

        string? prefix = f.OptionalString(model, "continuing_subword_prefix", path);
        string? suffix = f.OptionalString(model, "end_of_word_suffix", path);
        JsonElement? mergesElement = JsonFields.Optional(model, "merges");
        var merges = new Dictionary<long, long>(PairComparer.Instance);
        if (mergesElement is { } me)
        {
            if (me.ValueKind != JsonValueKind.Array)
            {
                throw f.Error(path + ".merges", "expected an array.");
            }

            merges.EnsureCapacity(me.GetArrayLength());
            Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> lookup = vocab.GetAlternateLookup<ReadOnlySpan<char>>();
            char[] buffer = new char[256];
            char[] pairBuffer = new char[256];
            int rank = 0;
            foreach (JsonElement m in me.EnumerateArray())
            {
                ReadOnlySpan<char> left;
                ReadOnlySpan<char> right;
                if (m.ValueKind == JsonValueKind.String)
                {
                    // Read the raw UTF-8 without allocating a string per merge (280k merges in Llama 3).
                    ReadOnlySpan<byte> raw = System.Runtime.InteropServices.JsonMarshal.GetRawUtf8Value(m);
                    ReadOnlySpan<char> pair;
                    if (raw.Length >= 2 && raw.IndexOf((byte)'\\') < 0)
                    {
                        raw = raw[1..^1];
                        if (pairBuffer.Length < raw.Length)
                        {
                            pairBuffer = new char[raw.Length * 2];
                        }

                        pair = pairBuffer.AsSpan(0, Encoding.UTF8.GetChars(raw, pairBuffer));
                    }
                    else
                    {
                        pair = m.GetString();
                    }

                    int space = pair.IndexOf(' ');
                    if (space <= 0 || space == pair.Length - 1 || pair[(space + 1)..].IndexOf(' ') >= 0)
                    {
                        throw f.Error(JsonFields.Index(path + ".merges", rank), $"merge '{pair}' is not two tokens separated by one space.");
                    }

                    left = pair[..space];
                    right = pair[(space + 1)..];
                }
                else if (m.ValueKind == JsonValueKind.Array && m.GetArrayLength() == 2 && m[0].ValueKind == JsonValueKind.String && m[1].ValueKind == JsonValueKind.String)
                {
                    left = m[0].GetString();
                    right = m[1].GetString();
                }
                else
                {
                    throw f.Error(JsonFields.Index(path + ".merges", rank), "expected \"a b\" or [\"a\", \"b\"].");
                }

                if (!lookup.TryGetValue(left, out int leftId))
                {
                    throw f.Error(JsonFields.Index(path + ".merges", rank), $"merge token '{left}' is not in the vocabulary.");
                }

                if (!lookup.TryGetValue(right, out int rightId))
                {
                    throw f.Error(JsonFields.Index(path + ".merges", rank), $"merge token '{right}' is not in the vocabulary.");
                }

                if (prefix is { Length: > 0 } && right.StartsWith(prefix, StringComparison.Ordinal))
                {
                    right = right[prefix.Length..];
                }

                if (buffer.Length < left.Length + right.Length)
                {
                    buffer = new char[(left.Length + right.Length) * 2];
                }

                left.CopyTo(buffer);
                right.CopyTo(buffer.AsSpan(left.Length));
                ReadOnlySpan<char> merged = buffer.AsSpan(0, left.Length + right.Length);
                if (!lookup.TryGetValue(merged, out int newId))
                {
                    throw f.Error(JsonFields.Index(path + ".merges", rank), $"merged token '{merged}' is not in the vocabulary.");
                }

                merges.TryAdd(Key(leftId, rightId), ((long)rank << 32) | (uint)newId);
                rank++;
            }
        }

        int? unkId = null;
        if (f.OptionalString(model, "unk_token", path) is { } unk)
        {
            unkId = vocab.TryGetValue(unk, out int u) ? u : throw f.Error(path + ".unk_token", $"'{unk}' is not in the vocabulary.");
        }

        if (JsonFields.Optional(model, "dropout") is { ValueKind: JsonValueKind.Number } dropout && dropout.GetDouble() != 0)
        {
            throw f.Error(path + ".dropout", "BPE dropout is not supported (it makes encoding random).");
        }

        return new BpeModel(
            vocab,
            idToToken,
            merges,
            unkId,
            f.OptionalBool(model, "fuse_unk", path, false),
            f.OptionalBool(model, "byte_fallback", path, false),
            f.OptionalBool(model, "ignore_merges", path, false),
            prefix,
            suffix);
    }

    private static long Key(int left, int right) => ((long)left << 32) | (uint)right;

    /// <summary>Mixes both ids into the hash: long's own hash (high ^ low) collides for most id pairs.</summary>
    private sealed class PairComparer : IEqualityComparer<long>
    {
        public static readonly PairComparer Instance = new();

        public bool Equals(long x, long y) => x == y;

        public int GetHashCode(long obj) => (int)((ulong)(obj * unchecked((long)0x9E3779B97F4A7C15)) >> 32);
    }

    /// <summary>Encodes one pre-tokenized word, appending its ids.</summary>
    public void Encode(string word, List<int> output)
    {
        if (word.Length == 0)
        {
            return;
        }

        if (_ignoreMerges && _vocab.TryGetValue(word, out int whole))
        {
            output.Add(whole);
            return;
        }

        if (_cache.TryGetValue(word, out int[]? cached))
        {
            output.AddRange(cached);
            return;
        }

        Scratch s = t_scratch ??= new Scratch();
        s.Reset();
        InitialSymbols(word, s);
        Merge(s);
        int start = output.Count;
        for (int i = 0; i >= 0 && s.Count > 0; i = s.Next[i])
        {
            output.Add(s.Ids[i]);
        }

        if (word.Length <= CacheMaxWordLength && Volatile.Read(ref _cacheCount) < CacheCapacity)
        {
            int[] ids = output.GetRange(start, output.Count - start).ToArray();
            if (_cache.TryAdd(word, ids))
            {
                Interlocked.Increment(ref _cacheCount);
            }
        }
    }

    private void InitialSymbols(string word, Scratch s)
    {
        Span<byte> utf8 = stackalloc byte[4];
        bool lastWasUnk = false;
        for (int i = 0; i < word.Length;)
        {
            int len = char.IsHighSurrogate(word[i]) && i + 1 < word.Length && char.IsLowSurrogate(word[i + 1]) ? 2 : 1;
            ReadOnlySpan<char> ch = word.AsSpan(i, len);
            bool first = i == 0;
            bool last = i + len == word.Length;
            i += len;
            if (TryLookupSymbol(ch, first, last, out int id))
            {
                s.Add(id);
                lastWasUnk = false;
                continue;
            }

            if (_byteFallback)
            {
                int n = Encoding.UTF8.GetBytes(ch, utf8);
                bool all = true;
                for (int b = 0; b < n; b++)
                {
                    all &= _byteIds[utf8[b]] >= 0;
                }

                if (all)
                {
                    for (int b = 0; b < n; b++)
                    {
                        s.Add(_byteIds[utf8[b]]);
                    }

                    lastWasUnk = false;
                    continue;
                }
            }

            if (_unkId is int unk)
            {
                if (!(_fuseUnk && lastWasUnk))
                {
                    s.Add(unk);
                }

                lastWasUnk = true;
            }
        }
    }

    private bool TryLookupSymbol(ReadOnlySpan<char> ch, bool first, bool last, out int id)
    {
        if (_prefix is null && _suffix is null)
        {
            return _vocabLookup.TryGetValue(ch, out id);
        }

        string key = (first ? string.Empty : _prefix ?? string.Empty) + ch.ToString() + (last ? _suffix ?? string.Empty : string.Empty);
        return _vocab.TryGetValue(key, out id);
    }

    private void Merge(Scratch s)
    {
        PriorityQueue<(int Left, int Right, int LeftId, int RightId), long> queue = s.Queue;
        for (int i = 0; i + 1 < s.Count; i++)
        {
            Push(s, i, i + 1);
        }

        while (queue.TryDequeue(out (int Left, int Right, int LeftId, int RightId) top, out long priority))
        {
            int left = top.Left;
            int right = top.Right;
            if (!s.Alive[left] || !s.Alive[right] || s.Next[left] != right || s.Ids[left] != top.LeftId || s.Ids[right] != top.RightId)
            {
                continue;
            }

            long value = _merges[Key(top.LeftId, top.RightId)];
            _ = priority;
            s.Ids[left] = (int)(value & 0xFFFFFFFF);
            s.Alive[right] = false;
            int after = s.Next[right];
            s.Next[left] = after;
            if (after >= 0)
            {
                s.Prev[after] = left;
                Push(s, left, after);
            }

            if (s.Prev[left] >= 0)
            {
                Push(s, s.Prev[left], left);
            }
        }
    }

    private void Push(Scratch s, int left, int right)
    {
        if (_merges.TryGetValue(Key(s.Ids[left], s.Ids[right]), out long value))
        {
            long rank = value >> 32;
            s.Queue.Enqueue((left, right, s.Ids[left], s.Ids[right]), (rank << 32) | (uint)left);
        }
    }

    /// <summary>Per-thread buffers so that encoding a word allocates nothing once warm.</summary>
    private sealed class Scratch
    {
        public int[] Ids = new int[64];
        public int[] Prev = new int[64];
        public int[] Next = new int[64];
        public bool[] Alive = new bool[64];
        public int Count;
        public readonly PriorityQueue<(int Left, int Right, int LeftId, int RightId), long> Queue = new();

        public void Reset()
        {
            Count = 0;
            Queue.Clear();
        }

        public void Add(int id)
        {
            if (Count == Ids.Length)
            {
                int size = Count * 2;
                Array.Resize(ref Ids, size);
                Array.Resize(ref Prev, size);
                Array.Resize(ref Next, size);
                Array.Resize(ref Alive, size);
            }

            Ids[Count] = id;
            Prev[Count] = Count - 1;
            Next[Count] = -1;
            if (Count > 0)
            {
                Next[Count - 1] = Count;
            }

            Alive[Count] = true;
            Count++;
        }
    }
}
