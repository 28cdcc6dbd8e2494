using Microsoft.Extensions.Options;

namespace Petals.Extensions.AI;

/// <summary>Validates every named <see cref="PetalsChatClientOptions"/> of the DI registrations (at host start and on resolution).</summary>
internal sealed class PetalsChatClientOptionsValidator : IValidateOptions<PetalsChatClientOptions>
{
    public ValidateOptionsResult Validate(string? name, PetalsChatClientOptions options) =>
        PetalsAIOptionsValidation.Check(options) is { Count: > 0 } failures ? ValidateOptionsResult.Fail(failures) : ValidateOptionsResult.Success;
}

/// <summary>Validates every named <see cref="PetalsEmbeddingGeneratorOptions"/> of the DI registrations (at host start and on resolution).</summary>
internal sealed class PetalsEmbeddingGeneratorOptionsValidator : IValidateOptions<PetalsEmbeddingGeneratorOptions>
{
    public ValidateOptionsResult Validate(string? name, PetalsEmbeddingGeneratorOptions options) =>
        PetalsAIOptionsValidation.Check(options) is { Count: > 0 } failures ? ValidateOptionsResult.Fail(failures) : ValidateOptionsResult.Success;
}
