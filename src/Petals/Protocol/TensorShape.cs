using System.Globalization;
using System.Text;

namespace Petals.Protocol;

/// <summary>The shape of a tensor on the wire: rank 1 to 4, every dimension at least 1. Stored inline (no allocation).</summary>
/// <remarks>Immutable and thread-safe.</remarks>
public readonly struct TensorShape : IEquatable<TensorShape>
{
    /// <summary>The largest rank the protocol carries.</summary>
    public const int MaxRank = 4;

    private readonly int _d0;
    private readonly int _d1;
    private readonly int _d2;
    private readonly int _d3;

    /// <summary>Creates a shape from its dimensions.</summary>
    /// <param name="dimensions">1 to 4 dimensions, each at least 1.</param>
    /// <exception cref="ArgumentException">When the rank is outside 1..4, a dimension is below 1, or the element count exceeds <see cref="int.MaxValue"/>.</exception>
    public TensorShape(params ReadOnlySpan<int> dimensions)
    {
        if (dimensions.Length is < 1 or > MaxRank)
        {
            throw new ArgumentException($"A wire tensor has rank 1 to {MaxRank}, not {dimensions.Length}.", nameof(dimensions));
        }

        long count = 1;
        for (var i = 0; i < dimensions.Length; i++)
        {
            if (dimensions[i] < 1)
            {
                throw new ArgumentException($"Dimension {i} is {dimensions[i]}; every dimension must be at least 1.", nameof(dimensions));
            }

            count *= dimensions[i];
            if (count > int.MaxValue)
            {
                throw new ArgumentException("The element count exceeds int.MaxValue.", nameof(dimensions));
            }
        }

        Rank = dimensions.Length;
        _d0 = dimensions[0];
        _d1 = Rank > 1 ? dimensions[1] : 1;
        _d2 = Rank > 2 ? dimensions[2] : 1;
        _d3 = Rank > 3 ? dimensions[3] : 1;
        ElementCount = (int)count;
    }

    /// <summary>The number of dimensions (0 for a default instance).</summary>
    public int Rank { get; }

    /// <summary>The number of elements (the product of the dimensions).</summary>
    public int ElementCount { get; }

    /// <summary>The dimension at <paramref name="index"/>.</summary>
    /// <param name="index">0 to <see cref="Rank"/> - 1.</param>
    /// <exception cref="ArgumentOutOfRangeException">When <paramref name="index"/> is outside the rank.</exception>
    public int this[int index]
    {
        get
        {
            ArgumentOutOfRangeException.ThrowIfNegative(index);
            ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(index, Rank);
            return index switch
            {
                0 => _d0,
                1 => _d1,
                2 => _d2,
                _ => _d3,
            };
        }
    }

    /// <summary>Whether two shapes are equal.</summary>
    /// <param name="left">The first shape.</param>
    /// <param name="right">The second shape.</param>
    /// <returns><see langword="true"/> when rank and dimensions are equal.</returns>
    public static bool operator ==(TensorShape left, TensorShape right) => left.Equals(right);

    /// <summary>Whether two shapes differ.</summary>
    /// <param name="left">The first shape.</param>
    /// <param name="right">The second shape.</param>
    /// <returns><see langword="true"/> when rank or a dimension differs.</returns>
    public static bool operator !=(TensorShape left, TensorShape right) => !left.Equals(right);

    /// <inheritdoc />
    public bool Equals(TensorShape other) =>
        Rank == other.Rank && _d0 == other._d0 && _d1 == other._d1 && _d2 == other._d2 && _d3 == other._d3;

    /// <inheritdoc />
    public override bool Equals(object? obj) => obj is TensorShape other && Equals(other);

    /// <inheritdoc />
    public override int GetHashCode() => HashCode.Combine(Rank, _d0, _d1, _d2, _d3);

    /// <inheritdoc />
    public override string ToString()
    {
        var text = new StringBuilder("[");
        for (var i = 0; i < Rank; i++)
        {
            text.Append(i == 0 ? string.Empty : ", ").Append(this[i].ToString(CultureInfo.InvariantCulture));
        }

        return text.Append(']').ToString();
    }
}
