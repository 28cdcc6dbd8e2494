namespace Petals.Chat;

/// <summary>One message of a conversation as a chat template sees it (<c>message.role</c>, <c>message.content</c>).</summary>
/// <param name="Role">The role: <c>system</c>, <c>user</c>, <c>assistant</c> (templates may accept others, e.g. <c>tool</c>).</param>
/// <param name="Content">The text of the message.</param>
public sealed record ChatTemplateMessage(string Role, string Content);
