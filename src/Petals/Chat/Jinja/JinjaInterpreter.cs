using System.Globalization;
using System.Text;

namespace Petals.Chat.Jinja;

/// <summary>
/// Renders a parsed template with the semantics of @huggingface/jinja (the interpreter Hugging Face's JavaScript libraries
/// and many servers use for chat templates): its undefined handling, operators, filters, tests, string and mapping
/// methods. Bounded: a render stops with an error after <see cref="MaxSteps"/> evaluation steps, at macro recursion deeper
/// than <see cref="MaxCallDepth"/>, or when a string or the output outgrows <see cref="MaxTextLength"/> characters.
/// </summary>
internal sealed class JinjaInterpreter
{
    /// <summary>Evaluation steps (nodes evaluated) one render may take.</summary>
    internal const long MaxSteps = 2_000_000;

    /// <summary>How deeply macros may call each other.</summary>
    internal const int MaxCallDepth = 32;

    /// <summary>The longest string (and output) a render may build.</summary>
    internal const int MaxTextLength = 8 * 1024 * 1024;

    /// <summary>The most items <c>range</c> may produce.</summary>
    internal const int MaxRangeLength = 1_000_000;

    private readonly string _source;
    private readonly Func<DateTime> _now;
    private long _steps;
    private int _callDepth;

    public JinjaInterpreter(string source, Func<DateTime> now)
    {
        _source = source;
        _now = now;
    }

    /// <summary>Renders <paramref name="body"/> with the given top-level variables.</summary>
    public string Render(List<JinjaNode> body, IEnumerable<KeyValuePair<string, JinjaValue>> variables)
    {
        var globals = new JinjaScope(null);
        SetupGlobals(globals);
        foreach (var (name, value) in variables)
        {
            globals.Set(name, value);
        }

        try
        {
            return RenderBlock(body, globals);
        }
        catch (LoopControl)
        {
            throw new ChatTemplateException("Chat template error: 'break' or 'continue' outside a loop");
        }
    }

    private void SetupGlobals(JinjaScope scope)
    {
        scope.Set("false", JinjaBoolean.False);
        scope.Set("true", JinjaBoolean.True);
        scope.Set("none", JinjaNull.Instance);
        scope.Set("False", JinjaBoolean.False);
        scope.Set("True", JinjaBoolean.True);
        scope.Set("None", JinjaNull.Instance);
        scope.Set("namespace", new JinjaFunction("namespace", (args, _) => Namespace(args)));
        scope.Set("raise_exception", new JinjaFunction("raise_exception", (args, _) =>
            throw new TemplateRaisedException(args.Count == 0 || args[0] is JinjaNull or JinjaUndefined ? string.Empty : PlainText(args[0]))));
        scope.Set("range", new JinjaFunction("range", (args, _) => Range(args)));
        scope.Set("strftime_now", new JinjaFunction("strftime_now", (args, _) =>
            new JinjaString(Strftime(_now(), args.Count > 0 && args[0] is JinjaString f ? f.Value : throw new JinjaRuntimeException("strftime_now() needs a format string")))));
    }

    private sealed class LoopControl(bool isBreak) : Exception
    {
        public bool IsBreak { get; } = isBreak;
    }

    /// <summary><c>raise_exception(…)</c>: the template refused the input.</summary>
    internal sealed class TemplateRaisedException(string message) : Exception(message)
    {
        /// <summary>The offset of the call that raised, once known.</summary>
        public int? Offset { get; set; }
    }

    private void Step(JinjaNode node)
    {
        if (!System.Runtime.CompilerServices.RuntimeHelpers.TryEnsureSufficientExecutionStack())
        {
            throw new JinjaRuntimeException("The template nests too deeply (the interpreter's stack is exhausted)") { Offset = node.Offset };
        }

        if (++_steps > MaxSteps)
        {
            throw new JinjaRuntimeException($"The template ran more than {MaxSteps:N0} evaluation steps (an endless or absurdly long loop?)") { Offset = node.Offset };
        }
    }

    private static JinjaRuntimeException Fail(JinjaNode node, string message) => new(message) { Offset = node.Offset };

    private string RenderBlock(List<JinjaNode> statements, JinjaScope scope)
    {
        var text = new StringBuilder();
        foreach (var statement in statements)
        {
            Step(statement);
            switch (statement)
            {
                case TextNode t:
                    text.Append(t.Text);
                    break;
                case IfNode i:
                    text.Append(RenderIf(i, scope));
                    break;
                case ForNode f:
                    text.Append(RenderFor(f, scope));
                    break;
                case SetNode s:
                    ExecuteSet(s, scope);
                    break;
                case CommentNode:
                    break;
                case BreakNode:
                    throw new LoopControl(isBreak: true);
                case ContinueNode:
                    throw new LoopControl(isBreak: false);
                case MacroNode m:
                    DefineMacro(m, scope);
                    break;
                case CallBlockNode c:
                    text.Append(EvaluateCallBlock(c, scope).ToString());
                    break;
                case FilterBlockNode fb:
                    {
                        var rendered = new JinjaString(RenderBlock(fb.Body, scope));
                        var result = ApplyFilter(rendered, fb.Filter, scope);
                        if (result is not (JinjaNull or JinjaUndefined))
                        {
                            text.Append(result.ToString());
                        }

                        break;
                    }

                case JinjaExpression e:
                    {
                        var value = Evaluate(e, scope);
                        if (value is not (JinjaNull or JinjaUndefined))
                        {
                            text.Append(value.ToString());
                        }

                        break;
                    }

                default:
                    throw Fail(statement, $"Unknown node {statement.GetType().Name}");
            }

            if (text.Length > MaxTextLength)
            {
                throw Fail(statement, $"The output grew past {MaxTextLength:N0} characters");
            }
        }

        return text.ToString();
    }

