using Petals.Generation;

namespace Petals.Extensions.AI;

/// <summary>
/// The idle conversations of a chat client, most recently used first, at most <c>capacity</c> of them. A request takes
/// the one sharing the longest token prefix with its prompt (it leaves the cache while in use, so a concurrent
/// request on the same prefix gets a fresh session) and gives it back afterwards. Thread-safe. Conversations the cache
/// drops are handed to the caller to close, outside the lock.
/// </summary>
internal sealed class ConversationCache
{
    private readonly Lock _lock = new();
    private readonly LinkedList<LanguageModelConversation> _idle = new();
    private readonly int _capacity;
    private bool _closed;

    public ConversationCache(int capacity) => _capacity = capacity;

    /// <summary>The number of idle conversations kept.</summary>
    public int Count
    {
        get
        {
            lock (_lock)
            {
                return _idle.Count;
            }
        }
    }

    /// <summary>
    /// Takes the idle conversation sharing the longest token prefix with <paramref name="prompt"/>, or null. A conversation
    /// is only taken for at least half of what it processed (so that a prompt sharing, say, only a system prompt does not
    /// roll back and spoil a long conversation kept for its own next turn) and when the prompt plus
    /// <paramref name="maxNewTokens"/> fits it. One that the prompt extends entirely but that has no room left for it is
    /// dropped into <paramref name="dropped"/> (every later turn of that conversation would be longer still), as are unusable ones.
    /// </summary>
    public LanguageModelConversation? TryTake(IReadOnlyList<int> prompt, int maxNewTokens, List<LanguageModelConversation> dropped)
    {
        lock (_lock)
        {
            LinkedListNode<LanguageModelConversation>? best = null;
            var bestShared = 0;
            for (var node = _idle.First; node is not null;)
            {
                var next = node.Next;
                var conversation = node.Value;
                var shared = conversation.IsUsable ? conversation.CommonPrefixLength(prompt) : 0;
                var fits = (long)prompt.Count + maxNewTokens <= conversation.MaxLength;
                if (!conversation.IsUsable || (!fits && shared == conversation.ProcessedCount && shared > 0))
                {
                    _idle.Remove(node);
                    dropped.Add(conversation);
                }
                else if (fits && shared > bestShared && 2L * shared >= conversation.ProcessedCount)
                {
                    best = node;
                    bestShared = shared;
                }

                node = next;
            }

            if (best is null)
            {
                return null;
            }

            _idle.Remove(best);
            return best.Value;
        }
    }

    /// <summary>
    /// Keeps <paramref name="conversation"/> as the most recently used; the least recently used beyond the capacity (or the
    /// conversation itself when it is unusable, empty or the cache is closed) go to <paramref name="dropped"/>.
    /// </summary>
    public void Return(LanguageModelConversation conversation, List<LanguageModelConversation> dropped)
    {
        lock (_lock)
        {
            if (_closed || !conversation.IsUsable || conversation.ProcessedCount == 0 || _capacity == 0)
            {
                dropped.Add(conversation);
                return;
            }

            _idle.AddFirst(conversation);
            while (_idle.Count > _capacity)
            {
                dropped.Add(_idle.Last!.Value);
                _idle.RemoveLast();
            }
        }
    }

    /// <summary>Empties the cache for good (later returns are dropped), handing every idle conversation to <paramref name="dropped"/>.</summary>
    public void Close(List<LanguageModelConversation> dropped)
    {
        lock (_lock)
        {
            _closed = true;
            dropped.AddRange(_idle);
            _idle.Clear();
        }
    }
}
