namespace Petals.Training;

/// <summary>One tokenised example of a data set: its token ids (BOS first when the tokenizer adds it) and optional class.</summary>
/// <param name="TokenIds">The ids, at most the loader's sequence length.</param>
/// <param name="Label">The class, or <see langword="null"/> for causal-LM data.</param>
/// <param name="LineNumber">The 1-based line of the JSON-lines file it came from.</param>
public sealed record TextExample(int[] TokenIds, int? Label, int LineNumber);
