using System.Globalization;
using System.Text;

namespace Petals.Chat.Jinja;

/// <summary>The filters, with the reference's behaviour per operand type.</summary>
internal sealed partial class JinjaInterpreter
{
    private JinjaValue ApplyFilter(JinjaValue operand, JinjaExpression filterNode, JinjaScope scope)
    {
        try
        {
            return filterNode switch
            {
                IdentifierExpression id => ApplySimpleFilter(operand, id.Name, scope),
                CallExpression { Callee: IdentifierExpression name } call => ApplyCallFilter(operand, name.Name, call.Arguments, scope),
                _ => throw Fail(filterNode, "Unknown filter"),
            };
        }
        catch (JinjaRuntimeException e) when (e.Offset is null)
        {
            throw new JinjaRuntimeException(e.Message, e) { Offset = filterNode.Offset };
        }
    }

    private static JinjaValue ApplySimpleFilter(JinjaValue operand, string filter, JinjaScope scope)
    {
        if (filter == "safe")
        {
            return operand;
        }

        if (filter == "tojson")
        {
            return new JinjaString(JinjaJson.Serialize(operand, null));
        }

        switch (operand)
        {
            case JinjaArray array:
                switch (filter)
                {
                    case "list": return operand;
                    case "first": return array.Items.Count > 0 ? array.Items[0] : JinjaUndefined.Instance;
                    case "last": return array.Items.Count > 0 ? array.Items[^1] : JinjaUndefined.Instance;
                    case "length" or "count": return new JinjaInteger(array.Items.Count);
                    case "reverse":
                        {
                            var copy = new List<JinjaValue>(array.Items);
                            copy.Reverse();
                            return new JinjaArray(copy);
                        }

                    case "sort": return new JinjaArray(StableSort(array.Items, (a, b) => Compare(a, b, caseSensitive: false)));
                    case "join": return new JinjaString(string.Concat(array.Items.Select(JoinText)));
                    case "string": return new JinjaString(JinjaJson.Serialize(operand, null, convertUndefinedToNull: false));
                    case "unique":
                        {
                            var output = new List<JinjaValue>();
                            foreach (var item in array.Items)
                            {
                                if (!output.Exists(o => StrictEquals(o, item)))
                                {
                                    output.Add(item);
                                }
                            }

                            return new JinjaArray(output);
                        }

                    default: throw new JinjaRuntimeException($"Unknown ArrayValue filter: {filter}");
                }

            case JinjaString s:
                switch (filter)
                {
                    case "length" or "count": return new JinjaInteger(s.Value.Length);
                    case "upper": return new JinjaString(s.Value.ToUpperInvariant());
                    case "lower": return new JinjaString(s.Value.ToLowerInvariant());
                    case "title": return new JinjaString(TitleCase(s.Value));
                    case "capitalize": return new JinjaString(Capitalize(s.Value));
                    case "trim": return new JinjaString(JinjaLexer.JsTrim(s.Value));
                    case "indent": return new JinjaString(Indent(s.Value, "    ", first: false, blank: false));
                    case "join" or "string" or "safe": return operand;
                    case "int": return ParseIntPrefix(s.Value) is long l ? new JinjaInteger(l) : new JinjaInteger(0);
                    case "float": return ParseFloatPrefix(s.Value) is double d ? new JinjaFloat(d) : new JinjaFloat(0);
                    case "list": return new JinjaArray([.. CodePoints(s.Value).Select(c => (JinjaValue)new JinjaString(c))]);
                    case "first": return s.Value.Length > 0 ? new JinjaString(CodePoints(s.Value)[0]) : JinjaUndefined.Instance;
                    case "last": return s.Value.Length > 0 ? new JinjaString(CodePoints(s.Value)[^1]) : JinjaUndefined.Instance;
                    default: throw new JinjaRuntimeException($"Unknown StringValue filter: {filter}");
                }

            case JinjaInteger or JinjaFloat:
                switch (filter)
                {
                    case "abs": return operand is JinjaInteger i ? new JinjaInteger(Math.Abs(i.Value)) : new JinjaFloat(Math.Abs(((JinjaFloat)operand).Value));
                    case "int": return new JinjaInteger((long)Math.Truncate(NumberOf(operand)));
                    case "float": return new JinjaFloat(NumberOf(operand));
                    case "string": return new JinjaString(operand.ToString());
                    case "round": return new JinjaFloat(Math.Round(NumberOf(operand), MidpointRounding.ToEven));
                    default: throw new JinjaRuntimeException($"Unknown NumericValue filter: {filter}");
                }

            case JinjaObject o:
                switch (filter)
                {
                    case "items": return Items(o);
                    case "length" or "count": return new JinjaInteger(o.Entries.Count);
                    case "list": return new JinjaArray([.. o.Entries.Keys.Select(k => (JinjaValue)new JinjaString(k))]);
                    default:
                        {
                            var builtin = ObjectBuiltin(o, filter);
                            return builtin is not null ? builtin.Invoke([], scope) : throw new JinjaRuntimeException($"Unknown ObjectValue filter: {filter}");
                        }
                }

            case JinjaBoolean b:
                return filter switch
                {
                    "bool" => b,
                    "int" => new JinjaInteger(b.Value ? 1 : 0),
                    "float" => new JinjaFloat(b.Value ? 1 : 0),
                    "string" => new JinjaString(b.Value ? "true" : "false"),
                    _ => throw new JinjaRuntimeException($"Unknown BooleanValue filter: {filter}"),
                };
        }

        throw new JinjaRuntimeException($"Cannot apply filter \"{filter}\" to type: {operand.TypeName}");
    }

