using System.Diagnostics;
using System.Globalization;

namespace Petals.Benchmarks.LlamaCpp;

/// <summary>A Llama shape of the comparison models.</summary>
internal sealed record CompareShape(string Name, int Hidden, int Intermediate, int Heads, int KvHeads, float RopeTheta, int ContextLength)
{
    public static readonly CompareShape Llama2_7B = new("llama2-7b", 4096, 11008, 32, 32, 10000f, 4096);
    public static readonly CompareShape Llama3_8B = new("llama3-8b", 4096, 14336, 32, 8, 500000f, 8192);

    /// <summary>A small shape for tests (its rows are multiples of 256, as the k-quants need).</summary>
    public static readonly CompareShape Tiny = new("tiny", 256, 512, 4, 2, 10000f, 2048);

    public static CompareShape Get(string name) => name switch
    {
        "llama2-7b" => Llama2_7B,
        "llama3-8b" => Llama3_8B,
        "tiny" => Tiny,
        _ => throw new ArgumentException($"--shapes: unknown shape '{name}' (llama2-7b, llama3-8b, tiny)."),
    };

    public int HeadDim => Hidden / Heads;

    public int KvDim => KvHeads * HeadDim;

    /// <summary>Parameters of one block's weight matrices (the norms are a rounding error and not counted).</summary>
    public long BlockMatrixParameters => ((long)Hidden * Hidden * 2) + ((long)Hidden * KvDim * 2) + ((long)Hidden * Intermediate * 3);
}

/// <summary>The random GGUF files of the llama.cpp comparison: F32 written here, the other formats by llama_model_quantize.</summary>
internal static class CompareModels
{
    /// <summary>The vocabulary: &lt;unk&gt;, &lt;s&gt;, &lt;/s&gt; and the 256 byte tokens (what llama.cpp's SentencePiece vocabulary needs).</summary>
    public const int VocabSize = 259;

    /// <summary>The formats, in order (the F32 file is the source of the others).</summary>
    public static readonly string[] Formats = ["f32", "f16", "q8_0", "q4_0", "q4_k_m"];

    public static string FileName(CompareShape shape, int blocks, string format) =>
        string.Create(CultureInfo.InvariantCulture, $"{shape.Name}-{blocks}blk.{format}.gguf");

    public static LlamaNative.FileType FileTypeOf(string format) => format switch
    {
        "f16" => LlamaNative.FileType.MostlyF16,
        "q8_0" => LlamaNative.FileType.MostlyQ8_0,
        "q4_0" => LlamaNative.FileType.MostlyQ4_0,
        "q4_k_m" => LlamaNative.FileType.MostlyQ4_K_M,
        _ => throw new ArgumentException($"--formats: unknown format '{format}' ({string.Join(", ", Formats)})."),
    };

    /// <summary>Writes every missing file of <paramref name="shapes"/> × <paramref name="formats"/> into <paramref name="directory"/>.</summary>
    public static int Run(string directory, IReadOnlyList<CompareShape> shapes, IReadOnlyList<string> formats, int blocks, float std, ulong seed, int threads, bool force, TextWriter log)
    {
        Directory.CreateDirectory(directory);
        foreach (var shape in shapes)
        {
            var source = Path.Combine(directory, FileName(shape, blocks, "f32"));
            if (force || !File.Exists(source))
            {
                var sw = Stopwatch.StartNew();
                var bytes = WriteF32(source, shape, blocks, std, seed);
                log.WriteLine(string.Create(CultureInfo.InvariantCulture, $"wrote {source}: {bytes / 1e9:F2} GB in {sw.Elapsed.TotalSeconds:F0} s"));
            }
            else
            {
                log.WriteLine($"kept {source}");
            }

            foreach (var format in formats)
            {
                if (format == "f32")
                {
                    continue;
                }

                var target = Path.Combine(directory, FileName(shape, blocks, format));
                if (!force && File.Exists(target))
                {
                    log.WriteLine($"kept {target}");
                    continue;
                }

                LlamaNative.Initialize();
                var sw = Stopwatch.StartNew();
                LlamaNative.Quantize(source, target, FileTypeOf(format), threads);
                log.WriteLine(string.Create(CultureInfo.InvariantCulture, $"wrote {target}: {new FileInfo(target).Length / 1e9:F2} GB in {sw.Elapsed.TotalSeconds:F0} s (llama_model_quantize, {threads} threads)"));
            }
        }

        return 0;
    }

