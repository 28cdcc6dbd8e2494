using System.Collections;
using System.Globalization;
using System.Text.Json;

namespace Petals.Chat.Jinja;

/// <summary>A parsed Jinja chat template, rendered with the variables Hugging Face's <c>apply_chat_template</c> passes.</summary>
internal sealed class JinjaTemplate
{
    private static readonly HashSet<string> ReservedNames = new(StringComparer.Ordinal)
    {
        "messages", "add_generation_prompt", "bos_token", "eos_token",
    };

    private readonly List<JinjaNode> _body;

    private JinjaTemplate(string source, List<JinjaNode> body)
    {
        Source = source;
        _body = body;
    }

    public string Source { get; }

    /// <summary>Parses <paramref name="source"/>.</summary>
    /// <exception cref="ChatTemplateException">When it does not parse (with the line and column).</exception>
    public static JinjaTemplate Parse(string source)
    {
        try
        {
            return new JinjaTemplate(source, JinjaParser.Parse(source));
        }
        catch (InsufficientExecutionStackException e)
        {
            throw new ChatTemplateException("Chat template syntax error: the template nests too deeply to parse", e);
        }
    }

    /// <summary>Renders the conversation.</summary>
    /// <exception cref="ChatTemplateException">When rendering fails or the template raises.</exception>
    /// <exception cref="ArgumentException">When a message or variable is invalid.</exception>
    public string Render(IReadOnlyList<ChatTemplateMessage> messages, ChatTemplateOptions options)
    {
        var list = new List<JinjaValue>(messages.Count);
        for (int i = 0; i < messages.Count; i++)
        {
            var message = messages[i] ?? throw new ArgumentException($"Message {i} is null.", nameof(messages));
            if (message.Role is null || message.Content is null)
            {
                throw new ArgumentException($"Message {i} has a null role or content.", nameof(messages));
            }

            list.Add(new JinjaObject(new OrderedDictionary<string, JinjaValue>(StringComparer.Ordinal)
            {
                ["role"] = new JinjaString(message.Role),
                ["content"] = new JinjaString(message.Content),
            }));
        }

        var variables = new List<KeyValuePair<string, JinjaValue>>
        {
            new("messages", new JinjaArray(list)),
            new("add_generation_prompt", JinjaBoolean.Of(options.AddGenerationPrompt)),
            new("bos_token", new JinjaString(options.BosToken ?? string.Empty)),
            new("eos_token", new JinjaString(options.EosToken ?? string.Empty)),
        };
        foreach (var (name, value) in options.Variables ?? new Dictionary<string, object?>())
        {
            if (ReservedNames.Contains(name))
            {
                throw new ArgumentException($"The variable '{name}' is set from the messages and options; it cannot be passed in Variables.", nameof(options));
            }

            variables.Add(new(name, FromClr(value, $"Variables[\"{name}\"]", 0)));
        }

        var clock = options.TimeProvider ?? TimeProvider.System;
        var interpreter = new JinjaInterpreter(Source, () => clock.GetLocalNow().DateTime);
        try
        {
            return interpreter.Render(_body, variables);
        }
        catch (JinjaInterpreter.TemplateRaisedException e)
        {
            var (line, column) = e.Offset is int o ? JinjaErrors.Position(Source, o) : ((int?)null, (int?)null);
            throw new ChatTemplateException(e.Message, e) { RaisedByTemplate = true, Line = line, Column = column };
        }
        catch (ArithmeticException e)
        {
            throw new ChatTemplateException("Chat template error: arithmetic overflow (" + e.Message + ")", e);
        }
        catch (JinjaRuntimeException e)
        {
            if (e.Offset is int offset)
            {
                var error = JinjaErrors.Runtime(e.Message, Source, offset);
                throw new ChatTemplateException(error.Message, e) { Line = error.Line, Column = error.Column };
            }

            throw new ChatTemplateException("Chat template error: " + e.Message, e);
        }
    }

