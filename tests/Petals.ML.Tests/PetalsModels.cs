using Petals.Backends.Cpu;
using Petals.Client;
using Petals.Generation;
using Petals.Inference;
using Petals.Models;
using Petals.Testing;
using Petals.Transport;

namespace Petals.ML.Tests;

/// <summary>The connectors the tests register: local blocks with the managed CPU executor, or fixed peers over a given transport.</summary>
internal static class PetalsModels
{
    public static string ModelPath => TestData.Stories260KGguf;

    public static PetalsModelReference LocalReference => PetalsModelReference.Local(ModelPath);

    public static CausalLanguageModel LoadLocal() =>
        CausalLanguageModel.LoadLocal(ModelPath, new CpuBlockExecutorFactory(new CpuExecutorOptions { ThreadCount = 1 }));

    /// <summary>Local models for Local references, <see cref="RemoteModel"/> over <paramref name="transport"/> for fixed peers.</summary>
    public static PetalsModelConnector Connector(ITransport? transport = null) => async (reference, ct) => reference.Location switch
    {
        PetalsModelLocation.Local => LoadLocal(),
        PetalsModelLocation.FixedPeers => await RemoteModel.ConnectAsync(
            reference.ModelPath,
            transport ?? throw new InvalidOperationException("no transport for fixed peers"),
            [.. reference.Peers.Select(PeerAddress.Parse)],
            cancellationToken: ct),
        _ => throw new NotSupportedException($"{reference.Location} is not used by these tests."),
    };

    public static void RequireSharedModel() => Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
}

/// <summary>Real blocks that count the sessions opened on them and the most open at once (to see batches and bounds).</summary>
internal sealed class CountingBlocks(ITransformerBlocks inner) : ITransformerBlocks
{
    private int _open;
    private int _opened;
    private int _maxOpen;

    public ModelConfig Config => inner.Config;

    public int Opened => Volatile.Read(ref _opened);

    public int MaxOpen => Volatile.Read(ref _maxOpen);

    public async ValueTask<ITransformerSession> OpenSessionAsync(int batchSize, int maxLength, CancellationToken cancellationToken = default)
    {
        var session = await inner.OpenSessionAsync(batchSize, maxLength, cancellationToken);
        Interlocked.Increment(ref _opened);
        var open = Interlocked.Increment(ref _open);
        int max;
        while (open > (max = Volatile.Read(ref _maxOpen)) && Interlocked.CompareExchange(ref _maxOpen, open, max) != max)
        {
        }

        return new Session(session, this);
    }

    public static CausalLanguageModel Wrap(CausalLanguageModel model, out CountingBlocks blocks)
    {
        blocks = new CountingBlocks(model.Blocks);
        return new CausalLanguageModel(model.Head, blocks, model.Tokenizer, model);
    }

    private sealed class Session(ITransformerSession inner, CountingBlocks owner) : ITransformerSession
    {
        public int BatchSize => inner.BatchSize;

        public int MaxLength => inner.MaxLength;

        public int Position => inner.Position;

        public async ValueTask ForwardAsync(Memory<float> hidden, int tokenCount, CancellationToken cancellationToken = default)
        {
            // Give other rows of the batch the chance to overlap with this one, as remote calls would.
            await Task.Yield();
            await inner.ForwardAsync(hidden, tokenCount, cancellationToken);
        }

        public async ValueTask DisposeAsync()
        {
            Interlocked.Decrement(ref owner._open);
            await inner.DisposeAsync();
        }
    }
}
