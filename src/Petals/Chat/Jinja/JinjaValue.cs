using System.Globalization;
using System.Text;

namespace Petals.Chat.Jinja;

// The runtime value types live together on purpose.

/// <summary>A runtime value of the interpreter (the value model of @huggingface/jinja).</summary>
internal abstract class JinjaValue
{
    /// <summary>The type name used in error messages (the reference's names).</summary>
    public abstract string TypeName { get; }

    /// <summary>Truthiness.</summary>
    public abstract bool IsTruthy { get; }

    /// <summary>The text the value renders to in <c>{{ }}</c>.</summary>
    public abstract override string ToString();
}

internal sealed class JinjaUndefined : JinjaValue
{
    public static readonly JinjaUndefined Instance = new();

    private JinjaUndefined()
    {
    }

    public override string TypeName => "UndefinedValue";

    public override bool IsTruthy => false;

    public override string ToString() => "undefined";
}

internal sealed class JinjaNull : JinjaValue
{
    public static readonly JinjaNull Instance = new();

    private JinjaNull()
    {
    }

    public override string TypeName => "NullValue";

    public override bool IsTruthy => false;

    public override string ToString() => "null";
}

internal sealed class JinjaBoolean : JinjaValue
{
    public static readonly JinjaBoolean True = new(true);
    public static readonly JinjaBoolean False = new(false);

    private JinjaBoolean(bool value) => Value = value;

    public bool Value { get; }

    public override string TypeName => "BooleanValue";

    public override bool IsTruthy => Value;

    public static JinjaBoolean Of(bool value) => value ? True : False;

    public override string ToString() => Value ? "true" : "false";
}

internal sealed class JinjaInteger(long value) : JinjaValue
{
    public long Value { get; } = value;

    public override string TypeName => "IntegerValue";

    public override bool IsTruthy => Value != 0;

    public override string ToString() => Value.ToString(CultureInfo.InvariantCulture);
}

internal sealed class JinjaFloat(double value) : JinjaValue
{
    public double Value { get; } = value;

    public override string TypeName => "FloatValue";

    public override bool IsTruthy => Value != 0 && !double.IsNaN(Value);

    public override string ToString()
    {
        if (Value == 0 && double.IsNegative(Value))
        {
            return "-0.0";
        }

        return Value % 1 == 0 && Math.Abs(Value) < 1e21 ? Value.ToString("F1", CultureInfo.InvariantCulture) : JsNumber(Value);
    }

    /// <summary>JavaScript's <c>Number.prototype.toString</c> for the common cases (shortest round-trip text).</summary>
    internal static string JsNumber(double value)
    {
        if (double.IsNaN(value))
        {
            return "NaN";
        }

        if (double.IsInfinity(value))
        {
            return value > 0 ? "Infinity" : "-Infinity";
        }

        if (value % 1 == 0 && Math.Abs(value) < 1e21)
        {
            return value.ToString("F0", CultureInfo.InvariantCulture);
        }

        var r = value.ToString("R", CultureInfo.InvariantCulture);
        int e = r.IndexOf('E', StringComparison.Ordinal);
        if (e < 0)
        {
            return r;
        }

        // .NET "1E-07" -> JavaScript "1e-7"; "1.5E+25" -> "1.5e+25".
        var mantissa = r[..e];
        int exponent = int.Parse(r.AsSpan(e + 1), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture);
        if (exponent >= -6 && exponent < 21)
        {
            return value.ToString("0.#####################", CultureInfo.InvariantCulture);
        }

        return mantissa + "e" + (exponent > 0 ? "+" : "-") + Math.Abs(exponent).ToString(CultureInfo.InvariantCulture);
    }
}

internal sealed class JinjaString(string value) : JinjaValue
{
    public static readonly JinjaString Empty = new(string.Empty);

    public string Value { get; } = value;

    public override string TypeName => "StringValue";

    public override bool IsTruthy => Value.Length > 0;

    public override string ToString() => Value;
}

internal class JinjaArray(List<JinjaValue> items) : JinjaValue
{
    public List<JinjaValue> Items { get; } = items;

    public override string TypeName => "ArrayValue";

    public override bool IsTruthy => Items.Count > 0;

    public override string ToString() => JinjaJson.Serialize(this, null, convertUndefinedToNull: false);
}

