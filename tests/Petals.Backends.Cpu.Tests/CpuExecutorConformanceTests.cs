using Petals.Execution;

namespace Petals.Backends.Cpu.Tests;

/// <summary>The conformance suite on the managed kernels with two threads.</summary>
public sealed class CpuManagedTwoThreadsConformanceTests : BlockExecutorConformanceTests
{
    protected override IBlockExecutorFactory CreateFactory() => ExecutorChecks.Managed(2);
}

/// <summary>The conformance suite on the managed kernels with one thread (no worker pool).</summary>
public sealed class CpuManagedOneThreadConformanceTests : BlockExecutorConformanceTests
{
    protected override IBlockExecutorFactory CreateFactory() => ExecutorChecks.Managed(1);
}

/// <summary>The conformance suite on the managed kernels with three threads (uneven row partitions).</summary>
public sealed class CpuManagedThreeThreadsConformanceTests : BlockExecutorConformanceTests
{
    protected override IBlockExecutorFactory CreateFactory() => ExecutorChecks.Managed(3);
}

/// <summary>The conformance suite with every fp32 product on the native BLAS; skipped with the reason when no BLAS loads.</summary>
public sealed class CpuNativeBlasConformanceTests : BlockExecutorConformanceTests
{
    protected override IBlockExecutorFactory CreateFactory() => NativeBlasTests.BlasOrSkip();
}

/// <summary>The conformance suite with the default options (native BLAS in Auto mode).</summary>
public sealed class CpuDefaultOptionsConformanceTests : BlockExecutorConformanceTests
{
    protected override IBlockExecutorFactory CreateFactory() => new CpuBlockExecutorFactory(new CpuExecutorOptions { ThreadCount = 2 });
}
