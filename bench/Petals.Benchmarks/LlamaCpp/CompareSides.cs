using System.Diagnostics;
using Petals.Backends.Cpu;
using Petals.Execution;
using Petals.Formats.Gguf;
using Petals.Models;

namespace Petals.Benchmarks.LlamaCpp;

/// <summary>One side of the comparison: a long cache filled once (for the largest position) and a short one refilled per case.</summary>
internal interface ICompareSide : IDisposable
{
    string Name { get; }

    /// <summary>Fills the long cache to <paramref name="length"/> positions (untimed by the caller's rounds; returns ms).</summary>
    double FillLong(int length);

    /// <summary>Empties the short cache and fills it to <paramref name="length"/> positions (not timed).</summary>
    void PrepareShort(int length);

    /// <summary>Resets the chosen cache to <paramref name="position"/> positions and times one single-token step there (ms).</summary>
    double DecodeStep(int position, bool longCache);

    /// <summary>Empties the short cache and times a prefill of <paramref name="tokens"/> tokens from position 0 (ms).</summary>
    double Prefill(int tokens);
}

/// <summary>llama.cpp through its C API: two contexts on one memory-mapped model, sequence 0, tokens drawn from the tiny vocabulary.</summary>
internal sealed class LlamaSide : ICompareSide
{
    private readonly nint _model;
    private readonly nint _long;
    private readonly nint _short;
    private readonly int[] _tokens;

    public LlamaSide(string path, int context, int threads, ulong seed)
    {
        _model = LlamaNative.LoadModel(path);
        try
        {
            _long = LlamaNative.CreateContext(_model, context, 512, threads);
            _short = LlamaNative.CreateContext(_model, context, 512, threads);
        }
        catch
        {
            Dispose();
            throw;
        }

        var rng = new Random((int)seed);
        _tokens = new int[context];
        for (var i = 0; i < _tokens.Length; i++)
        {
            _tokens[i] = 3 + rng.Next(CompareModels.VocabSize - 3); // the byte tokens
        }
    }

    public string Name => "llama.cpp";

    public double FillLong(int length)
    {
        var start = Stopwatch.GetTimestamp();
        LlamaNative.Clear(_long);
        Fill(_long, 0, length);
        return Stopwatch.GetElapsedTime(start).TotalMilliseconds;
    }

    public void PrepareShort(int length)
    {
        LlamaNative.Clear(_short);
        Fill(_short, 0, length);
    }

    public double DecodeStep(int position, bool longCache)
    {
        var ctx = longCache ? _long : _short;
        LlamaNative.Truncate(ctx, position);
        var start = Stopwatch.GetTimestamp();
        LlamaNative.Decode(ctx, _tokens.AsSpan(position, 1));
        return Stopwatch.GetElapsedTime(start).TotalMilliseconds;
    }

    public double Prefill(int tokens)
    {
        LlamaNative.Clear(_short);
        var start = Stopwatch.GetTimestamp();
        LlamaNative.Decode(_short, _tokens.AsSpan(0, tokens));
        return Stopwatch.GetElapsedTime(start).TotalMilliseconds;
    }

    private void Fill(nint ctx, int from, int to)
    {
        for (var p = from; p < to; p += 256)
        {
            LlamaNative.Decode(ctx, _tokens.AsSpan(p, Math.Min(256, to - p)));
        }
    }

    public void Dispose()
    {
        if (_short != 0)
        {
            LlamaNative.FreeContext(_short);
        }

        if (_long != 0)
        {
            LlamaNative.FreeContext(_long);
        }

        if (_model != 0)
        {
            LlamaNative.FreeModel(_model);
        }
    }
}

/// <summary>Our executor (public API only): GgufModelWeights over the file, CpuBlockExecutorFactory over all its blocks.</summary>
internal sealed class OursSide : ICompareSide
{
    private readonly GgufModelWeights _weights;
    private readonly IBlockExecutor _executor;
    private readonly IKvCache _long;
    private readonly IKvCache _short;
    private readonly float[] _inputs;
    private readonly float[] _hidden;
    private readonly int _hiddenSize;

