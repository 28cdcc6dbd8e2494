namespace Petals.Discovery;

/// <summary>One model of the swarm's model index: every server that announces blocks also announces its model here.</summary>
/// <param name="ModelId">The model id (the handshake's model id and the prefix of the block keys).</param>
/// <param name="BlockCount">The model's number of blocks, as its servers announce it.</param>
/// <param name="ServerCount">How many servers currently list the model.</param>
public sealed record SwarmModelInfo(string ModelId, int BlockCount, int ServerCount);
