using System.Globalization;

namespace Petals.Chat.Jinja;

/// <summary>
/// Parses tokens into a syntax tree with the grammar (and operator precedence) of @huggingface/jinja: ternary, or, and,
/// not, comparisons and (not) in, + - ~, * / // %, **, is-tests, filters, unary signs, calls, members and slices.
/// </summary>
internal sealed class JinjaParser
{
    /// <summary>How deeply blocks and expressions may nest before the parser refuses (keeps the stack bounded).</summary>
    internal const int MaxNesting = 256;

    private readonly List<JinjaToken> _tokens;
    private readonly string _source;
    private int _current;
    private int _depth;

    private JinjaParser(List<JinjaToken> tokens, string source)
    {
        _tokens = tokens;
        _source = source;
    }

    /// <summary>Parses a template.</summary>
    /// <exception cref="ChatTemplateException">When it does not parse; the message names the line and column.</exception>
    public static List<JinjaNode> Parse(string source)
    {
        var tokens = JinjaLexer.Tokenize(source);
        var parser = new JinjaParser(tokens, source);
        var body = new List<JinjaNode>();
        while (parser._current < tokens.Count)
        {
            body.Add(parser.ParseAny());
        }

        return body;
    }

    private JinjaToken Peek(int ahead = 0) => _current + ahead < _tokens.Count
        ? _tokens[_current + ahead]
        : throw Error("Unexpected end of template", _source.Length);

    private bool Is(JinjaTokenKind kind) => _current < _tokens.Count && _tokens[_current].Kind == kind;

    private bool IsIdentifier(string name) => _current < _tokens.Count && _tokens[_current].Kind == JinjaTokenKind.Identifier && _tokens[_current].Value == name;

    private bool IsIdentifiers(string first, string second) => IsIdentifier(first) && _current + 1 < _tokens.Count
        && _tokens[_current + 1].Kind == JinjaTokenKind.Identifier && _tokens[_current + 1].Value == second;

    private bool IsStatement(params string[] names) => _current + 1 < _tokens.Count && _tokens[_current].Kind == JinjaTokenKind.OpenStatement
        && _tokens[_current + 1].Kind == JinjaTokenKind.Identifier && Array.IndexOf(names, _tokens[_current + 1].Value) >= 0;

    private ChatTemplateException Error(string message, int offset) => JinjaErrors.Syntax(message, _source, offset);

    private ChatTemplateException ErrorAtCurrent(string message) =>
        Error(message, _current < _tokens.Count ? _tokens[_current].Offset : _source.Length);

    private JinjaToken Expect(JinjaTokenKind kind, string what)
    {
        if (_current >= _tokens.Count)
        {
            throw Error($"Expected {what}, found the end of the template", _source.Length);
        }

        var token = _tokens[_current];
        if (token.Kind != kind)
        {
            throw Error($"Expected {what}, found {Describe(token)}", token.Offset);
        }

        _current++;
        return token;
    }

    private void ExpectIdentifier(string name)
    {
        if (!IsIdentifier(name))
        {
            throw ErrorAtCurrent($"Expected '{name}'");
        }

        _current++;
    }

    private static string Describe(JinjaToken token) => token.Kind switch
    {
        JinjaTokenKind.Text => "text",
        JinjaTokenKind.StringLiteral => "a string literal",
        JinjaTokenKind.NumericLiteral => $"the number {token.Value}",
        JinjaTokenKind.Identifier => $"'{token.Value}'",
        JinjaTokenKind.Comment => "a comment",
        _ => $"'{token.Value}'",
    };

    private void Enter()
    {
        if (++_depth > MaxNesting)
        {
            throw ErrorAtCurrent($"The template nests deeper than {MaxNesting} levels");
        }
    }

    private List<JinjaNode> ParseUntil(string opening, int openOffset, params string[] ends)
    {
        var body = new List<JinjaNode>();
        while (!IsStatement(ends))
        {
            if (_current >= _tokens.Count)
            {
                throw Error($"'{opening}' is never closed (expected {string.Join(" or ", ends.Select(e => "{% " + e + " %}"))})", openOffset);
            }

            body.Add(ParseAny());
        }

        return body;
    }

