using System.Globalization;
using System.Text;

namespace Petals.Chat.Jinja;

/// <summary>The globals (namespace, range, strftime) and the methods of strings, lists and mappings, as the reference has them.</summary>
internal sealed partial class JinjaInterpreter
{
    private static bool IsUnchangedBy(string value, Func<string, string> map) => string.Equals(value, map(value), StringComparison.Ordinal);

    private static JinjaFunction Method(string name, Func<List<JinjaValue>, JinjaValue> body) => new(name, (args, _) => body(args));

    private static JinjaValue? StringBuiltin(JinjaString s, string name)
    {
        var v = s.Value;
        return name switch
        {
            "upper" => Method(name, _ => new JinjaString(v.ToUpperInvariant())),
            "lower" => Method(name, _ => new JinjaString(v.ToLowerInvariant())),
            "strip" => Method(name, _ => new JinjaString(JinjaLexer.JsTrim(v))),
            "lstrip" => Method(name, _ => new JinjaString(JinjaLexer.JsTrimStart(v))),
            "rstrip" => Method(name, _ => new JinjaString(JinjaLexer.JsTrimEnd(v))),
            "title" => Method(name, _ => new JinjaString(TitleCase(v))),
            "capitalize" => Method(name, _ => new JinjaString(Capitalize(v))),
            "length" => new JinjaInteger(v.Length),
            "startswith" => Method(name, args => JinjaBoolean.Of(AffixMatch(v, args, "startswith", (x, p) => x.StartsWith(p, StringComparison.Ordinal)))),
            "endswith" => Method(name, args => JinjaBoolean.Of(AffixMatch(v, args, "endswith", (x, p) => x.EndsWith(p, StringComparison.Ordinal)))),
            "split" => Method(name, args => Split(v, args)),
            "replace" => Method(name, args => Replace(v, args)),
            _ => null,
        };
    }

    private static JinjaInteger? ArrayBuiltin(JinjaArray a, string name) => name == "length" ? new JinjaInteger(a.Items.Count) : null;

    private static JinjaFunction? ObjectBuiltin(JinjaObject o, string name) => name switch
    {
        "get" => Method(name, args =>
        {
            if (args.Count == 0 || args[0] is not JinjaString key)
            {
                throw new JinjaRuntimeException($"Object key must be a string: got {(args.Count == 0 ? "nothing" : args[0].TypeName)}");
            }

            return o.Entries.TryGetValue(key.Value, out var value) ? value : args.Count > 1 ? args[1] : JinjaNull.Instance;
        }),
        "items" => Method(name, _ => Items(o)),
        "keys" => Method(name, _ => new JinjaArray([.. o.Entries.Keys.Select(k => (JinjaValue)new JinjaString(k))])),
        "values" => Method(name, _ => new JinjaArray([.. o.Entries.Values])),
        "dictsort" => Method(name, args => DictSort(o, args)),
        _ => null,
    };

    private static JinjaArray Items(JinjaObject o) =>
        new([.. o.Entries.Select(e => (JinjaValue)new JinjaArray([new JinjaString(e.Key), e.Value]))]);

    private static JinjaArray DictSort(JinjaObject o, List<JinjaValue> args)
    {
        var (positional, keywords) = SplitKeywords(args);
        var caseSensitive = Arg(positional, keywords, 0, "case_sensitive") ?? JinjaBoolean.False;
        var by = Arg(positional, keywords, 1, "by") ?? new JinjaString("key");
        var reverse = Arg(positional, keywords, 2, "reverse") ?? JinjaBoolean.False;
        if (caseSensitive is not JinjaBoolean cs || reverse is not JinjaBoolean rv)
        {
            throw new JinjaRuntimeException("dictsort: case_sensitive and reverse must be booleans");
        }

        if (by is not JinjaString { Value: "key" or "value" } b)
        {
            throw new JinjaRuntimeException("dictsort: by must be either 'key' or 'value'");
        }

        int index = b.Value == "key" ? 0 : 1;
        var items = Items(o).Items;
        var sorted = StableSort(items, (x, y) =>
        {
            int r = Compare(((JinjaArray)x).Items[index], ((JinjaArray)y).Items[index], cs.Value);
            return rv.Value ? -r : r;
        });
        return new JinjaArray(sorted);
    }

