using Petals.Generation;

namespace Petals.ML;

/// <summary>
/// Turns a <see cref="PetalsModelReference"/> into a connected model: the application's choice of executor, transport and
/// discovery (Petals.ML references only the core). Registered once per <see cref="Microsoft.ML.MLContext"/> with
/// <see cref="PetalsMLContextExtensions.UsePetals"/>.
/// </summary>
/// <param name="reference">The model to reach.</param>
/// <param name="cancellationToken">Cancels connecting.</param>
/// <returns>The model; the registration that called the connector owns it and disposes it with itself.</returns>
public delegate ValueTask<CausalLanguageModel> PetalsModelConnector(PetalsModelReference reference, CancellationToken cancellationToken);
