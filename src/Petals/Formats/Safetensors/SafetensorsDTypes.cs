using Petals.Tensors;

namespace Petals.Formats.Safetensors;

/// <summary>The safetensors dtype strings this library reads and writes.</summary>
internal static class SafetensorsDTypes
{
    public static bool TryParse(string text, out TensorDType dtype)
    {
        switch (text)
        {
            case "F32": dtype = TensorDType.F32; return true;
            case "F16": dtype = TensorDType.F16; return true;
            case "BF16": dtype = TensorDType.BF16; return true;
            case "I8": dtype = TensorDType.I8; return true;
            case "I32": dtype = TensorDType.I32; return true;
            case "I64": dtype = TensorDType.I64; return true;
            default: dtype = default; return false;
        }
    }

    public static string ToText(TensorDType dtype) => dtype switch
    {
        TensorDType.F32 => "F32",
        TensorDType.F16 => "F16",
        TensorDType.BF16 => "BF16",
        TensorDType.I8 => "I8",
        TensorDType.I32 => "I32",
        TensorDType.I64 => "I64",
        _ => throw new ArgumentException($"dtype {dtype} cannot be stored in a safetensors file.", nameof(dtype)),
    };
}