internal sealed class JinjaTuple(List<JinjaValue> items) : JinjaArray(items)
{
    public override string TypeName => "TupleValue";
}

/// <summary>A mapping with insertion order; also the keyword arguments of a call (<see cref="IsKeywordArguments"/>).</summary>
internal sealed class JinjaObject(OrderedDictionary<string, JinjaValue> entries, bool isKeywordArguments = false) : JinjaValue
{
    public JinjaObject()
        : this(new OrderedDictionary<string, JinjaValue>(StringComparer.Ordinal))
    {
    }

    public OrderedDictionary<string, JinjaValue> Entries { get; } = entries;

    public bool IsKeywordArguments { get; } = isKeywordArguments;

    public override string TypeName => IsKeywordArguments ? "KeywordArgumentsValue" : "ObjectValue";

    public override bool IsTruthy => Entries.Count > 0;

    public override string ToString() => JinjaJson.Serialize(this, null, convertUndefinedToNull: false);
}

/// <summary>The result of <c>namespace(…)</c>: the one value whose attributes a template may assign.</summary>
internal sealed class JinjaNamespace(OrderedDictionary<string, JinjaValue> entries) : JinjaValue
{
    public OrderedDictionary<string, JinjaValue> Entries { get; } = entries;

    public override string TypeName => "NamespaceValue";

    public override bool IsTruthy => true;

    public override string ToString() => JinjaJson.Serialize(this, null, convertUndefinedToNull: false);
}

/// <summary>A callable: a global (<c>range</c>, <c>raise_exception</c>, …), a builtin method, or a macro.</summary>
internal sealed class JinjaFunction(string name, Func<List<JinjaValue>, JinjaScope, JinjaValue> invoke) : JinjaValue
{
    public string Name { get; } = name;

    public Func<List<JinjaValue>, JinjaScope, JinjaValue> Invoke { get; } = invoke;

    public override string TypeName => "FunctionValue";

    public override bool IsTruthy => true;

    public override string ToString() => "[function " + Name + "]";
}

/// <summary>A variable scope; lookups walk to the parent.</summary>
internal sealed class JinjaScope(JinjaScope? parent)
{
    private readonly Dictionary<string, JinjaValue> _variables = new(StringComparer.Ordinal);

    public JinjaScope? Parent { get; } = parent;

    /// <summary>Whether this scope is the one a <c>{% call %}</c> block set up (its <c>caller</c> is visible to the macro).</summary>
    public bool IsCallBlockScope { get; init; }

    public void Set(string name, JinjaValue value) => _variables[name] = value;

    public bool TryGetLocal(string name, out JinjaValue value) => _variables.TryGetValue(name, out value!);

    public JinjaValue Lookup(string name)
    {
        for (var scope = this; scope is not null; scope = scope.Parent)
        {
            if (scope._variables.TryGetValue(name, out var value))
            {
                return value;
            }
        }

        return JinjaUndefined.Instance;
    }
}

/// <summary>JSON text of values as the reference's <c>tojson</c> writes it (Python-style ", " and ": " separators by default).</summary>
internal static class JinjaJson
{
    public sealed record Options(int? Indent, bool EnsureAscii, bool SortKeys, string? ItemSeparator, string? KeySeparator);

    public static string Serialize(JinjaValue value, Options? options, bool convertUndefinedToNull = true)
    {
        var text = new StringBuilder();
        Write(text, value, options ?? new Options(null, false, false, null, null), 0, convertUndefinedToNull);
        return text.ToString();
    }