    private OursSide(GgufModelWeights weights, IBlockExecutor executor, int context, int maxTokens, ulong seed)
    {
        _weights = weights;
        _executor = executor;
        _hiddenSize = executor.Config.HiddenSize;
        _long = executor.CreateCache(1, context);
        _short = executor.CreateCache(1, context);
        // Hidden states like the embeddings of the llama.cpp side: Gaussian-ish values of std 0.02.
        _inputs = new float[(long)maxTokens * _hiddenSize];
        InMemoryBlockWeights.FillUniform(_inputs, seed + 7, 0f, 0.035f);
        _hidden = new float[_inputs.Length];
    }

    public string Name => "ours";

    /// <summary>How the executor holds the weights (its <see cref="ExecutorWeightsInfo"/>, when it announces one).</summary>
    public string Describe()
    {
        if (_executor.GetService(typeof(ExecutorWeightsInfo)) is not ExecutorWeightsInfo info)
        {
            return "weight storage not announced";
        }

        var parts = info.BytesByDType.OrderBy(p => p.Key).Select(p => string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{p.Key} {p.Value / 1e9:F2} GB"));
        return $"holds {string.Join(" + ", parts)} (quantization {info.Quantization})";
    }

    /// <summary>Opens the file and builds the executor; a format our loader does not serve yet gives the reason instead.</summary>
    public static OursSide? TryOpen(string path, int threads, int context, int maxTokens, ulong seed, out string? failure)
    {
        GgufModelWeights? weights = null;
        try
        {
            weights = GgufModelWeights.Open(path);
            var factory = new CpuBlockExecutorFactory(new CpuExecutorOptions { ThreadCount = threads, NativeBlas = NativeBlasMode.Never });
            var executor = factory.Create(weights, new BlockRange(0, weights.Config.NumLayers));
            failure = null;
            return new OursSide(weights, executor, context, maxTokens, seed);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // Whatever the loader or the executor refuses (ModelFormatException for an unsupported tensor type, …) is a
            // result of the comparison, not a reason to stop it.
            weights?.Dispose();
            failure = e.Message.ReplaceLineEndings(" ");
            return null;
        }
    }

    public double FillLong(int length)
    {
        var start = Stopwatch.GetTimestamp();
        _long.Truncate(0);
        Fill(_long, length);
        return Stopwatch.GetElapsedTime(start).TotalMilliseconds;
    }

    public void PrepareShort(int length)
    {
        _short.Truncate(0);
        Fill(_short, length);
    }

    public double DecodeStep(int position, bool longCache)
    {
        var cache = longCache ? _long : _short;
        cache.Truncate(position);
        var h = _hidden.AsSpan(0, _hiddenSize);
        _inputs.AsSpan(0, _hiddenSize).CopyTo(h);
        var start = Stopwatch.GetTimestamp();
        _executor.Forward(h, 1, 1, cache);
        return Stopwatch.GetElapsedTime(start).TotalMilliseconds;
    }

    public double Prefill(int tokens)
    {
        _short.Truncate(0);
        var h = _hidden.AsSpan(0, tokens * _hiddenSize);
        _inputs.AsSpan(0, h.Length).CopyTo(h);
        var start = Stopwatch.GetTimestamp();
        _executor.Forward(h, 1, tokens, _short);
        return Stopwatch.GetElapsedTime(start).TotalMilliseconds;
    }

    private void Fill(IKvCache cache, int length)
    {
        for (var p = 0; p < length; p += 256)
        {
            var n = Math.Min(256, length - p);
            var h = _hidden.AsSpan(0, n * _hiddenSize);
            _inputs.AsSpan(0, h.Length).CopyTo(h);
            _executor.Forward(h, 1, n, cache);
        }
    }

    public void Dispose()
    {
        _long.Dispose();
        _short.Dispose();
        _executor.Dispose();
        _weights.Dispose();
    }
}
