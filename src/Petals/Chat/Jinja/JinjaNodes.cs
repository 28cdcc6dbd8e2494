namespace Petals.Chat.Jinja;

// The syntax tree of the Jinja subset. Offset: the node's start in the original template source (for error positions).
// Several small internal node types live together on purpose.

internal abstract record JinjaNode(int Offset);

internal abstract record JinjaExpression(int Offset) : JinjaNode(Offset);

internal sealed record TextNode(int Offset, string Text) : JinjaNode(Offset);

internal sealed record CommentNode(int Offset) : JinjaNode(Offset);

internal sealed record IfNode(int Offset, JinjaExpression Test, List<JinjaNode> Body, List<JinjaNode> Alternate) : JinjaNode(Offset);

internal sealed record ForNode(int Offset, JinjaExpression LoopVariable, JinjaExpression Iterable, List<JinjaNode> Body, List<JinjaNode> Else) : JinjaNode(Offset);

internal sealed record SetNode(int Offset, JinjaExpression Assignee, JinjaExpression? Value, List<JinjaNode> Body) : JinjaNode(Offset);

internal sealed record MacroNode(int Offset, string Name, List<JinjaExpression> Parameters, List<JinjaNode> Body) : JinjaNode(Offset);

internal sealed record CallBlockNode(int Offset, CallExpression Call, List<JinjaExpression> CallerParameters, List<JinjaNode> Body) : JinjaNode(Offset);

internal sealed record FilterBlockNode(int Offset, JinjaExpression Filter, List<JinjaNode> Body) : JinjaNode(Offset);

internal sealed record BreakNode(int Offset) : JinjaNode(Offset);

internal sealed record ContinueNode(int Offset) : JinjaNode(Offset);

internal sealed record IdentifierExpression(int Offset, string Name) : JinjaExpression(Offset);

internal sealed record IntegerLiteral(int Offset, long Value) : JinjaExpression(Offset);

internal sealed record FloatLiteral(int Offset, double Value) : JinjaExpression(Offset);

internal sealed record StringLiteral(int Offset, string Value) : JinjaExpression(Offset);

internal sealed record ArrayLiteral(int Offset, List<JinjaExpression> Items) : JinjaExpression(Offset);

internal sealed record TupleLiteral(int Offset, List<JinjaExpression> Items) : JinjaExpression(Offset);

internal sealed record ObjectLiteral(int Offset, List<(JinjaExpression Key, JinjaExpression Value)> Entries) : JinjaExpression(Offset);

internal sealed record MemberExpression(int Offset, JinjaExpression Object, JinjaExpression Property, bool Computed) : JinjaExpression(Offset);

internal sealed record SliceExpression(int Offset, JinjaExpression? Start, JinjaExpression? Stop, JinjaExpression? Step) : JinjaExpression(Offset);

internal sealed record CallExpression(int Offset, JinjaExpression Callee, List<JinjaExpression> Arguments) : JinjaExpression(Offset);

internal sealed record BinaryExpression(int Offset, string Operator, JinjaExpression Left, JinjaExpression Right) : JinjaExpression(Offset);

internal sealed record UnaryExpression(int Offset, string Operator, JinjaExpression Argument) : JinjaExpression(Offset);

internal sealed record FilterExpression(int Offset, JinjaExpression Operand, JinjaExpression Filter) : JinjaExpression(Offset);

internal sealed record TestExpression(int Offset, JinjaExpression Operand, bool Negate, string Test, List<JinjaExpression>? Arguments) : JinjaExpression(Offset);

internal sealed record SelectExpression(int Offset, JinjaExpression Value, JinjaExpression Test) : JinjaExpression(Offset);

internal sealed record TernaryExpression(int Offset, JinjaExpression Condition, JinjaExpression WhenTrue, JinjaExpression WhenFalse) : JinjaExpression(Offset);

internal sealed record KeywordArgumentExpression(int Offset, string Name, JinjaExpression Value) : JinjaExpression(Offset);

internal sealed record SpreadExpression(int Offset, JinjaExpression Argument) : JinjaExpression(Offset);

internal sealed record KeywordSpreadExpression(int Offset, JinjaExpression Argument) : JinjaExpression(Offset);
