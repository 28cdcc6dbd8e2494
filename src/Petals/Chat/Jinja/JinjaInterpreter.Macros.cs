using System.Globalization;
using System.Text;

namespace Petals.Chat.Jinja;

/// <summary>Macros, call blocks and their arguments (caller, varargs, kwargs).</summary>
internal sealed partial class JinjaInterpreter
{
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
