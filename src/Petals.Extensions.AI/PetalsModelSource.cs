using Petals.Generation;

namespace Petals.Extensions.AI;

/// <summary>
/// Where a chat client or embedding generator gets its model: one given by the caller (not owned), or one connected on first
/// use by a factory (owned, disposed with the client, unless the factory hands out a model owned elsewhere). Thread-safe; a
/// failed connection is retried on the next call.
/// </summary>
internal sealed class PetalsModelSource : IAsyncDisposable
{
    private readonly Func<CancellationToken, Task<CausalLanguageModel>>? _connect;
    private readonly SemaphoreSlim _gate = new(1, 1);
    private readonly bool _ownsConnected = true;
    private CausalLanguageModel? _model;
    private bool _disposed;

    /// <summary>A model the caller owns.</summary>
    public PetalsModelSource(CausalLanguageModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        _model = model;
    }

    /// <summary>A model connected on first use and owned by this source.</summary>
    public PetalsModelSource(Func<CancellationToken, Task<CausalLanguageModel>> connect)
    {
        ArgumentNullException.ThrowIfNull(connect);
        _connect = connect;
    }

    /// <summary>A model got on first use from <paramref name="connect"/>, disposed by this source only when <paramref name="ownsModel"/>.</summary>
    public PetalsModelSource(Func<CancellationToken, Task<CausalLanguageModel>> connect, bool ownsModel)
        : this(connect)
    {
        _ownsConnected = ownsModel;
    }

    /// <summary>The model when it is already there (given, or connected by an earlier call); otherwise null.</summary>
    public CausalLanguageModel? Current => Volatile.Read(ref _model);

    /// <summary>The model, connecting it first if needed.</summary>
    /// <exception cref="ObjectDisposedException">After <see cref="DisposeAsync"/>.</exception>
    public async ValueTask<CausalLanguageModel> GetAsync(CancellationToken cancellationToken)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (Volatile.Read(ref _model) is { } model)
        {
            return model;
        }

        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_model is null)
            {
                var connected = await _connect!(cancellationToken).ConfigureAwait(false);
                Volatile.Write(ref _model, connected);
            }

            return _model!;
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>Disposes a model this source connected; a given model is left to its owner.</summary>
    public async ValueTask DisposeAsync()
    {
        await _gate.WaitAsync().ConfigureAwait(false);
        try
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            if (_connect is not null && _ownsConnected)
            {
                _model?.Dispose();
            }

            _model = null;
        }
        finally
        {
            _gate.Release();
        }
    }
}
