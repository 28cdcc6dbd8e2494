using System.Runtime.CompilerServices;
using Microsoft.ML;
using Microsoft.ML.Runtime;
using Petals.Generation;

namespace Petals.ML;

/// <summary>
/// The Petals connector of one <see cref="MLContext"/> and the models it connected; returned by
/// <see cref="PetalsMLContextExtensions.UsePetals"/>. Disposing it disposes those models and removes the connector.
/// </summary>
/// <remarks>Thread-safe: each reference is connected once, on first use, and shared by every transformer of the context.</remarks>
public sealed class PetalsRegistration : IDisposable
{
    private static readonly ConditionalWeakTable<ComponentCatalog, PetalsRegistration> Registrations = new();
    private readonly Dictionary<string, Task<CausalLanguageModel>> _models = new(StringComparer.Ordinal);
    private readonly PetalsModelConnector _connector;
    private readonly ComponentCatalog _catalog;
    private bool _disposed;

    internal PetalsRegistration(ComponentCatalog catalog, PetalsModelConnector connector)
    {
        _catalog = catalog;
        _connector = connector;
    }

    internal static void Add(ComponentCatalog catalog, PetalsRegistration registration)
    {
        lock (Registrations)
        {
            if (Registrations.TryGetValue(catalog, out var existing) && !existing._disposed)
            {
                throw new InvalidOperationException("This MLContext already has a Petals connector; dispose its registration before registering another.");
            }

            Registrations.AddOrUpdate(catalog, registration);
        }
    }

    /// <summary>The registration of the context whose component catalog is <paramref name="catalog"/>.</summary>
    /// <exception cref="InvalidOperationException">When none is registered (or it was disposed).</exception>
    internal static PetalsRegistration Find(ComponentCatalog catalog, PetalsModelReference reference)
    {
        lock (Registrations)
        {
            if (Registrations.TryGetValue(catalog, out var registration) && !registration._disposed)
            {
                return registration;
            }
        }

        throw new InvalidOperationException(
            $"No Petals connector is registered with this MLContext, so the model {reference} cannot be reached: call " +
            "mlContext.UsePetals(connector) first (the connector says how to load or connect to a model reference).");
    }

    /// <summary>The connected model of <paramref name="reference"/>, connecting it on first use.</summary>
    /// <exception cref="InvalidOperationException">When connecting fails; the message names the reference and the cause.</exception>
    internal async Task<CausalLanguageModel> GetModelAsync(PetalsModelReference reference, CancellationToken cancellationToken)
    {
        Task<CausalLanguageModel> task;
        lock (_models)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (!_models.TryGetValue(reference.Key, out task!))
            {
                task = ConnectAsync(reference, cancellationToken);
                _models.Add(reference.Key, task);
            }
        }

        try
        {
            return await task.ConfigureAwait(false);
        }
        catch
        {
            lock (_models)
            {
                // A failed connection is not cached: the next use tries again.
                if (_models.TryGetValue(reference.Key, out var current) && current == task)
                {
                    _models.Remove(reference.Key);
                }
            }

            throw;
        }
    }

    private async Task<CausalLanguageModel> ConnectAsync(PetalsModelReference reference, CancellationToken cancellationToken)
    {
        CausalLanguageModel model;
        try
        {
            model = await _connector(reference, cancellationToken).ConfigureAwait(false)
                ?? throw new InvalidOperationException("the connector returned null");
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            throw;
        }
        catch (Exception e)
        {
            throw new InvalidOperationException($"Petals.ML could not reach the model {reference}: {e.Message}", e);
        }

        if (model.Tokenizer is null)
        {
            model.Dispose();
            throw new InvalidOperationException($"The model {reference} has no tokenizer; Petals transforms need one to read text.");
        }

        return model;
    }

    /// <summary>Disposes every model this registration connected and removes the connector from its context.</summary>
    public void Dispose()
    {
        List<Task<CausalLanguageModel>> models;
        lock (_models)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            models = [.. _models.Values];
            _models.Clear();
        }

        lock (Registrations)
        {
            if (Registrations.TryGetValue(_catalog, out var current) && current == this)
            {
                Registrations.Remove(_catalog);
            }
        }

        foreach (var task in models)
        {
            if (task.IsCompletedSuccessfully)
            {
                task.Result.Dispose();
            }
        }
    }
}
