namespace Petals.Models;

/// <summary>Rotary-embedding frequency scaling (Hugging Face <c>rope_scaling</c>).</summary>
/// <param name="Type">The scaling type; <c>"llama3"</c> is the one implemented by the executors here.</param>
/// <param name="Factor">The overall scaling factor.</param>
/// <param name="LowFreqFactor">Llama 3: the low-frequency factor (default 1).</param>
/// <param name="HighFreqFactor">Llama 3: the high-frequency factor (default 4).</param>
/// <param name="OriginalMaxPositionEmbeddings">Llama 3: the context length the model was pretrained with (default 8192).</param>
public sealed record RopeScaling(
    string Type,
    double Factor,
    double LowFreqFactor = 1.0,
    double HighFreqFactor = 4.0,
    int OriginalMaxPositionEmbeddings = 8192)
{
    /// <summary>The type name of Llama 3 scaling.</summary>
    public const string Llama3 = "llama3";
}
