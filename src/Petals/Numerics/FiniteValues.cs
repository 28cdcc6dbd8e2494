using System.Globalization;
using System.Numerics.Tensors;
using System.Text;

namespace Petals.Numerics;

/// <summary>Finds NaNs and infinities in hidden states cheaply: one vectorized pass, an index only on failure.</summary>
internal static class FiniteValues
{
    /// <summary>The index of the first NaN or ±infinity in <paramref name="values"/>, or -1 when all are finite.</summary>
    public static int IndexOfNonFinite(ReadOnlySpan<float> values)
    {
        if (TensorPrimitives.IsFiniteAll(values))
        {
            return -1;
        }

        for (var i = 0; i < values.Length; i++)
        {
            if (!float.IsFinite(values[i]))
            {
                return i;
            }
        }

        return -1;
    }

    /// <summary>
    /// Describes the first non-finite value of a tensor for an error message: its kind, its flat index and its
    /// coordinates in <paramref name="dims"/>, e.g. <c>NaN at index 70 ([0, 1, 6])</c>.
    /// </summary>
    public static string Describe(ReadOnlySpan<float> values, int index, ReadOnlySpan<int> dims)
    {
        var value = values[index];
        var kind = float.IsNaN(value) ? "NaN" : value > 0 ? "+Infinity" : "-Infinity";
        Span<int> coordinates = stackalloc int[dims.Length];
        var rest = index;
        for (var d = dims.Length - 1; d >= 0; d--)
        {
            coordinates[d] = dims[d] > 0 ? rest % dims[d] : 0;
            rest = dims[d] > 0 ? rest / dims[d] : rest;
        }

        var text = new StringBuilder();
        text.Append(CultureInfo.InvariantCulture, $"{kind} at index {index} ([");
        for (var d = 0; d < coordinates.Length; d++)
        {
            text.Append(CultureInfo.InvariantCulture, $"{(d == 0 ? string.Empty : ", ")}{coordinates[d]}");
        }

        return text.Append("])").ToString();
    }
}
