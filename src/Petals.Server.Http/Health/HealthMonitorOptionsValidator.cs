using Microsoft.Extensions.Options;

namespace Petals.Server.Http.Health;

/// <summary>Checks <see cref="HealthMonitorOptions"/> at start.</summary>
internal sealed class HealthMonitorOptionsValidator : IValidateOptions<HealthMonitorOptions>
{
    public static readonly TimeSpan MinRefresh = TimeSpan.FromMilliseconds(100);
    public static readonly TimeSpan MaxRefresh = TimeSpan.FromHours(1);

    public ValidateOptionsResult Validate(string? name, HealthMonitorOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var failures = new List<string>();
        if (options.RefreshInterval < MinRefresh || options.RefreshInterval > MaxRefresh)
        {
            failures.Add($"HealthMonitorOptions.RefreshInterval must be 0.1 s to 1 h; it is {options.RefreshInterval}.");
        }

        if (options.ReadTimeout <= TimeSpan.Zero)
        {
            failures.Add($"HealthMonitorOptions.ReadTimeout must be positive; it is {options.ReadTimeout}.");
        }

        if (options.Title is null)
        {
            failures.Add("HealthMonitorOptions.Title must not be null.");
        }

        return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
    }
}