    private static void Write(StringBuilder text, JinjaValue value, Options options, int depth, bool convertUndefinedToNull)
    {
        if (depth > 512)
        {
            throw new JinjaRuntimeException("tojson: the value nests too deeply");
        }

        string itemSeparator = options.ItemSeparator ?? (options.Indent is > 0 ? "," : ", ");
        string keySeparator = options.KeySeparator ?? ": ";
        switch (value)
        {
            case JinjaNull:
                text.Append("null");
                return;
            case JinjaUndefined:
                text.Append(convertUndefinedToNull ? "null" : "undefined");
                return;
            case JinjaInteger i:
                text.Append(i.Value.ToString(CultureInfo.InvariantCulture));
                return;
            case JinjaFloat f:
                text.Append(double.IsFinite(f.Value) ? JinjaFloat.JsNumber(f.Value) : "null");
                return;
            case JinjaBoolean b:
                text.Append(b.Value ? "true" : "false");
                return;
            case JinjaString s:
                WriteString(text, s.Value, options.EnsureAscii);
                return;
            case JinjaArray array:
                {
                    string indent = options.Indent is > 0 ? new string(' ', options.Indent.Value) : string.Empty;
                    string basePadding = "\n" + string.Concat(Enumerable.Repeat(indent, depth));
                    string childPadding = basePadding + indent;
                    text.Append('[');
                    bool pretty = options.Indent is > 0 && array.Items.Count > 0;
                    for (int i = 0; i < array.Items.Count; i++)
                    {
                        if (i > 0)
                        {
                            text.Append(itemSeparator);
                        }

                        if (pretty)
                        {
                            text.Append(childPadding);
                        }

                        Write(text, array.Items[i], options, depth + 1, convertUndefinedToNull);
                    }

                    if (pretty)
                    {
                        text.Append(basePadding);
                    }

                    text.Append(']');
                    return;
                }

            case JinjaObject or JinjaNamespace:
                {
                    var entries = value is JinjaObject o ? o.Entries : ((JinjaNamespace)value).Entries;
                    var pairs = entries.ToList();
                    if (options.SortKeys)
                    {
                        // localeCompare in the reference; ordinal-ignore-case then ordinal is close for ASCII keys.
                        pairs.Sort((a, b) =>
                        {
                            int c = string.Compare(a.Key, b.Key, StringComparison.OrdinalIgnoreCase);
                            return c != 0 ? c : string.CompareOrdinal(a.Key, b.Key);
                        });
                    }

                    string indent = options.Indent is > 0 ? new string(' ', options.Indent.Value) : string.Empty;
                    string basePadding = "\n" + string.Concat(Enumerable.Repeat(indent, depth));
                    string childPadding = basePadding + indent;
                    bool pretty = options.Indent is > 0;
                    text.Append('{');
                    for (int i = 0; i < pairs.Count; i++)
                    {
                        if (i > 0)
                        {
                            text.Append(itemSeparator);
                        }

                        if (pretty)
                        {
                            text.Append(childPadding);
                        }

                        WriteString(text, pairs[i].Key, options.EnsureAscii);
                        text.Append(keySeparator);
                        Write(text, pairs[i].Value, options, depth + 1, convertUndefinedToNull);
                    }

                    if (pretty && pairs.Count > 0)
                    {
                        text.Append(basePadding);
                    }

                    text.Append('}');
                    return;
                }

            default:
                throw new JinjaRuntimeException($"Cannot convert to JSON: {value.TypeName}");
        }
    }

    /// <summary>JSON.stringify of a string (lone surrogates escaped), then optionally every non-ASCII unit as \uXXXX.</summary>
    internal static void WriteString(StringBuilder text, string value, bool ensureAscii)
    {
        text.Append('"');
        for (int i = 0; i < value.Length; i++)
        {
            char c = value[i];
            switch (c)
            {
                case '"': text.Append("\\\""); break;
                case '\\': text.Append("\\\\"); break;
                case '\b': text.Append("\\b"); break;
                case '\f': text.Append("\\f"); break;
                case '\n': text.Append("\\n"); break;
                case '\r': text.Append("\\r"); break;
                case '\t': text.Append("\\t"); break;
                default:
                    if (c < 0x20)
                    {
                        AppendEscape(text, c);
                    }
                    else if (char.IsHighSurrogate(c) && i + 1 < value.Length && char.IsLowSurrogate(value[i + 1]))
                    {
                        if (ensureAscii)
                        {
                            AppendEscape(text, c);
                            AppendEscape(text, value[i + 1]);
                        }
                        else
                        {
                            text.Append(c).Append(value[i + 1]);
                        }

                        i++;
                    }
                    else if (char.IsSurrogate(c) || (ensureAscii && c >= 0x7F))
                    {
                        AppendEscape(text, c);
                    }
                    else
                    {
                        text.Append(c);
                    }

                    break;
            }
        }

        text.Append('"');
    }

    private static void AppendEscape(StringBuilder text, char c) =>
        text.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
}