    private static string JoinText(JinjaValue value) => value switch
    {
        JinjaNull or JinjaUndefined => string.Empty,
        _ => PlainText(value),
    };

    private static long? ParseIntPrefix(string s)
    {
        var t = JinjaLexer.JsTrimStart(s);
        int i = 0;
        if (i < t.Length && t[i] is '+' or '-')
        {
            i++;
        }

        int digitsStart = i;
        while (i < t.Length && char.IsAsciiDigit(t[i]))
        {
            i++;
        }

        return i > digitsStart && long.TryParse(t.AsSpan(0, i), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var v) ? v : null;
    }

    private static double? ParseFloatPrefix(string s)
    {
        var t = JinjaLexer.JsTrimStart(s);
        for (int end = t.Length; end > 0; end--)
        {
            if (double.TryParse(t.AsSpan(0, end), NumberStyles.AllowLeadingSign | NumberStyles.AllowDecimalPoint | NumberStyles.AllowExponent, CultureInfo.InvariantCulture, out var d))
            {
                return d;
            }
        }

        return null;
    }

    private static string Indent(string value, string indent, bool first, bool blank)
    {
        var lines = value.Split('\n');
        for (int i = 0; i < lines.Length; i++)
        {
            if ((!first && i == 0) || (!blank && lines[i].Length == 0))
            {
                continue;
            }

            lines[i] = indent + lines[i];
        }

        return string.Join("\n", lines);
    }

