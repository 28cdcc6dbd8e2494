namespace Petals.Backends.Cpu.Threading;

/// <summary>A unit of work split into parts; each part runs on one thread of a <see cref="WorkerPool"/>.</summary>
internal interface IParallelWork
{
    /// <summary>Runs part <paramref name="part"/> of <paramref name="parts"/>.</summary>
    void Execute(int part, int parts);
}
