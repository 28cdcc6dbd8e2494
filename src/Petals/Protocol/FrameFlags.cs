namespace Petals.Protocol;

/// <summary>The flags byte of a frame (docs/wire-protocol.md, section 2).</summary>
[Flags]
[System.Diagnostics.CodeAnalysis.SuppressMessage("Naming", "CA1711:Identifiers should not have incorrect suffix", Justification = "The wire field is named 'flags' in the specification.")]
public enum FrameFlags : byte
{
    /// <summary>No flag.</summary>
    None = 0,

    /// <summary>The message continues in <see cref="FrameType.Continuation"/> frames.</summary>
    More = 0x01,

    /// <summary>The message carries the optional prompts tensor.</summary>
    HasPrompts = 0x02,

    /// <summary>The message carries hypo ids.</summary>
    HasHypoIds = 0x04,

    /// <summary>The message carries sent LoRA weights (a request) or their gradient (a backward response); protocol 1.3.</summary>
    HasLora = 0x08,

    /// <summary>The message names a server-held adapter; protocol 1.3.</summary>
    HasAdapter = 0x10,
}
