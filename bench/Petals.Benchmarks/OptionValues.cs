using System.Globalization;

namespace Petals.Benchmarks;

/// <summary>The benchmarks' option values: parsed invariantly, refused with the option's name and the text given.</summary>
internal static class OptionValues
{
    /// <summary>An integer of at least <paramref name="min"/>.</summary>
    /// <exception cref="ArgumentException">It is not: "NAME must be an integer of at least MIN, not 'TEXT'."</exception>
    public static int Int(string name, string text, int min) =>
        int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out var value) && value >= min
            ? value
            : throw new ArgumentException($"{name} must be an integer of at least {min}, not '{text}'.");

    /// <summary>A finite number of at least 0 (<paramref name="unit"/>, when given, names what it counts, e.g. <c>milliseconds</c>).</summary>
    /// <exception cref="ArgumentException">It is not: "NAME must be a number of at least 0 [UNIT], not 'TEXT'."</exception>
    public static double NonNegative(string name, string text, string? unit = null) =>
        double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var value) && value >= 0 && double.IsFinite(value)
            ? value
            : throw new ArgumentException($"{name} must be a number of at least 0{(unit is null ? string.Empty : " " + unit)}, not '{text}'.");

    /// <summary>A finite number above 0.</summary>
    /// <exception cref="ArgumentException">It is not: "NAME must be a positive number, not 'TEXT'."</exception>
    public static double Positive(string name, string text) =>
        double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var value) && double.IsFinite(value) && value > 0
            ? value
            : throw new ArgumentException($"{name} must be a positive number, not '{text}'.");
}