    private static List<JinjaValue> StableSort(List<JinjaValue> items, Comparison<JinjaValue> comparison)
    {
        var indexed = items.Select((v, i) => (v, i)).ToList();
        indexed.Sort((a, b) =>
        {
            int c = comparison(a.v, b.v);
            return c != 0 ? c : a.i.CompareTo(b.i);
        });
        return [.. indexed.Select(p => p.v)];
    }

    private static (List<JinjaValue> Positional, OrderedDictionary<string, JinjaValue> Keywords) SplitKeywords(List<JinjaValue> args)
    {
        if (args.Count > 0 && args[^1] is JinjaObject { IsKeywordArguments: true } kw)
        {
            return (args[..^1], kw.Entries);
        }

        return (args, new OrderedDictionary<string, JinjaValue>(StringComparer.Ordinal));
    }

    private static JinjaValue? Arg(List<JinjaValue> positional, OrderedDictionary<string, JinjaValue> keywords, int index, string name) =>
        index < positional.Count ? positional[index] : keywords.TryGetValue(name, out var v) ? v : null;

    /// <summary>The reference's value ordering for sort and dictsort.</summary>
    private static int Compare(JinjaValue a, JinjaValue b, bool caseSensitive)
    {
        if (a is JinjaNull && b is JinjaNull)
        {
            return 0;
        }

        if (a is JinjaNull || b is JinjaNull || a is JinjaUndefined ^ b is JinjaUndefined)
        {
            throw new JinjaRuntimeException($"Cannot compare {a.TypeName} with {b.TypeName}");
        }

        if (a is JinjaUndefined)
        {
            return 0;
        }

        if (a is JinjaInteger or JinjaFloat or JinjaBoolean && b is JinjaInteger or JinjaFloat or JinjaBoolean)
        {
            return NumberOf(a).CompareTo(NumberOf(b));
        }

        if (a is JinjaString sa && b is JinjaString sb)
        {
            var x = caseSensitive ? sa.Value : sa.Value.ToLowerInvariant();
            var y = caseSensitive ? sb.Value : sb.Value.ToLowerInvariant();
            return Math.Sign(string.CompareOrdinal(x, y));
        }

        throw new JinjaRuntimeException(a.TypeName != b.TypeName ? $"Cannot compare different types: {a.TypeName} and {b.TypeName}" : $"Cannot compare type: {a.TypeName}");
    }

    private static bool AffixMatch(string value, List<JinjaValue> args, string name, Func<string, string, bool> match)
    {
        if (args.Count == 0)
        {
            throw new JinjaRuntimeException($"{name}() requires at least one argument");
        }

        switch (args[0])
        {
            case JinjaString p:
                return match(value, p.Value);
            case JinjaArray options:
                foreach (var item in options.Items)
                {
                    if (item is not JinjaString s)
                    {
                        throw new JinjaRuntimeException($"{name}() tuple elements must be strings");
                    }

                    if (match(value, s.Value))
                    {
                        return true;
                    }
                }

                return false;
            default:
                throw new JinjaRuntimeException($"{name}() argument must be a string or tuple of strings");
        }
    }