    private JinjaValue ApplyCallFilter(JinjaValue operand, string filter, List<JinjaExpression> argumentNodes, JinjaScope scope)
    {
        switch (filter)
        {
            case "tojson":
                {
                    var (_, keywords) = EvaluateArguments(argumentNodes, scope);
                    var indent = keywords.GetValueOrDefault("indent") ?? JinjaNull.Instance;
                    var ensureAscii = keywords.GetValueOrDefault("ensure_ascii") ?? JinjaBoolean.False;
                    var sortKeys = keywords.GetValueOrDefault("sort_keys") ?? JinjaBoolean.False;
                    var separators = keywords.GetValueOrDefault("separators") ?? JinjaNull.Instance;
                    if (indent is not (JinjaInteger or JinjaNull))
                    {
                        throw new JinjaRuntimeException("tojson: if set, indent must be a number");
                    }

                    if (ensureAscii is not JinjaBoolean ea || sortKeys is not JinjaBoolean sk)
                    {
                        throw new JinjaRuntimeException("tojson: ensure_ascii and sort_keys must be booleans");
                    }

                    string? itemSeparator = null, keySeparator = null;
                    if (separators is JinjaArray pair)
                    {
                        if (pair.Items.Count != 2 || pair.Items[0] is not JinjaString a || pair.Items[1] is not JinjaString b)
                        {
                            throw new JinjaRuntimeException("tojson: separators must be a tuple of two strings");
                        }

                        (itemSeparator, keySeparator) = (a.Value, b.Value);
                    }
                    else if (separators is not JinjaNull)
                    {
                        throw new JinjaRuntimeException("tojson: if set, separators must be a tuple of two strings");
                    }

                    int? indentValue = indent is JinjaInteger n ? (int)Math.Clamp(n.Value, 0, 64) : null;
                    return new JinjaString(JinjaJson.Serialize(operand, new JinjaJson.Options(indentValue, ea.Value, sk.Value, itemSeparator, keySeparator)));
                }

            case "join":
                {
                    IEnumerable<string> parts = operand switch
                    {
                        JinjaString s => CodePoints(s.Value),
                        JinjaArray a => a.Items.Select(JoinText),
                        _ => throw new JinjaRuntimeException($"Cannot apply filter \"join\" to type: {operand.TypeName}"),
                    };
                    var (positional, keywords) = EvaluateArguments(argumentNodes, scope);
                    var separator = Arg(positional, keywords, 0, "separator") ?? JinjaString.Empty;
                    if (separator is not JinjaString sep)
                    {
                        throw new JinjaRuntimeException("join: separator must be a string");
                    }

                    var joined = string.Join(sep.Value, parts);
                    return joined.Length > MaxTextLength ? throw new JinjaRuntimeException($"A string grew past {MaxTextLength:N0} characters") : new JinjaString(joined);
                }

            case "int" or "float":
                {
                    var (positional, keywords) = EvaluateArguments(argumentNodes, scope);
                    var fallback = Arg(positional, keywords, 0, "default") ?? (filter == "int" ? new JinjaInteger(0) : new JinjaFloat(0));
                    return operand switch
                    {
                        JinjaString s when filter == "int" => ParseIntPrefix(s.Value) is long l ? new JinjaInteger(l) : fallback,
                        JinjaString s => ParseFloatPrefix(s.Value) is double d ? new JinjaFloat(d) : fallback,
                        JinjaInteger or JinjaFloat or JinjaBoolean => filter == "int" ? new JinjaInteger((long)Math.Truncate(NumberOf(operand))) : new JinjaFloat(NumberOf(operand)),
                        _ => throw new JinjaRuntimeException($"Cannot apply filter \"{filter}\" to type: {operand.TypeName}"),
                    };
                }

            case "default" or "d":
                {
                    var (positional, keywords) = EvaluateArguments(argumentNodes, scope);
                    var fallback = positional.Count > 0 ? positional[0] : JinjaString.Empty;
                    var boolean = Arg(positional, keywords, 1, "boolean") ?? JinjaBoolean.False;
                    if (boolean is not JinjaBoolean flag)
                    {
                        throw new JinjaRuntimeException("default: the boolean flag must be a boolean");
                    }

                    return operand is JinjaUndefined || (flag.Value && !operand.IsTruthy) ? fallback : operand;
                }

            case "round" when operand is JinjaInteger or JinjaFloat:
                {
                    var (positional, keywords) = EvaluateArguments(argumentNodes, scope);
                    var precision = Arg(positional, keywords, 0, "precision") ?? new JinjaInteger(0);
                    var method = Arg(positional, keywords, 1, "method") ?? new JinjaString("common");
                    if (precision is not JinjaInteger p || p.Value is < 0 or > 15 || method is not JinjaString { Value: "common" or "floor" or "ceil" } m)
                    {
                        throw new JinjaRuntimeException("round: precision must be an integer from 0 to 15 and method 'common', 'floor' or 'ceil'");
                    }

                    double scale = Math.Pow(10, p.Value);
                    double x = NumberOf(operand) * scale;
                    double r = m.Value switch { "floor" => Math.Floor(x), "ceil" => Math.Ceiling(x), _ => Math.Round(x, MidpointRounding.AwayFromZero) };
                    return new JinjaFloat(r / scale);
                }
        }

        switch (operand)
        {
            case JinjaArray array:
                return ApplyArrayCallFilter(array, filter, argumentNodes, scope);
            case JinjaString s when filter == "indent":
                {
                    var (positional, keywords) = EvaluateArguments(argumentNodes, scope);
                    var width = Arg(positional, keywords, 0, "width") ?? new JinjaInteger(4);
                    var first = Arg(positional, keywords, 1, "first") ?? JinjaBoolean.False;
                    var blank = Arg(positional, keywords, 2, "blank") ?? JinjaBoolean.False;
                    string indent = width switch
                    {
                        JinjaString w => w.Value,
                        JinjaInteger w => new string(' ', (int)Math.Clamp(w.Value, 0, 1024)),
                        _ => throw new JinjaRuntimeException("indent: width must be an integer or a string"),
                    };
                    return new JinjaString(Indent(s.Value, indent, first.IsTruthy, blank.IsTruthy));
                }

            case JinjaString s when filter == "replace":
                {
                    var (positional, keywords) = EvaluateArguments(argumentNodes, scope);
                    positional.Add(new JinjaObject(keywords, isKeywordArguments: true));
                    return Replace(s.Value, positional);
                }

            case JinjaString:
                throw new JinjaRuntimeException($"Unknown StringValue filter: {filter}");
            case JinjaObject o:
                {
                    if (ObjectBuiltin(o, filter) is { } f)
                    {
                        return f.Invoke(EvaluateCallArguments(argumentNodes, scope), scope);
                    }

                    throw new JinjaRuntimeException($"Unknown ObjectValue filter: {filter}");
                }

            default:
                throw new JinjaRuntimeException($"Cannot apply filter \"{filter}\" to type: {operand.TypeName}");
        }
    }