    private string RenderIf(IfNode node, JinjaScope scope) =>
        RenderBlock(Evaluate(node.Test, scope).IsTruthy ? node.Body : node.Alternate, scope);

    private void ExecuteSet(SetNode node, JinjaScope scope)
    {
        var value = node.Value is not null ? Evaluate(node.Value, scope) : new JinjaString(RenderBlock(node.Body, scope));
        switch (node.Assignee)
        {
            case IdentifierExpression id:
                scope.Set(id.Name, value);
                break;
            case TupleLiteral tuple:
                {
                    if (value is not JinjaArray array)
                    {
                        throw Fail(node, $"Cannot unpack non-iterable type in set: {value.TypeName}");
                    }

                    if (array.Items.Count != tuple.Items.Count)
                    {
                        throw Fail(node, $"Too {(tuple.Items.Count > array.Items.Count ? "few" : "many")} items to unpack in set");
                    }

                    for (int i = 0; i < tuple.Items.Count; i++)
                    {
                        if (tuple.Items[i] is not IdentifierExpression name)
                        {
                            throw Fail(tuple.Items[i], "Cannot unpack to a non-name in set");
                        }

                        scope.Set(name.Name, array.Items[i]);
                    }

                    break;
                }

            case MemberExpression member:
                {
                    var target = Evaluate(member.Object, scope);
                    if (target is not JinjaNamespace ns)
                    {
                        throw Fail(node, "Cannot assign an attribute of anything but a namespace() object");
                    }

                    if (member.Property is not IdentifierExpression property || member.Computed)
                    {
                        throw Fail(node, "Cannot assign to a member with a non-name property");
                    }

                    ns.Entries[property.Name] = value;
                    break;
                }

            default:
                throw Fail(node, "Invalid left-hand side of an assignment");
        }
    }

    private static void BindLoopVariable(JinjaExpression loopVariable, JinjaValue item, JinjaScope scope)
    {
        if (loopVariable is IdentifierExpression id)
        {
            scope.Set(id.Name, item);
            return;
        }

        var targets = ((TupleLiteral)loopVariable).Items;
        var values = ((JinjaArray)item).Items;
        for (int j = 0; j < targets.Count; j++)
        {
            if (targets[j] is not IdentifierExpression name)
            {
                throw Fail(targets[j], "Cannot unpack to a non-name");
            }

            scope.Set(name.Name, j < values.Count ? values[j] : JinjaUndefined.Instance);
        }
    }

    private string RenderFor(ForNode node, JinjaScope parent)
    {
        var scope = new JinjaScope(parent);
        JinjaExpression? test = null;
        JinjaValue iterable;
        if (node.Iterable is SelectExpression select)
        {
            iterable = Evaluate(select.Value, scope);
            test = select.Test;
        }
        else
        {
            iterable = Evaluate(node.Iterable, scope);
        }

        List<JinjaValue> candidates = iterable switch
        {
            JinjaArray a => a.Items,
            JinjaObject o => [.. o.Entries.Keys.Select(k => (JinjaValue)new JinjaString(k))],
            _ => throw Fail(node.Iterable, $"Expected an iterable or object in a for loop, got {iterable.TypeName}"),
        };

        List<JinjaValue> items;
        if (node.LoopVariable is IdentifierExpression && test is null)
        {
            items = [.. candidates];
        }
        else
        {
            items = [];
            foreach (var current in candidates)
            {
                Step(node);
                if (node.LoopVariable is TupleLiteral tuple)
                {
                    if (current is not JinjaArray array)
                    {
                        throw Fail(node.LoopVariable, $"Cannot unpack non-iterable type: {current.TypeName}");
                    }

                    if (array.Items.Count != tuple.Items.Count)
                    {
                        throw Fail(node.LoopVariable, $"Too {(tuple.Items.Count > array.Items.Count ? "few" : "many")} items to unpack");
                    }
                }

                if (test is not null)
                {
                    var loopScope = new JinjaScope(scope);
                    BindLoopVariable(node.LoopVariable, current, loopScope);
                    if (!Evaluate(test, loopScope).IsTruthy)
                    {
                        continue;
                    }
                }

                items.Add(current);
            }
        }

        var text = new StringBuilder();
        bool noIteration = true;
        for (int i = 0; i < items.Count; i++)
        {
            Step(node);
            scope.Set("loop", LoopObject(i, items));
            BindLoopVariable(node.LoopVariable, items[i], scope);
            try
            {
                text.Append(RenderBlock(node.Body, scope));
            }
            catch (LoopControl control)
            {
                if (control.IsBreak)
                {
                    break;
                }

                continue;
            }

            if (text.Length > MaxTextLength)
            {
                throw Fail(node, $"The output grew past {MaxTextLength:N0} characters");
            }

            noIteration = false;
        }

        if (noIteration)
        {
            text.Append(RenderBlock(node.Else, scope));
        }

        return text.ToString();
    }