    private static JinjaArray Split(string value, List<JinjaValue> args)
    {
        var sep = args.Count > 0 ? args[0] : JinjaNull.Instance;
        var maxSplitValue = args.Count > 1 ? args[1] : new JinjaInteger(-1);
        if (sep is not (JinjaString or JinjaNull))
        {
            throw new JinjaRuntimeException("split(): sep argument must be a string or null");
        }

        if (maxSplitValue is not JinjaInteger maxSplit)
        {
            throw new JinjaRuntimeException("split(): maxsplit argument must be a number");
        }

        var result = new List<string>();
        if (sep is JinjaNull)
        {
            var text = JinjaLexer.JsTrimStart(value);
            int i = 0;
            while (i < text.Length)
            {
                while (i < text.Length && JinjaLexer.IsWhitespace(text[i]))
                {
                    i++;
                }

                if (i >= text.Length)
                {
                    break;
                }

                if (maxSplit.Value >= 0 && result.Count >= maxSplit.Value)
                {
                    result.Add(text[i..]);
                    break;
                }

                int start = i;
                while (i < text.Length && !JinjaLexer.IsWhitespace(text[i]))
                {
                    i++;
                }

                result.Add(text[start..i]);
            }
        }
        else
        {
            var separator = ((JinjaString)sep).Value;
            if (separator.Length == 0)
            {
                throw new JinjaRuntimeException("split(): empty separator");
            }

            result.AddRange(value.Split(separator));
            if (maxSplit.Value >= 0 && result.Count > maxSplit.Value)
            {
                int keep = (int)maxSplit.Value;
                var rest = string.Join(separator, result.Skip(keep));
                result.RemoveRange(keep, result.Count - keep);
                result.Add(rest);
            }
        }

        return new JinjaArray([.. result.Select(s => (JinjaValue)new JinjaString(s))]);
    }

    private static JinjaString Replace(string value, List<JinjaValue> args)
    {
        if (args.Count < 2)
        {
            throw new JinjaRuntimeException("replace() requires at least two arguments");
        }

        if (args[0] is not JinjaString oldValue || args[1] is not JinjaString newValue)
        {
            throw new JinjaRuntimeException("replace() arguments must be strings");
        }

        JinjaValue count = JinjaNull.Instance;
        if (args.Count > 2)
        {
            count = args[2] is JinjaObject { IsKeywordArguments: true } kw
                ? kw.Entries.TryGetValue("count", out var c) ? c : JinjaNull.Instance
                : args[2];
        }

        if (count is not (JinjaInteger or JinjaNull))
        {
            throw new JinjaRuntimeException("replace() count argument must be a number or null");
        }

        long remaining = count is JinjaInteger n ? n.Value : -1;
        if (remaining == 0)
        {
            return new JinjaString(value);
        }

        if (remaining < 0)
        {
            remaining = long.MaxValue;
        }

        var text = new StringBuilder();
        if (oldValue.Value.Length == 0)
        {
            // An empty pattern matches between every code point and at both ends.
            var points = CodePoints(value);
            for (int i = 0; i <= points.Count; i++)
            {
                if (remaining > 0)
                {
                    text.Append(newValue.Value);
                    remaining--;
                }

                if (i < points.Count)
                {
                    text.Append(points[i]);
                }
            }

            return Text(value, text);
        }

        int pos = 0;
        while (remaining > 0)
        {
            int at = value.IndexOf(oldValue.Value, pos, StringComparison.Ordinal);
            if (at < 0)
            {
                break;
            }

            text.Append(value, pos, at - pos).Append(newValue.Value);
            pos = at + oldValue.Value.Length;
            remaining--;
            if (text.Length > MaxTextLength)
            {
                throw new JinjaRuntimeException($"A string grew past {MaxTextLength:N0} characters");
            }
        }

        text.Append(value, pos, value.Length - pos);
        return Text(value, text);

        static JinjaString Text(string _, StringBuilder builder) => builder.Length > MaxTextLength
            ? throw new JinjaRuntimeException($"A string grew past {MaxTextLength:N0} characters")
            : new JinjaString(builder.ToString());
    }

    /// <summary>The reference's title case: an ASCII word character after a non-word character is upper-cased; the rest is kept.</summary>
    private static string TitleCase(string value)
    {
        var chars = value.ToCharArray();
        for (int i = 0; i < chars.Length; i++)
        {
            bool word = char.IsAsciiLetterOrDigit(chars[i]) || chars[i] == '_';
            bool previousWord = i > 0 && (char.IsAsciiLetterOrDigit(value[i - 1]) || value[i - 1] == '_');
            if (word && !previousWord)
            {
                chars[i] = char.ToUpperInvariant(chars[i]);
            }
        }

        return new string(chars);
    }