    private JinjaNode ParseAny()
    {
        Enter();
        try
        {
            var token = Peek();
            switch (token.Kind)
            {
                case JinjaTokenKind.Comment:
                    _current++;
                    return new CommentNode(token.Offset);
                case JinjaTokenKind.Text:
                    _current++;
                    return new TextNode(token.Offset, token.Value);
                case JinjaTokenKind.OpenStatement:
                    return ParseStatement();
                case JinjaTokenKind.OpenExpression:
                    {
                        _current++;
                        var expression = ParseExpression();
                        Expect(JinjaTokenKind.CloseExpression, "'}}'");
                        return expression;
                    }

                default:
                    throw Error($"Unexpected {Describe(token)} outside a tag", token.Offset);
            }
        }
        finally
        {
            _depth--;
        }
    }

    private JinjaNode ParseStatement()
    {
        var open = Expect(JinjaTokenKind.OpenStatement, "'{%'");
        if (!Is(JinjaTokenKind.Identifier))
        {
            throw ErrorAtCurrent("Expected a statement name after '{%'");
        }

        var name = _tokens[_current].Value;
        int offset = open.Offset;
        switch (name)
        {
            case "set":
                {
                    _current++;
                    var assignee = ParseExpressionSequence(primary: false);
                    JinjaExpression? value = null;
                    var body = new List<JinjaNode>();
                    if (Is(JinjaTokenKind.Equals))
                    {
                        _current++;
                        value = ParseExpressionSequence(primary: false);
                    }
                    else
                    {
                        Expect(JinjaTokenKind.CloseStatement, "'%}' or '='");
                        body = ParseUntil("set", offset, "endset");
                        _current++;
                        ExpectIdentifier("endset");
                    }

                    Expect(JinjaTokenKind.CloseStatement, "'%}'");
                    return new SetNode(offset, assignee, value, body);
                }

            case "if":
                {
                    _current++;
                    var result = ParseIf(offset);
                    Expect(JinjaTokenKind.OpenStatement, "'{%'");
                    ExpectIdentifier("endif");
                    Expect(JinjaTokenKind.CloseStatement, "'%}'");
                    return result;
                }

            case "for":
                {
                    _current++;
                    var loopVariable = ParseExpressionSequence(primary: true);
                    if (loopVariable is not (IdentifierExpression or TupleLiteral))
                    {
                        throw Error("Expected a name or a tuple of names as the loop variable", loopVariable.Offset);
                    }

                    if (!IsIdentifier("in"))
                    {
                        throw ErrorAtCurrent("Expected 'in' after the loop variable");
                    }

                    _current++;
                    var iterable = ParseExpression();
                    Expect(JinjaTokenKind.CloseStatement, "'%}'");
                    var body = ParseUntil("for", offset, "endfor", "else");
                    var alternative = new List<JinjaNode>();
                    if (IsStatement("else"))
                    {
                        _current += 2;
                        Expect(JinjaTokenKind.CloseStatement, "'%}'");
                        alternative = ParseUntil("for", offset, "endfor");
                    }

                    _current++;
                    ExpectIdentifier("endfor");
                    Expect(JinjaTokenKind.CloseStatement, "'%}'");
                    return new ForNode(offset, loopVariable, iterable, body, alternative);
                }

            case "macro":
                {
                    _current++;
                    var nameExpression = ParsePrimary();
                    if (nameExpression is not IdentifierExpression macroName)
                    {
                        throw Error("Expected a name after 'macro'", nameExpression.Offset);
                    }

                    var parameters = ParseArguments(parameters: true);
                    Expect(JinjaTokenKind.CloseStatement, "'%}'");
                    var body = ParseUntil("macro", offset, "endmacro");
                    _current++;
                    ExpectIdentifier("endmacro");
                    Expect(JinjaTokenKind.CloseStatement, "'%}'");
                    return new MacroNode(offset, macroName.Name, parameters, body);
                }

            case "call":
                {
                    _current++;
                    var callerParameters = new List<JinjaExpression>();
                    if (Is(JinjaTokenKind.OpenParen))
                    {
                        callerParameters = ParseArguments(parameters: true);
                    }

                    var callee = ParsePrimary();
                    if (callee is not IdentifierExpression)
                    {
                        throw Error("Expected a macro name after 'call'", callee.Offset);
                    }

                    var arguments = ParseArguments(parameters: false);
                    Expect(JinjaTokenKind.CloseStatement, "'%}'");
                    var body = ParseUntil("call", offset, "endcall");
                    _current++;
                    ExpectIdentifier("endcall");
                    Expect(JinjaTokenKind.CloseStatement, "'%}'");
                    return new CallBlockNode(offset, new CallExpression(callee.Offset, callee, arguments), callerParameters, body);
                }

            case "filter":
                {
                    _current++;
                    var filter = ParsePrimary();
                    if (filter is IdentifierExpression && Is(JinjaTokenKind.OpenParen))
                    {
                        filter = ParseCall(filter);
                    }

                    Expect(JinjaTokenKind.CloseStatement, "'%}'");
                    var body = ParseUntil("filter", offset, "endfilter");
                    _current++;
                    ExpectIdentifier("endfilter");
                    Expect(JinjaTokenKind.CloseStatement, "'%}'");
                    return new FilterBlockNode(offset, filter, body);
                }

            case "break":
                _current++;
                Expect(JinjaTokenKind.CloseStatement, "'%}'");
                return new BreakNode(offset);
            case "continue":
                _current++;
                Expect(JinjaTokenKind.CloseStatement, "'%}'");
                return new ContinueNode(offset);
            default:
                throw Error($"Unknown statement '{name}'", _tokens[_current].Offset);
        }
    }