    private static JinjaObject LoopObject(int i, List<JinjaValue> items)
    {
        int length = items.Count;
        var entries = new OrderedDictionary<string, JinjaValue>(StringComparer.Ordinal)
        {
            ["index"] = new JinjaInteger(i + 1),
            ["index0"] = new JinjaInteger(i),
            ["revindex"] = new JinjaInteger(length - i),
            ["revindex0"] = new JinjaInteger(length - i - 1),
            ["first"] = JinjaBoolean.Of(i == 0),
            ["last"] = JinjaBoolean.Of(i == length - 1),
            ["length"] = new JinjaInteger(length),
            ["previtem"] = i > 0 ? items[i - 1] : JinjaUndefined.Instance,
            ["nextitem"] = i < length - 1 ? items[i + 1] : JinjaUndefined.Instance,
        };
        return new JinjaObject(entries);
    }

    private JinjaValue Evaluate(JinjaExpression expression, JinjaScope scope)
    {
        Step(expression);
        switch (expression)
        {
            case IdentifierExpression id:
                return scope.Lookup(id.Name);
            case IntegerLiteral i:
                return new JinjaInteger(i.Value);
            case FloatLiteral f:
                return new JinjaFloat(f.Value);
            case StringLiteral s:
                return new JinjaString(s.Value);
            case BinaryExpression b:
                return EvaluateBinary(b, scope);
            case MemberExpression m:
                return EvaluateMember(m, scope);
            case CallExpression c:
                return EvaluateCall(c, scope);
            case FilterExpression f:
                return ApplyFilter(Evaluate(f.Operand, scope), f.Filter, scope);
            case TestExpression t:
                return EvaluateTest(t, scope);
            case TernaryExpression t:
                return Evaluate(t.Condition, scope).IsTruthy ? Evaluate(t.WhenTrue, scope) : Evaluate(t.WhenFalse, scope);
            case UnaryExpression u:
                return EvaluateUnary(u, scope);
            case ArrayLiteral a:
                return new JinjaArray([.. a.Items.Select(x => Evaluate(x, scope))]);
            case TupleLiteral t:
                return new JinjaTuple([.. t.Items.Select(x => Evaluate(x, scope))]);
            case ObjectLiteral o:
                {
                    var entries = new OrderedDictionary<string, JinjaValue>(StringComparer.Ordinal);
                    foreach (var (key, value) in o.Entries)
                    {
                        var k = Evaluate(key, scope);
                        if (k is not JinjaString ks)
                        {
                            throw Fail(key, $"Object keys must be strings, got {k.TypeName}");
                        }

                        entries[ks.Value] = Evaluate(value, scope);
                    }

                    return new JinjaObject(entries);
                }

            case SelectExpression s:
                return Evaluate(s.Test, scope).IsTruthy ? Evaluate(s.Value, scope) : JinjaUndefined.Instance;
            default:
                throw Fail(expression, $"This expression cannot stand here ({expression.GetType().Name})");
        }
    }

    private static bool IsNumber(JinjaValue v) => v is JinjaInteger or JinjaFloat;

    private static double NumberOf(JinjaValue v) => v switch
    {
        JinjaInteger i => i.Value,
        JinjaFloat f => f.Value,
        JinjaBoolean b => b.Value ? 1 : 0,
        _ => double.NaN,
    };