    /// <summary>
    /// Converts a .NET value to a template value: strings, booleans, numbers, <see cref="JsonElement"/>s, string-keyed
    /// dictionaries and other sequences of those, or null.
    /// </summary>
    internal static JinjaValue FromClr(object? value, string path, int depth)
    {
        if (depth > 64)
        {
            throw new ArgumentException($"{path} nests deeper than 64 levels.");
        }

        switch (value)
        {
            case null:
                return JinjaNull.Instance;
            case string s:
                return new JinjaString(s);
            case bool b:
                return JinjaBoolean.Of(b);
            case int or long or short or sbyte or byte or ushort or uint:
                return new JinjaInteger(Convert.ToInt64(value, CultureInfo.InvariantCulture));
            case ulong u:
                return u <= long.MaxValue ? new JinjaInteger((long)u) : new JinjaFloat(u);
            case float or double or decimal:
                {
                    double d = Convert.ToDouble(value, CultureInfo.InvariantCulture);
                    return d % 1 == 0 && Math.Abs(d) < 9e15 ? new JinjaInteger((long)d) : new JinjaFloat(d);
                }

            case JsonElement json:
                return FromJson(json, path, depth);
            case IDictionary<string, object?> map:
                return ToObject(map, path, depth);
            case IReadOnlyDictionary<string, object?> map:
                return ToObject(map, path, depth);
            case IDictionary map:
                {
                    var entries = new OrderedDictionary<string, JinjaValue>(StringComparer.Ordinal);
                    foreach (DictionaryEntry e in map)
                    {
                        if (e.Key is not string key)
                        {
                            throw new ArgumentException($"{path} has a key that is not a string ({e.Key?.GetType().Name}).");
                        }

                        entries[key] = FromClr(e.Value, $"{path}[\"{key}\"]", depth + 1);
                    }

                    return new JinjaObject(entries);
                }

            case IEnumerable sequence:
                {
                    var items = new List<JinjaValue>();
                    int i = 0;
                    foreach (var item in sequence)
                    {
                        items.Add(FromClr(item, $"{path}[{i++}]", depth + 1));
                    }

                    return new JinjaArray(items);
                }

            default:
                throw new ArgumentException($"{path} has a type templates cannot use ({value.GetType().Name}): use strings, booleans, numbers, lists, string-keyed dictionaries, JsonElement or null.");
        }
    }

    private static JinjaObject ToObject(IEnumerable<KeyValuePair<string, object?>> map, string path, int depth)
    {
        var entries = new OrderedDictionary<string, JinjaValue>(StringComparer.Ordinal);
        foreach (var (key, item) in map)
        {
            entries[key] = FromClr(item, $"{path}[\"{key}\"]", depth + 1);
        }

        return new JinjaObject(entries);
    }

    private static JinjaValue FromJson(JsonElement json, string path, int depth)
    {
        switch (json.ValueKind)
        {
            case JsonValueKind.Null:
            case JsonValueKind.Undefined:
                return JinjaNull.Instance;
            case JsonValueKind.True:
                return JinjaBoolean.True;
            case JsonValueKind.False:
                return JinjaBoolean.False;
            case JsonValueKind.String:
                return new JinjaString(json.GetString()!);
            case JsonValueKind.Number:
                return json.TryGetInt64(out long l) ? new JinjaInteger(l) : FromClr(json.GetDouble(), path, depth);
            case JsonValueKind.Array:
                {
                    var items = new List<JinjaValue>();
                    int i = 0;
                    foreach (var item in json.EnumerateArray())
                    {
                        items.Add(FromJson(item, $"{path}[{i++}]", depth + 1));
                    }

                    return new JinjaArray(items);
                }

            default:
                {
                    if (depth > 64)
                    {
                        throw new ArgumentException($"{path} nests deeper than 64 levels.");
                    }

                    var entries = new OrderedDictionary<string, JinjaValue>(StringComparer.Ordinal);
                    foreach (var property in json.EnumerateObject())
                    {
                        entries[property.Name] = FromJson(property.Value, $"{path}[\"{property.Name}\"]", depth + 1);
                    }

                    return new JinjaObject(entries);
                }
        }
    }
}
