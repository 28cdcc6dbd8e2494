using Petals.Models;

namespace Petals.Execution;

/// <summary>A linear layer of a Llama block that a low-rank adapter (LoRA) can modify; named as PEFT names the modules.</summary>
public enum LoraTarget
{
    /// <summary><c>self_attn.q_proj</c>: hidden → heads × head dim.</summary>
    Query,

    /// <summary><c>self_attn.k_proj</c>: hidden → key-value heads × head dim.</summary>
    Key,

    /// <summary><c>self_attn.v_proj</c>: hidden → key-value heads × head dim.</summary>
    Value,

    /// <summary><c>self_attn.o_proj</c>: heads × head dim → hidden.</summary>
    Output,

    /// <summary><c>mlp.gate_proj</c>: hidden → intermediate.</summary>
    Gate,

    /// <summary><c>mlp.up_proj</c>: hidden → intermediate.</summary>
    Up,

    /// <summary><c>mlp.down_proj</c>: intermediate → hidden.</summary>
    Down,
}

/// <summary>Shapes and names of <see cref="LoraTarget"/>s.</summary>
public static class LoraTargets
{
    /// <summary>Every target, in the order adapter values are laid out.</summary>
    public static IReadOnlyList<LoraTarget> All { get; } =
        [LoraTarget.Query, LoraTarget.Key, LoraTarget.Value, LoraTarget.Output, LoraTarget.Gate, LoraTarget.Up, LoraTarget.Down];

    /// <summary>The input width of <paramref name="target"/>'s layer in a model of <paramref name="config"/>.</summary>
    /// <param name="config">The model.</param>
    /// <param name="target">The layer.</param>
    /// <returns>Its input features.</returns>
    public static int InFeatures(ModelConfig config, LoraTarget target)
    {
        ArgumentNullException.ThrowIfNull(config);
        return target switch
        {
            LoraTarget.Query or LoraTarget.Key or LoraTarget.Value or LoraTarget.Gate or LoraTarget.Up => config.HiddenSize,
            LoraTarget.Output => config.NumHeads * config.HeadDim,
            LoraTarget.Down => config.IntermediateSize,
            _ => throw new ArgumentOutOfRangeException(nameof(target), target, "Unknown LoRA target."),
        };
    }

    /// <summary>The output width of <paramref name="target"/>'s layer in a model of <paramref name="config"/>.</summary>
    /// <param name="config">The model.</param>
    /// <param name="target">The layer.</param>
    /// <returns>Its output features.</returns>
    public static int OutFeatures(ModelConfig config, LoraTarget target)
    {
        ArgumentNullException.ThrowIfNull(config);
        return target switch
        {
            LoraTarget.Query => config.NumHeads * config.HeadDim,
            LoraTarget.Key or LoraTarget.Value => config.NumKeyValueHeads * config.HeadDim,
            LoraTarget.Output or LoraTarget.Down => config.HiddenSize,
            LoraTarget.Gate or LoraTarget.Up => config.IntermediateSize,
            _ => throw new ArgumentOutOfRangeException(nameof(target), target, "Unknown LoRA target."),
        };
    }

    /// <summary>The PEFT module name of <paramref name="target"/> (<c>q_proj</c>, …, <c>down_proj</c>).</summary>
    /// <param name="target">The layer.</param>
    /// <returns>Its module name.</returns>
    public static string ModuleName(LoraTarget target) => target switch
    {
        LoraTarget.Query => "q_proj",
        LoraTarget.Key => "k_proj",
        LoraTarget.Value => "v_proj",
        LoraTarget.Output => "o_proj",
        LoraTarget.Gate => "gate_proj",
        LoraTarget.Up => "up_proj",
        LoraTarget.Down => "down_proj",
        _ => throw new ArgumentOutOfRangeException(nameof(target), target, "Unknown LoRA target."),
    };

    /// <summary>Parses a PEFT module name (<c>q_proj</c> … <c>down_proj</c>, case-sensitive as PEFT writes them).</summary>
    /// <param name="name">The module name.</param>
    /// <param name="target">The layer, when known.</param>
    /// <returns>Whether the name is one of the seven modules of a Llama block.</returns>
    public static bool TryParseModule(string name, out LoraTarget target)
    {
        foreach (var t in All)
        {
            if (string.Equals(ModuleName(t), name, StringComparison.Ordinal))
            {
                target = t;
                return true;
            }
        }

        target = default;
        return false;
    }
}