    private IfNode ParseIf(int offset)
    {
        Enter();
        try
        {
            var test = ParseExpression();
            Expect(JinjaTokenKind.CloseStatement, "'%}'");
            var body = ParseUntil("if", offset, "elif", "else", "endif");
            var alternate = new List<JinjaNode>();
            if (IsStatement("elif"))
            {
                int elifOffset = _tokens[_current].Offset;
                _current += 2;
                alternate.Add(ParseIf(elifOffset));
            }
            else if (IsStatement("else"))
            {
                _current += 2;
                Expect(JinjaTokenKind.CloseStatement, "'%}'");
                alternate = ParseUntil("if", offset, "endif");
            }

            return new IfNode(offset, test, body, alternate);
        }
        finally
        {
            _depth--;
        }
    }

    private JinjaExpression ParseExpressionSequence(bool primary)
    {
        var first = primary ? ParsePrimary() : ParseExpression();
        if (!Is(JinjaTokenKind.Comma))
        {
            return first;
        }

        var items = new List<JinjaExpression> { first };
        while (Is(JinjaTokenKind.Comma))
        {
            _current++;
            items.Add(primary ? ParsePrimary() : ParseExpression());
        }

        return new TupleLiteral(first.Offset, items);
    }

    private JinjaExpression ParseExpression()
    {
        Enter();
        try
        {
            return ParseIfExpression();
        }
        finally
        {
            _depth--;
        }
    }

    private JinjaExpression ParseIfExpression()
    {
        var a = ParseOr();
        if (IsIdentifier("if"))
        {
            _current++;
            var test = ParseOr();
            if (IsIdentifier("else"))
            {
                _current++;
                var falseExpression = ParseIfExpression();
                return new TernaryExpression(a.Offset, test, a, falseExpression);
            }

            return new SelectExpression(a.Offset, a, test);
        }

        return a;
    }

    private JinjaExpression ParseOr()
    {
        var left = ParseAnd();
        while (IsIdentifier("or"))
        {
            _current++;
            left = new BinaryExpression(left.Offset, "or", left, ParseAnd());
        }

        return left;
    }