    private JinjaValue EvaluateBinary(BinaryExpression node, JinjaScope scope)
    {
        var left = Evaluate(node.Left, scope);
        switch (node.Operator)
        {
            case "and":
                return left.IsTruthy ? Evaluate(node.Right, scope) : left;
            case "or":
                return left.IsTruthy ? left : Evaluate(node.Right, scope);
        }

        var right = Evaluate(node.Right, scope);
        var op = node.Operator;
        switch (op)
        {
            case "==":
                return JinjaBoolean.Of(LooseEquals(left, right));
            case "!=":
                return JinjaBoolean.Of(!LooseEquals(left, right));
        }

        if (IsNumber(left) && IsNumber(right) && op != "~" && op != "**")
        {
            bool isFloat = left is JinjaFloat || right is JinjaFloat;
            if (!isFloat && op is "+" or "-" or "*" or "//" or "%")
            {
                long a = ((JinjaInteger)left).Value, b = ((JinjaInteger)right).Value;
                switch (op)
                {
                    case "+": return new JinjaInteger(a + b);
                    case "-": return new JinjaInteger(a - b);
                    case "*": return new JinjaInteger(a * b);
                    case "//" when b != 0: return new JinjaInteger((long)Math.Floor((double)a / b));
                    case "%" when b != 0: return new JinjaInteger(a % b);
                }
            }

            double x = NumberOf(left), y = NumberOf(right);
            switch (op)
            {
                case "+": return new JinjaFloat(x + y);
                case "-": return new JinjaFloat(x - y);
                case "*": return new JinjaFloat(x * y);
                case "/": return new JinjaFloat(x / y);
                case "//": return isFloat ? new JinjaFloat(Math.Floor(x / y)) : throw Fail(node, "Integer division by zero");
                case "%": return isFloat ? new JinjaFloat(x % y) : throw Fail(node, "Integer modulo by zero");
                case "<": return JinjaBoolean.Of(x < y);
                case ">": return JinjaBoolean.Of(x > y);
                case ">=": return JinjaBoolean.Of(x >= y);
                case "<=": return JinjaBoolean.Of(x <= y);
            }
        }
        else if (left is JinjaUndefined || right is JinjaUndefined)
        {
            if (right is JinjaUndefined && op is "in" or "not in")
            {
                return JinjaBoolean.Of(op == "not in");
            }

            if (op == "~" && left is not JinjaNull && right is not JinjaNull)
            {
                return Text(node, (left is JinjaUndefined ? string.Empty : PlainText(left)) + (right is JinjaUndefined ? string.Empty : PlainText(right)));
            }

            throw Fail(node, $"Cannot perform operation {op} on undefined values");
        }
        else if (left is JinjaNull || right is JinjaNull)
        {
            throw Fail(node, $"Cannot perform operation {op} on null values");
        }
        else if (op == "~")
        {
            return Text(node, PlainText(left) + PlainText(right));
        }
        else if (op == "**" && left is JinjaInteger or JinjaFloat or JinjaBoolean && right is JinjaInteger or JinjaFloat or JinjaBoolean)
        {
            double a = NumberOf(left), b = NumberOf(right);
            if (a == 0 && b < 0)
            {
                throw Fail(node, "0.0 cannot be raised to a negative power");
            }

            double result = Math.Pow(a, b);
            if (!double.IsFinite(result))
            {
                throw Fail(node, "Exponentiation result is not a finite real number");
            }

            return left is JinjaFloat || right is JinjaFloat || b < 0 ? new JinjaFloat(result) : new JinjaInteger((long)result);
        }
        else if (left is JinjaArray la && right is JinjaArray ra)
        {
            if (op == "+")
            {
                return new JinjaArray([.. la.Items, .. ra.Items]);
            }
        }
        else if (right is JinjaArray container)
        {
            bool member = container.Items.Exists(x => StrictEquals(x, left));
            switch (op)
            {
                case "in": return JinjaBoolean.Of(member);
                case "not in": return JinjaBoolean.Of(!member);
            }
        }

        if ((left is JinjaString || right is JinjaString) && op == "+")
        {
            return Text(node, PlainText(left) + PlainText(right));
        }

        if (left is JinjaString ls && right is JinjaString rs && op is "in" or "not in")
        {
            bool contains = rs.Value.Contains(ls.Value, StringComparison.Ordinal);
            return JinjaBoolean.Of(op == "in" ? contains : !contains);
        }

        if (left is JinjaString key && right is JinjaObject map && op is "in" or "not in")
        {
            bool has = map.Entries.ContainsKey(key.Value);
            return JinjaBoolean.Of(op == "in" ? has : !has);
        }

        throw Fail(node, $"Unknown operator \"{op}\" between {left.TypeName} and {right.TypeName}");
    }

    private static JinjaString Text(JinjaNode node, string value) => value.Length > MaxTextLength
        ? throw Fail(node, $"A string grew past {MaxTextLength:N0} characters")
        : new JinjaString(value);

    /// <summary>How a value joins a string with <c>+</c> or <c>~</c> (JavaScript's String() of the raw value).</summary>
    private static string PlainText(JinjaValue value) => value switch
    {
        JinjaArray a => string.Join(",", a.Items.Select(ElementText)),
        JinjaObject or JinjaNamespace => "[object Map]",
        JinjaFloat f => JinjaFloat.JsNumber(f.Value),
        _ => value.ToString(),
    };

    /// <summary>How an item of a list turns into text when the list does (the reference's none and undefined both write "undefined").</summary>
    private static string ElementText(JinjaValue value) => value is JinjaNull or JinjaUndefined ? "undefined" : value.ToString();

