using Petals.Benchmarks.LlamaCpp;
using Petals.Formats.Gguf;
using Petals.Models;

namespace Petals.Benchmarks.Tests;

/// <summary>The llama.cpp comparison harness on a tiny random model: files, the native binding, both sides, the report.</summary>
public sealed class LlamaCompareTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("petals-llama-compare-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void RandomF32FileHasTheShapeTheVocabularyAndTheSpreadAskedFor()
    {
        var path = Path.Combine(_dir, "t.gguf");
        CompareModels.WriteF32(path, CompareShape.Tiny, 2, 0.02f, 3);
        using var w = GgufModelWeights.Open(path);
        var c = w.Config;
        Assert.Equal((256, 512, 4, 2, 2, 259), (c.HiddenSize, c.IntermediateSize, c.NumHeads, c.NumKeyValueHeads, c.NumLayers, c.VocabSize));
        Assert.Equal(10000.0, c.RopeTheta, 3);
        var up = w.File.ReadSingles(w.File.Tensors.Single(t => t.Name == "blk.1.ffn_up.weight"));
        var mean = up.Average();
        var std = Math.Sqrt(up.Select(v => (v - mean) * (v - mean)).Average());
        Assert.InRange(std, 0.019, 0.021);
        Assert.InRange(mean, -0.001, 0.001);
        Assert.All(w.File.ReadSingles(w.File.Tensors.Single(t => t.Name == "blk.0.attn_norm.weight")), v => Assert.Equal(1f, v));
        // Blocks only: 2 × (2·256² + 2·256·128 + 3·256·512) f32 values plus the two 256-value norms each.
        Assert.Equal(2 * ((CompareShape.Tiny.BlockMatrixParameters + 512) * 4), LlamaCompare.BlockBytes(path));
    }

    [Fact]
    public void ModelFilesQuantizeWithLlamaCppAndOursReportsWhatItCannotLoad()
    {
        CompareModels.Run(_dir, [CompareShape.Tiny], CompareModels.Formats, 2, 0.02f, 1, 2, force: false, TextWriter.Null);
        foreach (var f in CompareModels.Formats)
        {
            Assert.True(File.Exists(Path.Combine(_dir, CompareModels.FileName(CompareShape.Tiny, 2, f))), f);
        }

        // Q4_0 blocks are 18 bytes per 32 values: the file is about an eighth of the f32 one.
        var f32 = LlamaCompare.BlockBytes(Path.Combine(_dir, CompareModels.FileName(CompareShape.Tiny, 2, "f32")));
        var q4 = LlamaCompare.BlockBytes(Path.Combine(_dir, CompareModels.FileName(CompareShape.Tiny, 2, "q4_0")));
        Assert.InRange(q4, f32 * 18 / 128 * 0.99, f32 * 18 / 128 * 1.1);

        var ours = OursSide.TryOpen(Path.Combine(_dir, CompareModels.FileName(CompareShape.Tiny, 2, "f32")), 2, 64, 256, 1, out var failure);
        Assert.NotNull(ours);
        Assert.Null(failure);
        using (ours)
        {
            ours.FillLong(20);
            Assert.True(ours.DecodeStep(20, longCache: true) > 0);
            Assert.True(ours.Prefill(8) > 0);
        }

        using var llama = new LlamaSide(Path.Combine(_dir, CompareModels.FileName(CompareShape.Tiny, 2, "q4_k_m")), 64, 2, 1);
        llama.FillLong(20);
        Assert.True(llama.DecodeStep(20, longCache: true) > 0);
        llama.PrepareShort(5);
        Assert.True(llama.DecodeStep(5, longCache: false) > 0);
        Assert.True(llama.Prefill(8) > 0);
    }

    [Fact]
    public void CompareWritesTheTableJsonAndPlotForDenseAndQuantizedFiles()
    {
        var options = LlamaCompareOptions.Parse(["--dir", _dir, "--shapes", "tiny", "--blocks", "2", "--formats", "f32,q4_0", "--rounds", "2", "--steps", "2",
            "--warmup", "1", "--positions", "4,40", "--prefill", "16", "--ctx", "64", "--results", Path.Combine(_dir, "results")]);
        CompareModels.Run(_dir, options.Shapes, options.Formats, options.Blocks, 0.02f, 1, 2, force: false, TextWriter.Null);
        var output = new StringWriter();
        Assert.Equal(0, LlamaCompare.Run(options, output, TextWriter.Null));
        var table = output.ToString();
        Assert.Contains("| tiny | f32 | decode@4 |", table, StringComparison.Ordinal);
        Assert.Contains("| tiny | f32 | decode@40 |", table, StringComparison.Ordinal);
        Assert.Contains("| tiny | f32 | prefill16 |", table, StringComparison.Ordinal);
        var f32Rows = table.Split('\n').Where(l => l.StartsWith("| tiny | f32 |", StringComparison.Ordinal)).ToArray();
        Assert.All(f32Rows, r => Assert.Matches(@"\| \d+\.\d\dx \|$", r.TrimEnd()));
        // llama.cpp's Q4_0 file (Q4_0 blocks, a Q6_K LM head) is served as stored, not dequantized.
        var q4Rows = table.Split('\n').Where(l => l.StartsWith("| tiny | q4_0 |", StringComparison.Ordinal)).ToArray();
        Assert.Equal(3, q4Rows.Length);
        Assert.All(q4Rows, r => Assert.Matches(@"\| \d+\.\d\dx \|$", r.TrimEnd()));
        Assert.Contains("tiny q4_0, ours: holds Q4_0 ", table, StringComparison.Ordinal);
        var results = Directory.GetFiles(Path.Combine(_dir, "results"));
        Assert.Contains(results, f => f.EndsWith(".png", StringComparison.Ordinal) && new FileInfo(f).Length > 1000);
        var jsonl = File.ReadAllLines(results.Single(f => f.EndsWith(".jsonl", StringComparison.Ordinal)));
        Assert.Equal(6, jsonl.Length);
    }

    [Fact]
    public void DecodeProfilePrintsEverySectionWithRatesFromTheSameBytes()
    {
        var path = Path.Combine(_dir, "p.gguf");
        CompareModels.WriteF32(path, CompareShape.Tiny, 2, 0.02f, 3);
        var output = new StringWriter();
        Assert.Equal(0, DecodeProfile.Run(["--file", path, "--steps", "3", "--position", "8", "--long-position", "40"], output));
        var lines = output.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        foreach (var what in new[]
        {
            "ours, full step, mmapped file", "reference: plain read of all block weights, mmapped file", "reference: 7 GEMVs, full rows, 4 hand-offs/block, mmapped file",
            "reference: 7 GEMVs, K split by 2048 (as ours), mmapped file", "ours, full step, managed-array copy (4 KiB pages)", "ours, full step, anonymous 2 MiB THP copy",
            "reference: 7 GEMVs, full rows, 1 hand-off/step, THP copy", "ours, full step, mmapped file, 1 thread", "ours, full step, mmapped file, position 40",
            "llama.cpp, full step",
        })
        {
            var line = Assert.Single(lines, l => System.Text.RegularExpressions.Regex.IsMatch(l, @"^\s+" + System.Text.RegularExpressions.Regex.Escape(what) + @"[^,]*\s+\d+\.\d\d ms "));
            Assert.Matches(@"\d+\.\d\d tok/s +\d+\.\d GB/s", line);
        }
    }

    [Fact]
    public void DecodeProfileRefusesAMissingFileAndUnknownSections()
    {
        Assert.Contains("does not exist", Assert.Throws<ArgumentException>(() => DecodeProfile.Run(["--file", Path.Combine(_dir, "none.gguf")], TextWriter.Null)).Message, StringComparison.Ordinal);
        var path = Path.Combine(_dir, "p.gguf");
        CompareModels.WriteF32(path, CompareShape.Tiny, 1, 0.02f, 3);
        Assert.Contains("unknown section 'gpu'", Assert.Throws<ArgumentException>(() => DecodeProfile.Run(["--file", path, "--sections", "gpu"], TextWriter.Null)).Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(new[] { "--positions", "16,1024", "--ctx", "1000" }, "--ctx 1000 cannot hold position 1024")]
    [InlineData(new[] { "--formats", "q5_0" }, "unknown format 'q5_0'")]
    [InlineData(new[] { "--shapes", "gpt2" }, "unknown shape 'gpt2'")]
    [InlineData(new[] { "--impl", "pytorch" }, "--impl must be both, llama or ours")]
    [InlineData(new[] { "--rounds", "0" }, "--rounds must be an integer of at least 1")]
    [InlineData(new[] { "--steps" }, "--steps needs a value")]
    public void BadOptionsAreRefusedPrecisely(string[] args, string message)
    {
        var e = Assert.Throws<ArgumentException>(() => LlamaCompareOptions.Parse(args));
        Assert.Contains(message, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void DefaultsAreTheIssuesCases()
    {
        var o = LlamaCompareOptions.Parse([]);
        Assert.Equal([16, 1024], o.Positions);
        Assert.Equal(128, o.Prefill);
        Assert.Equal(2, o.Threads);
        Assert.True(o.Context >= 1100);
        Assert.Equal(["llama2-7b", "llama3-8b"], o.Shapes.Select(s => s.Name));
        Assert.Equal(8, CompareShape.Llama3_8B.KvHeads);
        Assert.Equal(500000f, CompareShape.Llama3_8B.RopeTheta);
    }
}