    private JinjaExpression ParseAnd()
    {
        var left = ParseNot();
        while (IsIdentifier("and"))
        {
            _current++;
            left = new BinaryExpression(left.Offset, "and", left, ParseNot());
        }

        return left;
    }

    private JinjaExpression ParseNot()
    {
        if (IsIdentifier("not"))
        {
            int offset = _tokens[_current].Offset;
            _current++;
            Enter();
            try
            {
                return new UnaryExpression(offset, "not", ParseNot());
            }
            finally
            {
                _depth--;
            }
        }

        return ParseComparison();
    }

    private JinjaExpression ParseComparison()
    {
        var left = ParseAdditive();
        while (true)
        {
            string op;
            if (IsIdentifiers("not", "in"))
            {
                op = "not in";
                _current += 2;
            }
            else if (IsIdentifier("in"))
            {
                op = "in";
                _current++;
            }
            else if (Is(JinjaTokenKind.ComparisonOperator))
            {
                op = _tokens[_current++].Value;
            }
            else
            {
                break;
            }

            left = new BinaryExpression(left.Offset, op, left, ParseAdditive());
        }

        return left;
    }

    private JinjaExpression ParseAdditive()
    {
        var left = ParseMultiplicative();
        while (Is(JinjaTokenKind.AdditiveOperator))
        {
            var op = _tokens[_current++].Value;
            left = new BinaryExpression(left.Offset, op, left, ParseMultiplicative());
        }

        return left;
    }

    private JinjaExpression ParseMultiplicative()
    {
        var left = ParsePower();
        while (Is(JinjaTokenKind.MultiplicativeOperator))
        {
            var op = _tokens[_current++].Value;
            left = new BinaryExpression(left.Offset, op, left, ParsePower());
        }

        return left;
    }

    private JinjaExpression ParsePower()
    {
        var left = ParseTest();
        while (Is(JinjaTokenKind.PowerOperator))
        {
            _current++;
            left = new BinaryExpression(left.Offset, "**", left, ParseTest());
        }

        return left;
    }

    private JinjaExpression ParseTest()
    {
        var operand = ParseFilter();
        while (IsIdentifier("is"))
        {
            _current++;
            bool negate = IsIdentifier("not");
            if (negate)
            {
                _current++;
            }

            var test = ParsePrimary();
            if (test is not IdentifierExpression testName)
            {
                throw Error("Expected a test name after 'is'", test.Offset);
            }

            // An extension over the reference: a test may take parenthesized arguments (`x is equalto(3)`).
            List<JinjaExpression>? arguments = Is(JinjaTokenKind.OpenParen) ? ParseArguments(parameters: false) : null;
            operand = new TestExpression(operand.Offset, operand, negate, testName.Name, arguments);
        }

        return operand;
    }

    private JinjaExpression ParseFilter()
    {
        var operand = ParseUnarySign();
        while (Is(JinjaTokenKind.Pipe))
        {
            _current++;
            var filter = ParsePrimary();
            if (filter is not IdentifierExpression)
            {
                throw Error("Expected a filter name after '|'", filter.Offset);
            }

            if (Is(JinjaTokenKind.OpenParen))
            {
                filter = ParseCall(filter);
            }

            operand = new FilterExpression(operand.Offset, operand, filter);
        }

        return operand;
    }

    private JinjaExpression ParseUnarySign()
    {
        var token = Peek();
        if (token.Kind is JinjaTokenKind.UnaryOperator or JinjaTokenKind.AdditiveOperator && token.Value is "-" or "+")
        {
            _current++;
            Enter();
            try
            {
                return new UnaryExpression(token.Offset, token.Value, ParseUnarySign());
            }
            finally
            {
                _depth--;
            }
        }

        var member = ParseMember(ParsePrimary());
        return Is(JinjaTokenKind.OpenParen) ? ParseCall(member) : member;
    }

