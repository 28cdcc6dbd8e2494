using System.Globalization;

namespace Petals.Execution;

/// <summary>
/// How far an executor's outputs may be from an exact computation of the same blocks on the same inputs: the relative
/// L2 error of any one row (<c>‖out − exact‖ / ‖exact‖</c> per sequence and position), and the numeric format that
/// causes it. A server states it in its info so that a client verifying its outputs against another server's (or its
/// own) recomputation knows how much disagreement honest arithmetic explains.
/// </summary>
/// <remarks>
/// An executor states its bound by answering <c>GetService(typeof(NumericErrorBound))</c>; an executor that does not
/// is taken to compute in fp32 (<see cref="Fp32"/>). A quantized executor (int8, 4-bit weights, …) states its own,
/// larger bound and names its format in <see cref="Format"/>.
/// </remarks>
public sealed record NumericErrorBound
{
    /// <summary>Creates a bound.</summary>
    /// <param name="relativeError">The largest relative L2 error of a row, in [0, 1].</param>
    /// <param name="format">The numeric format, e.g. <c>"fp32"</c> or <c>"q8_0"</c>; 1 to 32 characters.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="relativeError"/> is not in [0, 1] (or not a number).</exception>
    /// <exception cref="ArgumentException"><paramref name="format"/> is empty or longer than 32 characters.</exception>
    public NumericErrorBound(double relativeError, string format)
    {
        if (!(relativeError >= 0 && relativeError <= 1))
        {
            throw new ArgumentOutOfRangeException(nameof(relativeError), relativeError, "A relative error bound must be in [0, 1].");
        }

        ArgumentException.ThrowIfNullOrEmpty(format);
        if (format.Length > 32)
        {
            throw new ArgumentException(string.Create(CultureInfo.InvariantCulture, $"The format name has {format.Length} characters; at most 32."), nameof(format));
        }

        RelativeError = relativeError;
        Format = format;
    }

    /// <summary>
    /// The bound of an fp32 executor: 1e-4 relative L2 error per row. Honest fp32 executors that split, batch or cache
    /// differently were measured to differ by about 1e-6 (<c>bench/RESULTS.md</c>, issue 12), so this leaves two orders of
    /// magnitude of margin while a skipped block or an echoed input differs by order 1.
    /// </summary>
    public static NumericErrorBound Fp32 { get; } = new(1e-4, "fp32");

    /// <summary>The largest relative L2 error of a row, in [0, 1].</summary>
    public double RelativeError { get; }

    /// <summary>The numeric format the bound comes from, e.g. <c>"fp32"</c>.</summary>
    public string Format { get; }

    /// <summary>The bound <paramref name="executor"/> states, or <see cref="Fp32"/> when it states none.</summary>
    /// <param name="executor">An executor.</param>
    /// <returns>The bound.</returns>
    public static NumericErrorBound Of(IBlockExecutor executor)
    {
        ArgumentNullException.ThrowIfNull(executor);
        return executor.GetService(typeof(NumericErrorBound)) as NumericErrorBound ?? Fp32;
    }
}
