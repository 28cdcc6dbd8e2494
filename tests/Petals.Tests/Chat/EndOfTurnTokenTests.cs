using Petals.Chat;
using Petals.Testing;
using Petals.Tokenization;

namespace Petals.Tests.Chat;

/// <summary>The end-of-turn tokens a chat reply stops at: the special tokens a template writes after each turn.</summary>
public sealed class EndOfTurnTokenTests
{
    [Fact]
    public void ALlama3TemplateEndsTurnsWithEotIdWhichIsNotItsEos()
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        var tokenizer = TokenizerLoader.Load(TestData.Llama3TokenizerDir);
        var template = ChatTemplate.Parse(
            "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m.role }}<|end_header_id|>\n\n{{ m.content | trim }}<|eot_id|>{% endfor %}" +
            "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}");

        var ids = template.GetEndOfTurnTokenIds(tokenizer);

        var eot = Assert.Single(ids);
        Assert.Equal(eot, tokenizer.TokenToId("<|eot_id|>"));
        Assert.True(tokenizer.IsSpecial(eot));
        Assert.NotEqual(tokenizer.EosTokenId, eot);
    }

    [Fact]
    public void MarkersTheVocabularyLacksAndThePlainFormatGiveNone()
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        var llama3 = TokenizerLoader.Load(TestData.Llama3TokenizerDir);
        var chatMl = ChatTemplate.Parse("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}");
        Assert.Empty(chatMl.GetEndOfTurnTokenIds(llama3));
        Assert.Empty(ChatTemplate.Plain.GetEndOfTurnTokenIds(llama3));

        var mistral = TokenizerLoader.Load(TestData.MistralTokenizerDir);
        var inst = ChatTemplate.Parse("{% for m in messages %}[INST] {{ m.content }} [/INST]{{ eos_token }}{% endfor %}");
        Assert.Empty(inst.GetEndOfTurnTokenIds(mistral));
        Assert.Throws<ArgumentNullException>(() => chatMl.GetEndOfTurnTokenIds(null!));
    }
}