    private JinjaExpression ParseCall(JinjaExpression callee)
    {
        JinjaExpression expression = new CallExpression(callee.Offset, callee, ParseArguments(parameters: false));
        expression = ParseMember(expression);
        return Is(JinjaTokenKind.OpenParen) ? ParseCall(expression) : expression;
    }

    private List<JinjaExpression> ParseArguments(bool parameters)
    {
        var open = Expect(JinjaTokenKind.OpenParen, "'('");
        var arguments = new List<JinjaExpression>();
        var names = new HashSet<string>(StringComparer.Ordinal);
        bool sawKeyword = false;
        bool sawSpread = false;
        while (!Is(JinjaTokenKind.CloseParen))
        {
            if (_current >= _tokens.Count)
            {
                throw Error("'(' is never closed", open.Offset);
            }

            int offset = _tokens[_current].Offset;
            bool keywordSpread = Is(JinjaTokenKind.PowerOperator);
            bool positionalSpread = Is(JinjaTokenKind.MultiplicativeOperator) && _tokens[_current].Value == "*";
            if (parameters && (keywordSpread || positionalSpread))
            {
                throw Error("Argument unpacking is not allowed in parameter declarations", offset);
            }

            if (keywordSpread)
            {
                _current++;
                arguments.Add(new KeywordSpreadExpression(offset, ParseExpression()));
                if (Is(JinjaTokenKind.Comma))
                {
                    _current++;
                }

                if (!Is(JinjaTokenKind.CloseParen))
                {
                    throw ErrorAtCurrent("'**' must be applied to the last argument");
                }

                break;
            }

            JinjaExpression argument;
            if (positionalSpread)
            {
                if (sawSpread)
                {
                    throw Error("Only one '*' argument unpacking is allowed", offset);
                }

                sawSpread = true;
                _current++;
                argument = new SpreadExpression(offset, ParseExpression());
            }
            else
            {
                argument = ParseExpression();
                if (Is(JinjaTokenKind.Equals))
                {
                    _current++;
                    if (argument is not IdentifierExpression key)
                    {
                        throw Error(parameters ? "Expected a name for a parameter" : "Expected a name for a keyword argument", argument.Offset);
                    }

                    argument = new KeywordArgumentExpression(offset, key.Name, ParseExpression());
                }

                if (parameters)
                {
                    string name = argument switch
                    {
                        IdentifierExpression id => id.Name,
                        KeywordArgumentExpression kw => kw.Name,
                        _ => throw Error("Expected a name for a parameter", argument.Offset),
                    };
                    if (!names.Add(name))
                    {
                        throw Error($"Duplicate parameter name '{name}'", argument.Offset);
                    }
                }

                if (argument is KeywordArgumentExpression)
                {
                    sawKeyword = true;
                }
                else if (sawKeyword)
                {
                    throw Error(parameters ? "A parameter without a default follows one with a default" : "Positional arguments must come before keyword arguments", argument.Offset);
                }
                else if (sawSpread)
                {
                    throw Error("Positional arguments must not follow '*' argument unpacking", argument.Offset);
                }
            }

            arguments.Add(argument);
            if (Is(JinjaTokenKind.Comma))
            {
                _current++;
            }
        }

        _current++;
        return arguments;
    }

    private JinjaExpression ParseMember(JinjaExpression target)
    {
        while (Is(JinjaTokenKind.Dot) || Is(JinjaTokenKind.OpenSquareBracket))
        {
            var op = _tokens[_current++];
            if (op.Kind == JinjaTokenKind.OpenSquareBracket)
            {
                var property = ParseSubscript(op.Offset);
                Expect(JinjaTokenKind.CloseSquareBracket, "']'");
                target = new MemberExpression(target.Offset, target, property, Computed: true);
            }
            else
            {
                var property = ParsePrimary();
                if (property is not (IdentifierExpression or IntegerLiteral))
                {
                    throw Error("Expected a name or an integer after '.'", property.Offset);
                }

                target = new MemberExpression(target.Offset, target, property, Computed: false);
            }
        }

        return target;
    }