    private JinjaArray ApplyArrayCallFilter(JinjaArray array, string filter, List<JinjaExpression> argumentNodes, JinjaScope scope)
    {
        switch (filter)
        {
            case "sort":
                {
                    var (positional, keywords) = EvaluateArguments(argumentNodes, scope);
                    var reverse = Arg(positional, keywords, 0, "reverse") ?? JinjaBoolean.False;
                    var caseSensitive = Arg(positional, keywords, 1, "case_sensitive") ?? JinjaBoolean.False;
                    var attribute = Arg(positional, keywords, 2, "attribute") ?? JinjaNull.Instance;
                    if (reverse is not JinjaBoolean rv || caseSensitive is not JinjaBoolean cs)
                    {
                        throw new JinjaRuntimeException("sort: reverse and case_sensitive must be booleans");
                    }

                    string? path = attribute switch
                    {
                        JinjaNull => null,
                        JinjaString a => a.Value,
                        JinjaInteger a => a.Value.ToString(CultureInfo.InvariantCulture),
                        _ => throw new JinjaRuntimeException("sort: attribute must be a string, integer, or null"),
                    };
                    return new JinjaArray(StableSort(array.Items, (a, b) =>
                    {
                        int r = Compare(path is null ? a : AttributeOf(a, path), path is null ? b : AttributeOf(b, path), cs.Value);
                        return rv.Value ? -r : r;
                    }));
                }

            case "selectattr" or "rejectattr":
                {
                    bool select = filter == "selectattr";
                    if (array.Items.Exists(item => item is not (JinjaObject or JinjaNamespace)))
                    {
                        throw new JinjaRuntimeException($"`{filter}` can only be applied to array of objects");
                    }

                    if (argumentNodes.Exists(a => a is not StringLiteral))
                    {
                        throw new JinjaRuntimeException($"arguments of `{filter}` must be strings");
                    }

                    var args = argumentNodes.Select(a => ((StringLiteral)a).Value).ToList();
                    if (args.Count == 0)
                    {
                        throw new JinjaRuntimeException($"`{filter}` needs an attribute name");
                    }

                    JinjaValue? testValue = args.Count > 2 ? new JinjaString(args[2]) : null;
                    var filtered = new List<JinjaValue>();
                    foreach (var item in array.Items)
                    {
                        var entries = item is JinjaObject o ? o.Entries : ((JinjaNamespace)item).Entries;

                        // As the reference: an absent attribute fails the test (even "undefined").
                        bool result = entries.TryGetValue(args[0], out var attributeValue)
                            && (args.Count > 1 ? RunTest(argumentNodes[1], args[1], attributeValue, testValue) : attributeValue.IsTruthy);
                        if (result == select)
                        {
                            filtered.Add(item);
                        }
                    }

                    return new JinjaArray(filtered);
                }

            case "map":
                {
                    var (_, keywords) = EvaluateArguments(argumentNodes, scope);
                    if (!keywords.TryGetValue("attribute", out var attribute))
                    {
                        throw new JinjaRuntimeException("`map` without `attribute` is not supported");
                    }

                    if (attribute is not JinjaString path)
                    {
                        throw new JinjaRuntimeException("map: attribute must be a string");
                    }

                    var fallback = keywords.GetValueOrDefault("default");
                    var mapped = new List<JinjaValue>();
                    foreach (var item in array.Items)
                    {
                        if (item is not (JinjaObject or JinjaNamespace))
                        {
                            throw new JinjaRuntimeException("items in map must be an object");
                        }

                        var value = AttributeOf(item, path.Value);
                        mapped.Add(value is JinjaUndefined ? fallback ?? JinjaUndefined.Instance : value);
                    }

                    return new JinjaArray(mapped);
                }

            default:
                throw new JinjaRuntimeException($"Unknown ArrayValue filter: {filter}");
        }
    }

    private static JinjaValue AttributeOf(JinjaValue item, string path)
    {
        var value = item;
        foreach (var part in path.Split('.'))
        {
            if (value is JinjaObject o)
            {
                value = o.Entries.TryGetValue(part, out var v) ? v : JinjaUndefined.Instance;
            }
            else if (value is JinjaNamespace ns)
            {
                value = ns.Entries.TryGetValue(part, out var v) ? v : JinjaUndefined.Instance;
            }
            else if (value is JinjaArray a && int.TryParse(part, NumberStyles.None, CultureInfo.InvariantCulture, out int index) && index < a.Items.Count)
            {
                value = a.Items[index];
            }
            else
            {
                return JinjaUndefined.Instance;
            }
        }

        return value;
    }
}
