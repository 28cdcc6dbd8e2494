using Petals.Execution;
using Petals.Tensors;

namespace Petals.Tests.Client;

/// <summary>
/// An executor decorator that reports <paramref name="quantization"/> as its <see cref="ExecutorWeightsInfo"/> (as a
/// quantizing executor does), so that servers of one random model can announce different quantizations.
/// </summary>
internal sealed class WeightsInfoExecutor(IBlockExecutor inner, string quantization) : DelegatingBlockExecutor(inner)
{
    public override object? GetService(Type serviceType, object? serviceKey = null) =>
        serviceKey is null && serviceType == typeof(ExecutorWeightsInfo)
            ? new ExecutorWeightsInfo(quantization, new Dictionary<TensorDType, long> { [TensorDType.F32] = 1024 })
            : base.GetService(serviceType, serviceKey);
}
