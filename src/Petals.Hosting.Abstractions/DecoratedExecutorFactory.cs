using Petals.Execution;
using Petals.Models;

namespace Petals.Hosting;

/// <summary>An executor factory whose executors are wrapped in the server's executor decorators, first registered outermost.</summary>
internal sealed class DecoratedExecutorFactory(IBlockExecutorFactory inner, PetalsDecorator<IBlockExecutor>[] decorators, IServiceProvider services) : IBlockExecutorFactory
{
    public string Name => inner.Name;

    public IBlockExecutor Create(IModelWeights weights, BlockRange blocks)
    {
        var executor = inner.Create(weights, blocks);
        try
        {
            return PetalsPipeline.Wrap(executor, decorators, services);
        }
        catch
        {
            executor.Dispose();
            throw;
        }
    }
}