    /// <summary>JavaScript's <c>==</c> on the raw values, as the reference compares.</summary>
    internal static bool LooseEquals(JinjaValue a, JinjaValue b)
    {
        if (a is JinjaUndefined or JinjaNull)
        {
            return b is JinjaUndefined or JinjaNull;
        }

        if (b is JinjaUndefined or JinjaNull)
        {
            return false;
        }

        if (a is JinjaString sa && b is JinjaString sb)
        {
            return string.Equals(sa.Value, sb.Value, StringComparison.Ordinal);
        }

        if (a is JinjaInteger or JinjaFloat or JinjaBoolean or JinjaString && b is JinjaInteger or JinjaFloat or JinjaBoolean or JinjaString)
        {
            return ToNumber(a) == ToNumber(b);
        }

        return ReferenceEquals(a, b) || (a is JinjaFunction fa && b is JinjaFunction fb && fa.Invoke == fb.Invoke);
    }

    private static double ToNumber(JinjaValue v)
    {
        if (v is JinjaString s)
        {
            var t = JinjaLexer.JsTrim(s.Value);
            if (t.Length == 0)
            {
                return 0;
            }

            return double.TryParse(t, NumberStyles.Float, CultureInfo.InvariantCulture, out var d) ? d : double.NaN;
        }

        return NumberOf(v);
    }

    /// <summary>JavaScript's <c>===</c> on the raw values (membership and the equalto test).</summary>
    internal static bool StrictEquals(JinjaValue a, JinjaValue b) => (a, b) switch
    {
        (JinjaString x, JinjaString y) => string.Equals(x.Value, y.Value, StringComparison.Ordinal),
        (JinjaInteger or JinjaFloat, JinjaInteger or JinjaFloat) => NumberOf(a) == NumberOf(b),
        (JinjaBoolean x, JinjaBoolean y) => x.Value == y.Value,
        (JinjaNull, JinjaNull) => true,
        (JinjaUndefined, JinjaUndefined) => true,
        _ => ReferenceEquals(a, b) || (a is JinjaArray aa && b is JinjaArray ab && ReferenceEquals(aa.Items, ab.Items))
            || (a is JinjaObject oa && b is JinjaObject ob && ReferenceEquals(oa.Entries, ob.Entries)),
    };

    private JinjaValue EvaluateUnary(UnaryExpression node, JinjaScope scope)
    {
        var argument = Evaluate(node.Argument, scope);
        switch (node.Operator)
        {
            case "not":
                return JinjaBoolean.Of(!argument.IsTruthy);
            case "-" or "+":
                {
                    int sign = node.Operator == "-" ? -1 : 1;
                    return argument switch
                    {
                        JinjaFloat f => new JinjaFloat(sign * f.Value),
                        JinjaInteger i => new JinjaInteger(sign * i.Value),
                        JinjaBoolean b => new JinjaInteger(sign * (b.Value ? 1 : 0)),
                        _ => throw Fail(node, $"Unknown operator \"{node.Operator}\" for {argument.TypeName}"),
                    };
                }

            default:
                throw Fail(node, $"Unknown operator {node.Operator}");
        }
    }

    private JinjaValue EvaluateMember(MemberExpression node, JinjaScope scope)
    {
        var target = Evaluate(node.Object, scope);
        JinjaValue property;
        if (node.Computed)
        {
            if (node.Property is SliceExpression slice)
            {
                return EvaluateSlice(target, slice, scope);
            }

            property = Evaluate(node.Property, scope);
        }
        else if (node.Property is IntegerLiteral integer)
        {
            property = new JinjaInteger(integer.Value);
        }
        else
        {
            property = new JinjaString(((IdentifierExpression)node.Property).Name);
        }

        JinjaValue? value;
        switch (target)
        {
            case JinjaObject or JinjaNamespace:
                {
                    if (property is not JinjaString key)
                    {
                        throw Fail(node, $"Cannot access a property with a non-string key: got {property.TypeName}");
                    }

                    var entries = target is JinjaObject o ? o.Entries : ((JinjaNamespace)target).Entries;
                    value = entries.TryGetValue(key.Value, out var found) ? found
                        : target is JinjaObject obj ? ObjectBuiltin(obj, key.Value) : null;
                    break;
                }

            case JinjaArray or JinjaString:
                if (property is JinjaInteger index)
                {
                    if (target is JinjaString s)
                    {
                        long at = index.Value < 0 ? s.Value.Length + index.Value : index.Value;
                        value = at >= 0 && at < s.Value.Length ? new JinjaString(s.Value[(int)at].ToString()) : null;
                    }
                    else
                    {
                        var items = ((JinjaArray)target).Items;
                        long at = index.Value < 0 ? items.Count + index.Value : index.Value;
                        value = at >= 0 && at < items.Count ? items[(int)at] : null;
                    }
                }
                else if (property is JinjaString name)
                {
                    value = target is JinjaString str ? StringBuiltin(str, name.Value) : ArrayBuiltin((JinjaArray)target, name.Value);
                }
                else
                {
                    throw Fail(node, $"Cannot access a property with a non-string/non-number key: got {property.TypeName}");
                }

                break;
            default:
                if (property is not JinjaString)
                {
                    throw Fail(node, $"Cannot access a property with a non-string key: got {property.TypeName} (on {target.TypeName})");
                }

                value = null;
                break;
        }

        return value ?? JinjaUndefined.Instance;
    }