    /// <summary>
    /// Writes a random Llama GGUF: <paramref name="blocks"/> blocks of <paramref name="shape"/>, matrices Gaussian with
    /// standard deviation <paramref name="std"/>, norm weights 1, a <see cref="VocabSize"/>-token SentencePiece vocabulary
    /// (so the embedding and LM head are 259 × hidden: 4 MB in f32, negligible beside the blocks).
    /// </summary>
    public static long WriteF32(string path, CompareShape shape, int blocks, float std, ulong seed)
    {
        var w = new GgufStreamWriter()
            .String("general.architecture", "llama")
            .String("general.name", shape.Name + "-random")
            .UInt32("general.file_type", 0)
            .UInt32("llama.context_length", (uint)shape.ContextLength)
            .UInt32("llama.embedding_length", (uint)shape.Hidden)
            .UInt32("llama.block_count", (uint)blocks)
            .UInt32("llama.feed_forward_length", (uint)shape.Intermediate)
            .UInt32("llama.rope.dimension_count", (uint)shape.HeadDim)
            .UInt32("llama.attention.head_count", (uint)shape.Heads)
            .UInt32("llama.attention.head_count_kv", (uint)shape.KvHeads)
            .Float32("llama.attention.layer_norm_rms_epsilon", 1e-5f)
            .Float32("llama.rope.freq_base", shape.RopeTheta)
            .UInt32("llama.vocab_size", VocabSize);
        var tokens = new List<string> { "<unk>", "<s>", "</s>" };
        var types = new List<int> { 2, 3, 3 }; // unknown, control, control
        for (var b = 0; b < 256; b++)
        {
            tokens.Add(string.Create(CultureInfo.InvariantCulture, $"<0x{b:X2}>"));
            types.Add(6); // byte
        }

        w.String("tokenizer.ggml.model", "llama")
            .Strings("tokenizer.ggml.tokens", tokens)
            .Floats("tokenizer.ggml.scores", new float[VocabSize])
            .Int32s("tokenizer.ggml.token_type", types)
            .UInt32("tokenizer.ggml.bos_token_id", 1)
            .UInt32("tokenizer.ggml.eos_token_id", 2)
            .UInt32("tokenizer.ggml.unknown_token_id", 0);

        var index = 0UL;
        void Gaussian(string name, params long[] dims)
        {
            var rng = new GaussianSource(seed, ++index, std);
            w.Tensor(name, dims, (chunk, _) => rng.Fill(chunk));
        }

        void Ones(string name, long n) => w.Tensor(name, [n], (chunk, _) => chunk.Fill(1f));

        long h = shape.Hidden, kv = shape.KvDim, inter = shape.Intermediate;
        Gaussian("token_embd.weight", VocabSize, h);
        for (var b = 0; b < blocks; b++)
        {
            var p = string.Create(CultureInfo.InvariantCulture, $"blk.{b}.");
            Ones(p + "attn_norm.weight", h);
            Gaussian(p + "attn_q.weight", h, h);
            Gaussian(p + "attn_k.weight", kv, h);
            Gaussian(p + "attn_v.weight", kv, h);
            Gaussian(p + "attn_output.weight", h, h);
            Ones(p + "ffn_norm.weight", h);
            Gaussian(p + "ffn_gate.weight", inter, h);
            Gaussian(p + "ffn_up.weight", inter, h);
            Gaussian(p + "ffn_down.weight", h, inter);
        }

        Ones("output_norm.weight", h);
        Gaussian("output.weight", VocabSize, h);
        return w.Write(path);
    }

    /// <summary>Seeded Gaussian values (xoshiro256** and Box-Muller), one independent stream per tensor.</summary>
    private sealed class GaussianSource(ulong seed, ulong stream, float std)
    {
        private ulong _s0 = Mix(seed ^ (stream * 0x9E3779B97F4A7C15UL));
        private ulong _s1 = Mix(seed + stream + 1);
        private ulong _s2 = Mix(stream * 31 + 7);
        private ulong _s3 = Mix(seed * 17 + stream + 3);

        public void Fill(Span<float> values)
        {
            var i = 0;
            for (; i + 1 < values.Length; i += 2)
            {
                var u1 = ((Next() >> 11) + 1) * (1.0 / (1UL << 53));
                var u2 = (Next() >> 11) * (1.0 / (1UL << 53));
                var r = Math.Sqrt(-2 * Math.Log(u1)) * std;
                var (sin, cos) = Math.SinCos(2 * Math.PI * u2);
                values[i] = (float)(r * cos);
                values[i + 1] = (float)(r * sin);
            }

            if (i < values.Length)
            {
                var u1 = ((Next() >> 11) + 1) * (1.0 / (1UL << 53));
                var u2 = (Next() >> 11) * (1.0 / (1UL << 53));
                values[i] = (float)(Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2) * std);
            }
        }

        private ulong Next()
        {
            var result = BitRotate(_s1 * 5, 7) * 9;
            var t = _s1 << 17;
            _s2 ^= _s0;
            _s3 ^= _s1;
            _s1 ^= _s2;
            _s0 ^= _s3;
            _s2 ^= t;
            _s3 = BitRotate(_s3, 45);
            return result;
        }

        private static ulong BitRotate(ulong x, int k) => (x << k) | (x >> (64 - k));

        private static ulong Mix(ulong z)
        {
            z += 0x9E3779B97F4A7C15UL;
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
            return z ^ (z >> 31);
        }
    }
}
