using Microsoft.ML;

namespace Petals.ML;

/// <summary>Registers Petals with an <see cref="MLContext"/>.</summary>
public static class PetalsMLContextExtensions
{
    /// <summary>
    /// Gives <paramref name="mlContext"/> the connector that turns model references into models, and teaches its component
    /// catalog to load the Petals transforms of saved ML.NET models (<c>mlContext.Model.Load</c>). Call it once per
    /// context, before fitting a Petals estimator or loading a model file that holds Petals transforms.
    /// </summary>
    /// <param name="mlContext">The context.</param>
    /// <param name="connector">Loads or connects a <see cref="PetalsModelReference"/>.</param>
    /// <returns>The registration; disposing it disposes the models it connected.</returns>
    /// <exception cref="InvalidOperationException">When the context already has a live registration.</exception>
    public static PetalsRegistration UsePetals(this MLContext mlContext, PetalsModelConnector connector)
    {
        ArgumentNullException.ThrowIfNull(mlContext);
        ArgumentNullException.ThrowIfNull(connector);
        MLNetInternals.RegisterLoaders(mlContext.ComponentCatalog);
        var registration = new PetalsRegistration(mlContext.ComponentCatalog, connector);
        PetalsRegistration.Add(mlContext.ComponentCatalog, registration);
        return registration;
    }
}
