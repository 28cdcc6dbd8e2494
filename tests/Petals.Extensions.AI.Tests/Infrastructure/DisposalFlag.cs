namespace Petals.Extensions.AI.Tests.Infrastructure;

/// <summary>Records that the model owning it was disposed.</summary>
internal sealed class DisposalFlag : IDisposable
{
    public bool Disposed { get; private set; }

    public void Dispose() => Disposed = true;
}