    private JinjaValue EvaluateSlice(JinjaValue target, SliceExpression node, JinjaScope scope)
    {
        if (target is not (JinjaArray or JinjaString))
        {
            throw Fail(node, $"Only a list or a string can be sliced, not {target.TypeName}");
        }

        long? Part(JinjaExpression? e, string what)
        {
            var v = e is null ? JinjaUndefined.Instance : Evaluate(e, scope);
            return v switch
            {
                JinjaUndefined => null,
                JinjaInteger i => i.Value,
                _ => throw Fail(node, $"Slice {what} must be an integer or empty"),
            };
        }

        long? start = Part(node.Start, "start"), stop = Part(node.Stop, "stop"), step = Part(node.Step, "step");
        if (target is JinjaArray array)
        {
            return new JinjaArray(Slice(array.Items, start, stop, step ?? 1));
        }

        var codePoints = CodePoints(((JinjaString)target).Value);
        return new JinjaString(string.Concat(Slice(codePoints, start, stop, step ?? 1)));
    }

    private static List<string> CodePoints(string s)
    {
        var list = new List<string>(s.Length);
        for (int i = 0; i < s.Length; i++)
        {
            if (char.IsHighSurrogate(s[i]) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1]))
            {
                list.Add(s.Substring(i, 2));
                i++;
            }
            else
            {
                list.Add(s[i].ToString());
            }
        }

        return list;
    }

    /// <summary>The reference's slice (Python semantics for the usual cases; a zero step yields nothing).</summary>
    internal static List<T> Slice<T>(List<T> items, long? start, long? stop, long step)
    {
        long length = items.Count;
        int direction = Math.Sign(step);
        long s, e;
        if (direction >= 0)
        {
            s = start ?? 0;
            s = s < 0 ? Math.Max(length + s, 0) : Math.Min(s, length);
            e = stop ?? length;
            e = e < 0 ? Math.Max(length + e, 0) : Math.Min(e, length);
        }
        else
        {
            s = start ?? length - 1;
            s = s < 0 ? Math.Max(length + s, -1) : Math.Min(s, length - 1);
            e = stop ?? -1;
            e = e < -1 ? Math.Max(length + e, -1) : Math.Min(e, length - 1);
        }

        var result = new List<T>();
        if (step == 0)
        {
            throw new JinjaRuntimeException("Slice step cannot be zero");
        }

        // A step longer than the list takes one item at most; clamping keeps the index arithmetic from overflowing.
        step = Math.Clamp(step, -(length + 1), length + 1);

        for (long i = s; direction * i < direction * e; i += step)
        {
            result.Add(items[(int)i]);
        }

        return result;
    }

    private (List<JinjaValue> Positional, OrderedDictionary<string, JinjaValue> Keywords) EvaluateArguments(List<JinjaExpression> arguments, JinjaScope scope)
    {
        var positional = new List<JinjaValue>();
        var keywords = new OrderedDictionary<string, JinjaValue>(StringComparer.Ordinal);
        foreach (var argument in arguments)
        {
            if (argument is SpreadExpression spread)
            {
                var value = Evaluate(spread.Argument, scope);
                if (value is not JinjaArray array)
                {
                    throw Fail(argument, $"Cannot unpack non-iterable type: {value.TypeName}");
                }

                positional.AddRange(array.Items);
            }
            else if (argument is not (KeywordArgumentExpression or KeywordSpreadExpression))
            {
                positional.Add(Evaluate(argument, scope));
            }
        }

        foreach (var argument in arguments)
        {
            if (argument is KeywordArgumentExpression kw)
            {
                if (!keywords.TryAdd(kw.Name, Evaluate(kw.Value, scope)))
                {
                    throw Fail(argument, $"Got multiple values for keyword argument '{kw.Name}'");
                }
            }
            else if (argument is KeywordSpreadExpression ks)
            {
                var value = Evaluate(ks.Argument, scope);
                if (value is not JinjaObject map)
                {
                    throw Fail(argument, $"Argument after ** must be a mapping, not {value.TypeName}");
                }

                foreach (var (k, v) in map.Entries)
                {
                    if (!keywords.TryAdd(k, v))
                    {
                        throw Fail(argument, $"Got multiple values for keyword argument '{k}'");
                    }
                }
            }
        }

        return (positional, keywords);
    }

    private List<JinjaValue> EvaluateCallArguments(List<JinjaExpression> arguments, JinjaScope scope)
    {
        var (positional, keywords) = EvaluateArguments(arguments, scope);
        if (keywords.Count > 0)
        {
            positional.Add(new JinjaObject(keywords, isKeywordArguments: true));
        }

        return positional;
    }

    private JinjaValue EvaluateCall(CallExpression node, JinjaScope scope)
    {
        var arguments = EvaluateCallArguments(node.Arguments, scope);
        var callee = Evaluate(node.Callee, scope);
        if (callee is not JinjaFunction function)
        {
            throw Fail(node, $"Cannot call something that is not a function: '{Describe(node.Callee)}' is {callee.TypeName}");
        }

        return Invoke(node, function, arguments, scope);
    }

    private static string Describe(JinjaExpression e) => e switch
    {
        IdentifierExpression id => id.Name,
        MemberExpression { Computed: false, Property: IdentifierExpression p } m => Describe(m.Object) + "." + p.Name,
        MemberExpression { Computed: true } m => Describe(m.Object) + "[…]",
        CallExpression c => Describe(c.Callee) + "(…)",
        _ => "(…)",
    };

    private static JinjaValue Invoke(JinjaNode node, JinjaFunction function, List<JinjaValue> arguments, JinjaScope scope)
    {
        try
        {
            return function.Invoke(arguments, scope);
        }
        catch (JinjaRuntimeException e) when (e.Offset is null)
        {
            throw new JinjaRuntimeException(e.Message, e) { Offset = node.Offset };
        }
        catch (TemplateRaisedException e) when (e.Offset is null)
        {
            e.Offset = node.Offset;
            throw;
        }
    }

    private JinjaBoolean EvaluateTest(TestExpression node, JinjaScope scope)
    {
        var operand = Evaluate(node.Operand, scope);
        var arguments = node.Arguments is null ? [] : EvaluateCallArguments(node.Arguments, scope);
        bool result = RunTest(node, node.Test, operand, arguments.Count > 0 ? arguments[0] : null);
        return JinjaBoolean.Of(node.Negate ? !result : result);
    }

    private static bool RunTest(JinjaNode node, string test, JinjaValue operand, JinjaValue? argument) => test switch
    {
        "boolean" => operand is JinjaBoolean,
        "callable" => operand is JinjaFunction,
        "odd" => operand is JinjaInteger oi ? oi.Value % 2 != 0 : throw Fail(node, $"cannot odd on {operand.TypeName}"),
        "even" => operand is JinjaInteger ei ? ei.Value % 2 == 0 : throw Fail(node, $"cannot even on {operand.TypeName}"),
        "false" => operand is JinjaBoolean { Value: false },
        "true" => operand is JinjaBoolean { Value: true },
        "none" => operand is JinjaNull,
        "string" => operand is JinjaString,
        "number" => operand is JinjaInteger or JinjaFloat,
        "integer" => operand is JinjaInteger,
        "float" => operand is JinjaFloat,
        "iterable" => operand is JinjaArray or JinjaString,
        "mapping" => operand is JinjaObject,
        "sequence" => operand is JinjaArray or JinjaObject or JinjaString,
        "lower" => operand is JinjaString ls && IsUnchangedBy(ls.Value, static x => x.ToLowerInvariant()),
        "upper" => operand is JinjaString us && IsUnchangedBy(us.Value, static x => x.ToUpperInvariant()),
        "defined" => operand is not JinjaUndefined,
        "undefined" => operand is JinjaUndefined,
        "equalto" or "eq" or "sameas" => StrictEquals(operand, argument ?? JinjaUndefined.Instance),
        "ne" => !StrictEquals(operand, argument ?? JinjaUndefined.Instance),
        _ => throw Fail(node, $"Unknown test: {test}"),
    };

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

    private void DefineMacro(MacroNode node, JinjaScope scope)
    {
        var special = SpecialArguments(node.Body, node.Parameters);
        scope.Set(node.Name, new JinjaFunction(node.Name, (args, callSite) =>
        {
            var parent = scope;
            if (special.Contains("caller"))
            {
                parent = new JinjaScope(scope);
                parent.Set("caller", callSite.IsCallBlockScope && callSite.TryGetLocal("caller", out var caller) ? caller : JinjaUndefined.Instance);
            }

            var macroScope = new JinjaScope(parent);
            BindArguments($"'{node.Name}'", node.Parameters, special, args, macroScope);
            return new JinjaString(RenderCallable(node, node.Body, macroScope));
        }));
    }

    private string RenderCallable(JinjaNode node, List<JinjaNode> body, JinjaScope scope)
    {
        if (++_callDepth > MaxCallDepth)
        {
            _callDepth--;
            throw Fail(node, $"Macro calls nest deeper than {MaxCallDepth} (endless recursion?)");
        }

        try
        {
            return RenderBlock(body, scope);
        }
        finally
        {
            _callDepth--;
        }
    }

    private void BindArguments(string displayName, List<JinjaExpression> parameters, HashSet<string> special, List<JinjaValue> args, JinjaScope scope)
    {
        var (positional, keywordEntries) = SplitKeywords(args);
        var keywords = new OrderedDictionary<string, JinjaValue>(keywordEntries, StringComparer.Ordinal);
        var pendingDefaults = new List<(string Name, JinjaExpression Default)>();
        for (int i = 0; i < parameters.Count; i++)
        {
            var (name, defaultValue) = parameters[i] switch
            {
                IdentifierExpression id => (id.Name, (JinjaExpression?)null),
                KeywordArgumentExpression kw => (kw.Name, kw.Value),
                _ => throw Fail(parameters[i], "Invalid macro parameter"),
            };
            JinjaValue? value = i < positional.Count ? positional[i] : null;
            if (value is null && keywords.Remove(name, out var byName))
            {
                value = byName;
            }

            if (value is null && defaultValue is not null)
            {
                pendingDefaults.Add((name, defaultValue));
            }

            scope.Set(name, value ?? JinjaUndefined.Instance);
        }

        if (special.Contains("kwargs"))
        {
            scope.Set("kwargs", new JinjaObject(keywords));
        }
        else if (keywords.Count > 0)
        {
            throw new JinjaRuntimeException($"macro {displayName} takes no keyword argument '{keywords.GetAt(0).Key}'");
        }

        if (special.Contains("varargs"))
        {
            scope.Set("varargs", new JinjaArray([.. positional.Skip(parameters.Count)]));
        }
        else if (positional.Count > parameters.Count)
        {
            throw new JinjaRuntimeException($"macro {displayName} takes not more than {parameters.Count} argument(s)");
        }

        foreach (var (name, defaultValue) in pendingDefaults)
        {
            scope.Set(name, Evaluate(defaultValue, scope));
        }
    }

    private JinjaValue EvaluateCallBlock(CallBlockNode node, JinjaScope scope)
    {
        var special = SpecialArguments(node.Body, node.CallerParameters);
        var callerFunction = new JinjaFunction("caller", (args, _) =>
        {
            var callScope = new JinjaScope(scope);
            BindArguments("None", node.CallerParameters, special, args, callScope);
            return new JinjaString(RenderCallable(node, node.Body, callScope));
        });
        var (positional, keywords) = EvaluateArguments(node.Call.Arguments, scope);
        positional.Add(new JinjaObject(keywords, isKeywordArguments: true));
        var callee = Evaluate(node.Call.Callee, scope);
        if (callee is not JinjaFunction function)
        {
            throw Fail(node, $"Cannot call something that is not a function: got {callee.TypeName}");
        }

        var callSite = new JinjaScope(scope) { IsCallBlockScope = true };
        callSite.Set("caller", callerFunction);
        return Invoke(node, function, positional, callSite);
    }

    /// <summary>Which of caller/kwargs/varargs a macro body mentions (and does not declare as a parameter).</summary>
    private static HashSet<string> SpecialArguments(List<JinjaNode> body, List<JinjaExpression> parameters)
    {
        var declared = parameters.Select(p => p switch { IdentifierExpression id => id.Name, KeywordArgumentExpression kw => kw.Name, _ => string.Empty }).ToHashSet(StringComparer.Ordinal);
        var found = new HashSet<string>(StringComparer.Ordinal);
        var stack = new Stack<JinjaNode>(body);
        while (stack.Count > 0)
        {
            foreach (var child in Children(stack.Pop(), found, declared))
            {
                stack.Push(child);
            }
        }

        return found;
    }

    /// <summary>The child nodes of <paramref name="node"/> (a nested macro is its own scope and is not entered).</summary>
    private static IEnumerable<JinjaNode?> ChildrenOf(JinjaNode node) => node switch
    {
        IfNode n => [n.Test, .. n.Body, .. n.Alternate],
        ForNode n => [n.LoopVariable, n.Iterable, .. n.Body, .. n.Else],
        SetNode n => new JinjaNode?[] { n.Assignee, n.Value }.Concat(n.Body),
        CallBlockNode n => [n.Call, .. n.CallerParameters, .. n.Body],
        FilterBlockNode n => [n.Filter, .. n.Body],
        ArrayLiteral n => n.Items,
        TupleLiteral n => n.Items,
        ObjectLiteral n => n.Entries.SelectMany(e => new JinjaNode[] { e.Key, e.Value }),
        MemberExpression n => [n.Object, n.Property],
        SliceExpression n => new JinjaNode?[] { n.Start, n.Stop, n.Step },
        CallExpression n => [n.Callee, .. n.Arguments],
        BinaryExpression n => [n.Left, n.Right],
        UnaryExpression n => [n.Argument],
        FilterExpression n => [n.Operand, n.Filter],
        TestExpression n => [n.Operand, .. n.Arguments ?? []],
        SelectExpression n => [n.Value, n.Test],
        TernaryExpression n => [n.Condition, n.WhenTrue, n.WhenFalse],
        KeywordArgumentExpression n => [n.Value],
        SpreadExpression n => [n.Argument],
        KeywordSpreadExpression n => [n.Argument],
        _ => [],
    };

    private static IEnumerable<JinjaNode> Children(JinjaNode node, HashSet<string> found, HashSet<string> declared)
    {
        if (node is IdentifierExpression { Name: "caller" or "kwargs" or "varargs" } id && !declared.Contains(id.Name))
        {
            found.Add(id.Name);
        }

        return ChildrenOf(node).OfType<JinjaNode>();
    }
}