    private static string Capitalize(string value) =>
        value.Length == 0 ? value : char.ToUpperInvariant(value[0]) + value[1..];

    private static JinjaNamespace Namespace(List<JinjaValue> args)
    {
        var (positional, keywords) = SplitKeywords(args);
        if (positional.Count > 1)
        {
            throw new JinjaRuntimeException($"namespace expected at most 1 argument, got {positional.Count}");
        }

        var entries = new OrderedDictionary<string, JinjaValue>(StringComparer.Ordinal);
        if (positional.Count == 1)
        {
            switch (positional[0])
            {
                case JinjaObject source:
                    foreach (var (k, v) in source.Entries)
                    {
                        entries[k] = v;
                    }

                    break;
                case JinjaArray pairs:
                    foreach (var pair in pairs.Items)
                    {
                        if (pair is not JinjaArray { Items.Count: 2 } kv || kv.Items[0] is not JinjaString key)
                        {
                            throw new JinjaRuntimeException("namespace expected an object or an iterable of [key, value] pairs");
                        }

                        entries[key.Value] = kv.Items[1];
                    }

                    break;
                default:
                    throw new JinjaRuntimeException($"'{positional[0].TypeName}' object is not iterable");
            }
        }

        foreach (var (k, v) in keywords)
        {
            entries[k] = v;
        }

        return new JinjaNamespace(entries);
    }

    private static JinjaArray Range(List<JinjaValue> args)
    {
        if (args.Count is 0 or > 3 || args.Exists(a => a is not JinjaInteger))
        {
            throw new JinjaRuntimeException("range() takes one to three integers");
        }

        long start = 0, stop, step = 1;
        if (args.Count == 1)
        {
            stop = ((JinjaInteger)args[0]).Value;
        }
        else
        {
            start = ((JinjaInteger)args[0]).Value;
            stop = ((JinjaInteger)args[1]).Value;
            if (args.Count == 3)
            {
                step = ((JinjaInteger)args[2]).Value;
            }
        }

        if (step == 0)
        {
            throw new JinjaRuntimeException("range() step must not be zero");
        }

        var items = new List<JinjaValue>();
        for (long i = start; step > 0 ? i < stop : i > stop; i += step)
        {
            if (items.Count >= MaxRangeLength)
            {
                throw new JinjaRuntimeException($"range() would produce more than {MaxRangeLength:N0} items");
            }

            items.Add(new JinjaInteger(i));
        }

        return new JinjaArray(items);
    }

    /// <summary>strftime for the directives the reference knows (%Y %m %d %b %B %H %M %%), English month names.</summary>
    internal static string Strftime(DateTime date, string format)
    {
        var text = new StringBuilder();
        for (int i = 0; i < format.Length; i++)
        {
            if (format[i] != '%' || i + 1 >= format.Length)
            {
                text.Append(format[i]);
                continue;
            }

            char d = format[i + 1];
            string? part = d switch
            {
                'Y' => date.Year.ToString(CultureInfo.InvariantCulture),
                'm' => date.Month.ToString("00", CultureInfo.InvariantCulture),
                'd' => date.Day.ToString("00", CultureInfo.InvariantCulture),
                'b' => date.ToString("MMM", CultureInfo.InvariantCulture),
                'B' => date.ToString("MMMM", CultureInfo.InvariantCulture),
                'H' => date.Hour.ToString("00", CultureInfo.InvariantCulture),
                'M' => date.Minute.ToString("00", CultureInfo.InvariantCulture),
                '%' => "%",
                _ => null,
            };
            if (part is null)
            {
                text.Append('%');
                continue;
            }

            text.Append(part);
            i++;
        }

        return text.ToString();
    }
}
