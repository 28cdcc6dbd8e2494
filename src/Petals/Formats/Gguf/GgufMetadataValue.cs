using System.Globalization;

namespace Petals.Formats.Gguf;

/// <summary>
/// A GGUF metadata value. <see cref="Value"/> holds a <see cref="string"/>, <see cref="bool"/>, a boxed number of
/// the exact stored type (<see cref="byte"/>, <see cref="sbyte"/>, <see cref="ushort"/>, <see cref="short"/>,
/// <see cref="uint"/>, <see cref="int"/>, <see cref="ulong"/>, <see cref="long"/>, <see cref="float"/>,
/// <see cref="double"/>), or for arrays a typed array of those (<c>string[]</c>, <c>float[]</c>, ...) or, for
/// nested arrays, a <c>GgufMetadataValue[]</c>.
/// </summary>
/// <remarks>Immutable once read; the arrays must not be modified by callers.</remarks>
public sealed class GgufMetadataValue
{
    internal GgufMetadataValue(GgufValueType type, object value, GgufValueType? elementType = null)
    {
        Type = type;
        Value = value;
        ElementType = elementType;
    }

    /// <summary>The stored type.</summary>
    public GgufValueType Type { get; }

    /// <summary>For arrays, the element type; otherwise null.</summary>
    public GgufValueType? ElementType { get; }

    /// <summary>The value (see the type's remarks for the possible runtime types).</summary>
    public object Value { get; }

    /// <inheritdoc />
    public override string ToString() => Value switch
    {
        Array a => string.Create(CultureInfo.InvariantCulture, $"{ElementType}[{a.Length}]"),
        IFormattable f => f.ToString(null, CultureInfo.InvariantCulture),
        _ => Value.ToString() ?? string.Empty,
    };
}
