using System.Globalization;
using System.Net;

namespace Petals.Benchmarks.Soak;

/// <summary>The settings of a soak run (<c>Petals.Benchmarks soak</c>); see the usage text in Program.cs.</summary>
internal sealed class SoakOptions
{
    public static readonly string[] AllPhases = ["baseline", "idle", "slowloris", "partial", "hog", "nan", "dht-flood"];

    public string Model { get; private set; } = "../shared/models/stories260K/stories260K-f32.gguf";

    public IReadOnlyList<string> Phases { get; private set; } = AllPhases;

    public TimeSpan PhaseDuration { get; private set; } = TimeSpan.FromSeconds(20);

    public TimeSpan ReportEvery { get; private set; } = TimeSpan.FromSeconds(3);

    public int IdleConnections { get; private set; } = 2000;

    public int Slowloris { get; private set; } = 100;

    public int Partial { get; private set; } = 16;

    public int HogSessions { get; private set; } = 8;

    public TimeSpan HogStep { get; private set; } = TimeSpan.FromSeconds(5);

    public int NanPerSecond { get; private set; } = 20;

    public int DhtRecords { get; private set; } = 20000;

    public int DhtIdentities { get; private set; } = 4;

    /// <summary>The source address of the idle, slowloris and partial-message clients (not the normal client's 127.0.0.1, so per-address limits are on the attacker).</summary>
    public IPAddress AttackerAddress { get; private set; } = IPAddress.Parse("127.0.0.4");

    public IPAddress HogAddress { get; private set; } = IPAddress.Parse("127.0.0.2");

    public IPAddress NanAddress { get; private set; } = IPAddress.Parse("127.0.0.3");

    public TimeSpan ProbeTimeout { get; private set; } = TimeSpan.FromSeconds(15);

    public TimeSpan StartupTimeout { get; private set; } = TimeSpan.FromSeconds(120);

    public List<string> ServeArgs { get; } = [];

    public List<string> DhtArgs { get; } = [];

    public string? Results { get; private set; }

    public string Label { get; private set; } = "soak";

    public static SoakOptions Parse(ReadOnlySpan<string> args)
    {
        var o = new SoakOptions();
        for (var i = 0; i < args.Length; i++)
        {
            string Value(ReadOnlySpan<string> a) => i + 1 < a.Length ? a[++i] : throw new ArgumentException($"{a[i]} needs a value.");
            int Int(ReadOnlySpan<string> a) => int.Parse(Value(a), CultureInfo.InvariantCulture);
            TimeSpan Seconds(ReadOnlySpan<string> a) => TimeSpan.FromSeconds(double.Parse(Value(a), CultureInfo.InvariantCulture));
            switch (args[i])
            {
                case "--model": o.Model = Value(args); break;
                case "--phases":
                    var phases = Value(args).Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
                    foreach (var p in phases)
                    {
                        if (!AllPhases.Contains(p))
                        {
                            throw new ArgumentException($"--phases: unknown phase '{p}'; the phases are {string.Join(",", AllPhases)}.");
                        }
                    }

                    o.Phases = phases;
                    break;
                case "--phase-seconds": o.PhaseDuration = Seconds(args); break;
                case "--report-every": o.ReportEvery = Seconds(args); break;
                case "--idle-connections": o.IdleConnections = Int(args); break;
                case "--slowloris": o.Slowloris = Int(args); break;
                case "--partial": o.Partial = Int(args); break;
                case "--hog-sessions": o.HogSessions = Int(args); break;
                case "--hog-step": o.HogStep = Seconds(args); break;
                case "--nan-per-second": o.NanPerSecond = Int(args); break;
                case "--dht-records": o.DhtRecords = Int(args); break;
                case "--dht-identities": o.DhtIdentities = Int(args); break;
                case "--attacker-address": o.AttackerAddress = IPAddress.Parse(Value(args)); break;
                case "--hog-address": o.HogAddress = IPAddress.Parse(Value(args)); break;
                case "--nan-address": o.NanAddress = IPAddress.Parse(Value(args)); break;
                case "--probe-timeout": o.ProbeTimeout = Seconds(args); break;
                case "--startup-timeout": o.StartupTimeout = Seconds(args); break;
                case "--serve-arg": o.ServeArgs.Add(Value(args)); break;
                case "--dht-arg": o.DhtArgs.Add(Value(args)); break;
                case "--results": o.Results = Value(args); break;
                case "--label": o.Label = Value(args); break;
                default: throw new ArgumentException($"soak: unknown option '{args[i]}'.");
            }
        }

        if (o.PhaseDuration <= TimeSpan.Zero || o.ReportEvery <= TimeSpan.Zero || o.HogStep <= TimeSpan.Zero || o.NanPerSecond < 1 || o.DhtIdentities < 1)
        {
            throw new ArgumentException("soak: --phase-seconds, --report-every, --hog-step, --nan-per-second and --dht-identities must be positive.");
        }

        return o;
    }
}
