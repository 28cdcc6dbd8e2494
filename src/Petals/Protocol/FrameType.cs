namespace Petals.Protocol;

/// <summary>The type byte of a frame (docs/wire-protocol.md, section 5).</summary>
public enum FrameType : byte
{
    /// <summary>Asks for the callee's <see cref="InfoResponse"/>.</summary>
    InfoRequest = 0x01,

    /// <summary>Version, model, span, dtype, cache and limits of a server.</summary>
    InfoResponse = 0x02,

    /// <summary>A liveness / latency probe.</summary>
    Ping = 0x03,

    /// <summary>The answer to a <see cref="Ping"/>.</summary>
    Pong = 0x04,

    /// <summary>A stateless forward pass through blocks of the callee's span.</summary>
    ForwardRequest = 0x05,

    /// <summary>The hidden states produced by a forward request.</summary>
    ForwardResponse = 0x06,

    /// <summary>Opens an inference session on a stream.</summary>
    InferenceOpen = 0x07,

    /// <summary>One step of an inference session.</summary>
    InferenceStep = 0x08,

    /// <summary>The answer to one inference step.</summary>
    InferenceStepResult = 0x09,

    /// <summary>Ends an inference session.</summary>
    InferenceClose = 0x0A,

    /// <summary>A typed error; ends the call on its stream.</summary>
    Error = 0x0B,

    /// <summary>A stateless backward pass through blocks of the callee's span (protocol 1.3).</summary>
    BackwardRequest = 0x0C,

    /// <summary>The gradients produced by a backward request (protocol 1.3).</summary>
    BackwardResponse = 0x0D,

    /// <summary>The next bytes of a chunked message.</summary>
    Continuation = 0x0F,
}
