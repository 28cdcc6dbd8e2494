using System.Globalization;
using System.Text;

namespace Petals.Chat.Jinja;

/// <summary>
/// Renders a parsed template with the semantics of @huggingface/jinja (the interpreter Hugging Face's JavaScript libraries
/// and many servers use for chat templates): its undefined handling, operators, filters, tests, string and mapping
/// methods. Bounded: a render stops with an error after <see cref="MaxSteps"/> evaluation steps, at macro recursion deeper
/// than <see cref="MaxCallDepth"/>, or when a string or the output outgrows <see cref="MaxTextLength"/> characters.
/// </summary>
internal sealed partial class JinjaInterpreter
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
}