    private JinjaExpression ParseSubscript(int openOffset)
    {
        var slices = new List<JinjaExpression?>();
        bool isSlice = false;
        while (!Is(JinjaTokenKind.CloseSquareBracket))
        {
            if (_current >= _tokens.Count)
            {
                throw Error("'[' is never closed", openOffset);
            }

            if (Is(JinjaTokenKind.Colon))
            {
                slices.Add(null);
                _current++;
                isSlice = true;
            }
            else
            {
                slices.Add(ParseExpression());
                if (Is(JinjaTokenKind.Colon))
                {
                    _current++;
                    isSlice = true;
                }
            }
        }

        if (slices.Count == 0)
        {
            throw Error("Expected an index or a slice inside '[]'", openOffset);
        }

        if (isSlice)
        {
            if (slices.Count > 3)
            {
                throw Error("A slice takes at most three parts (start:stop:step)", openOffset);
            }

            return new SliceExpression(openOffset, slices[0], slices.Count > 1 ? slices[1] : null, slices.Count > 2 ? slices[2] : null);
        }

        return slices[0]!;
    }

    private JinjaExpression ParsePrimary()
    {
        if (_current >= _tokens.Count)
        {
            throw Error("Unexpected end of template inside an expression", _source.Length);
        }

        var token = _tokens[_current++];
        switch (token.Kind)
        {
            case JinjaTokenKind.NumericLiteral:
                if (token.Value.Contains('.', StringComparison.Ordinal))
                {
                    return new FloatLiteral(token.Offset, double.Parse(token.Value, NumberStyles.Float, CultureInfo.InvariantCulture));
                }

                return long.TryParse(token.Value, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long integer)
                    ? new IntegerLiteral(token.Offset, integer)
                    : throw Error($"The integer {token.Value} is out of range", token.Offset);
            case JinjaTokenKind.StringLiteral:
                {
                    var value = token.Value;
                    while (Is(JinjaTokenKind.StringLiteral))
                    {
                        value += _tokens[_current++].Value;
                    }

                    return new StringLiteral(token.Offset, value);
                }

            case JinjaTokenKind.Identifier:
                return new IdentifierExpression(token.Offset, token.Value);
            case JinjaTokenKind.OpenParen:
                {
                    Enter();
                    try
                    {
                        var expression = ParseExpressionSequence(primary: false);
                        Expect(JinjaTokenKind.CloseParen, "')'");
                        return expression;
                    }
                    finally
                    {
                        _depth--;
                    }
                }

            case JinjaTokenKind.OpenSquareBracket:
                {
                    Enter();
                    try
                    {
                        var items = new List<JinjaExpression>();
                        while (!Is(JinjaTokenKind.CloseSquareBracket))
                        {
                            if (_current >= _tokens.Count)
                            {
                                throw Error("'[' is never closed", token.Offset);
                            }

                            items.Add(ParseExpression());
                            if (Is(JinjaTokenKind.Comma))
                            {
                                _current++;
                            }
                        }

                        _current++;
                        return new ArrayLiteral(token.Offset, items);
                    }
                    finally
                    {
                        _depth--;
                    }
                }

            case JinjaTokenKind.OpenCurlyBracket:
                {
                    Enter();
                    try
                    {
                        var entries = new List<(JinjaExpression, JinjaExpression)>();
                        while (!Is(JinjaTokenKind.CloseCurlyBracket))
                        {
                            if (_current >= _tokens.Count)
                            {
                                throw Error("'{' is never closed", token.Offset);
                            }

                            var key = ParseExpression();
                            Expect(JinjaTokenKind.Colon, "':' between a key and its value");
                            var value = ParseExpression();
                            entries.Add((key, value));
                            if (Is(JinjaTokenKind.Comma))
                            {
                                _current++;
                            }
                        }

                        _current++;
                        return new ObjectLiteral(token.Offset, entries);
                    }
                    finally
                    {
                        _depth--;
                    }
                }

            default:
                throw Error($"Unexpected {Describe(token)}", token.Offset);
        }
    }
}
