using Microsoft.ML;
using Microsoft.ML.Data;

namespace Petals.ML;

/// <summary>The schema checks of the Petals transforms, with ML.NET's own exceptions and messages.</summary>
internal static class PetalsSchema
{
    /// <summary>Checks that <paramref name="column"/> exists in <paramref name="inputSchema"/> and holds scalar text.</summary>
    /// <exception cref="ArgumentOutOfRangeException">As ML.NET's transforms throw: "Could not find input column 'X'" or
    /// "Schema mismatch for input column 'X': expected String, got T" (parameter <c>inputSchema</c>).</exception>
    internal static void CheckInput(DataViewSchema inputSchema, string column)
    {
        var found = inputSchema.GetColumnOrNull(column)
            ?? throw Missing(nameof(inputSchema), column);
        if (found.Type is not TextDataViewType)
        {
            throw Mismatch(nameof(inputSchema), column, found.Type.ToString() ?? found.Type.RawType.Name);
        }
    }

    /// <summary>The shape version of <see cref="CheckInput(DataViewSchema, string)"/>.</summary>
    internal static void CheckInput(SchemaShape inputSchema, string column)
    {
        var matches = inputSchema.Where(c => c.Name == column).ToList();
        if (matches.Count == 0)
        {
            throw Missing(nameof(inputSchema), column);
        }

        var found = matches[^1];

        if (found.Kind != SchemaShape.Column.VectorKind.Scalar || found.ItemType is not TextDataViewType)
        {
            var type = found.Kind switch
            {
                SchemaShape.Column.VectorKind.Vector => $"Vector<{found.ItemType}>",
                SchemaShape.Column.VectorKind.VariableVector => $"VarVector<{found.ItemType}>",
                _ => found.ItemType.ToString() ?? found.ItemType.RawType.Name,
            };
            throw Mismatch(nameof(inputSchema), column, type);
        }
    }

    /// <summary>The input shape with <paramref name="output"/> added (replacing a column of the same name).</summary>
    internal static SchemaShape WithColumn(SchemaShape inputSchema, SchemaShape.Column output)
    {
        var columns = inputSchema.Where(c => c.Name != output.Name).ToList();
        columns.Add(output);
        return new SchemaShape(columns);
    }

    private static ArgumentOutOfRangeException Missing(string paramName, string column) =>
        new(paramName, $"Could not find input column '{column}'");

    private static ArgumentOutOfRangeException Mismatch(string paramName, string column, string actual) =>
        new(paramName, $"Schema mismatch for input column '{column}': expected String, got {actual}");
}
