using System.Diagnostics;
using System.Globalization;
using Petals.Client;
using Petals.Formats;
using Petals.Generation;
using Petals.Inference;
using Petals.Models;
using Petals.Protocol;
using Petals.Transport;
using Petals.Transport.Tcp;

namespace Petals.Benchmarks.Soak;

/// <summary>What the normal client saw since the last sample: generations that succeeded and failed, latencies, the last error.</summary>
internal sealed record ProbeWindow(int Ok, int Failed, double? MedianMs, string? LastError)
{
    public override string ToString() => Ok + Failed == 0
        ? "no generation finished"
        : string.Create(CultureInfo.InvariantCulture, $"ok {Ok} failed {Failed}{(MedianMs is { } m ? $" median {m:0} ms" : string.Empty)}{(LastError is { } e && Failed > 0 ? $" ({e})" : string.Empty)}");
}

/// <summary>
/// A well-behaved client: in a loop, connects to the server, generates 8 tokens greedily from a 4-token prompt (a new
/// session each time), and records ok/failed and the latency (connect included), bounded by a timeout.
/// </summary>
internal sealed class NormalClient(PeerAddress server, IModelWeights weights, ModelConfig config, string modelId, TimeSpan timeout)
{
    private readonly Lock _lock = new();
    private readonly List<double> _latencies = [];
    private int _ok;
    private int _failed;
    private int _totalOk;
    private int _totalFailed;
    private string? _lastError;

    public string Total
    {
        get
        {
            lock (_lock)
            {
                return string.Create(CultureInfo.InvariantCulture, $"{_totalOk} ok, {_totalFailed} failed");
            }
        }
    }

    public ProbeWindow TakeWindow()
    {
        lock (_lock)
        {
            double? median = null;
            if (_latencies.Count > 0)
            {
                _latencies.Sort();
                median = _latencies[_latencies.Count / 2];
            }

            var window = new ProbeWindow(_ok, _failed, median, _lastError);
            _ok = _failed = 0;
            _latencies.Clear();
            return window;
        }
    }

    public async Task RunAsync(CancellationToken stop)
    {
        var head = LanguageModelHead.Load(weights);
        var options = new GenerationOptions { MaxNewTokens = 8, StopTokenIds = [] };
        int[] prompt = [1, 403, 407, 261];
        var transport = new TcpTransport();
        while (!stop.IsCancellationRequested)
        {
            var timer = Stopwatch.StartNew();
            string? error = null;
            using (var bounded = CancellationTokenSource.CreateLinkedTokenSource(stop))
            {
                bounded.CancelAfter(timeout);
                try
                {
                    await using var remote = await RemoteTransformerBlocks.ConnectAsync(transport, [server], config, modelId, new RemoteSequenceOptions(), bounded.Token).ConfigureAwait(false);
                    using var model = new CausalLanguageModel(head, remote, tokenizer: null);
                    var count = 0;
                    await foreach (var _ in model.GenerateAsync(prompt, options, bounded.Token).ConfigureAwait(false))
                    {
                        count++;
                    }

                    if (count != options.MaxNewTokens)
                    {
                        error = $"{count} tokens";
                    }
                }
                catch (OperationCanceledException) when (stop.IsCancellationRequested)
                {
                    return;
                }
                catch (OperationCanceledException)
                {
                    error = $"timed out after {timeout.TotalSeconds:0} s";
                }
                catch (ProtocolException e)
                {
                    error = e.Code.Value;
                }
#pragma warning disable CA1031 // Any failure is an outcome to report.
                catch (Exception e)
#pragma warning restore CA1031
                {
                    error = e.GetType().Name + ": " + (e.Message.Length > 80 ? e.Message[..80] : e.Message);
                }
            }

            lock (_lock)
            {
                if (error is null)
                {
                    _ok++;
                    _totalOk++;
                    _latencies.Add(timer.Elapsed.TotalMilliseconds);
                }
                else
                {
                    _failed++;
                    _totalFailed++;
                    _lastError = error;
                }
            }

            await Task.Delay(TimeSpan.FromMilliseconds(500), stop).ContinueWith(static _ => { }, TaskScheduler.Default).ConfigureAwait(false);
        }
    }
}
