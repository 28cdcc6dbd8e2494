using System.Reflection;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Petals.Benchmarks.LlamaCpp;

/// <summary>
/// The few llama.cpp entry points the comparison needs, bound to the natives of NuGet <c>LLamaSharp.Backend.Cpu</c> 0.30.0
/// (linux-x64, AVX-512 build). A comparison peer of the benchmarks only; nothing in src/ references it.
/// </summary>
/// <remarks>
/// The parameter structs are kept as raw bytes obtained from the library's own <c>*_default_params()</c>, so fields this
/// harness does not set keep the library's defaults whatever the struct grew to; the few fields that are set sit at
/// offsets that were checked against this exact build (sret probe of the default values, see <see cref="CheckLayout"/>):
/// <c>llama_context_params</c> is 160 bytes, <c>n_ctx</c> +0, <c>n_batch</c> +4, <c>n_ubatch</c> +8, <c>n_seq_max</c> +12,
/// <c>n_threads</c> +24, <c>n_threads_batch</c> +28; <c>llama_model_params</c> is 72 bytes (left at its defaults: mmap on);
/// <c>llama_model_quantize_params</c> is 56 bytes, <c>nthread</c> +0, <c>ftype</c> +4; <c>llama_batch</c> is 56 bytes
/// (n_tokens, then token, embd, pos, n_seq_id, seq_id, logits pointers).
/// </remarks>
internal static unsafe partial class LlamaNative
{
    private const string Library = "llama";

    /// <summary>Where the natives were looked for (first hit wins): <c>PETALS_LLAMA_NATIVE</c>, then next to this assembly.</summary>
    public static string NativeDirectory { get; private set; } = DefaultDirectory();

    private static int s_initialized;

    /// <summary>llama_ftype values used here (stable across llama.cpp versions).</summary>
    public enum FileType
    {
        AllF32 = 0,
        MostlyF16 = 1,
        MostlyQ4_0 = 2,
        MostlyQ8_0 = 7,
        MostlyQ4_K_M = 15,
    }

    /// <summary>Loads the natives from <paramref name="directory"/> (or the default) and initializes the backend; idempotent.</summary>
    /// <exception cref="InvalidOperationException">The natives are missing or their parameter layout is not the one this harness was written against.</exception>
    public static void Initialize(string? directory = null)
    {
        if (Interlocked.Exchange(ref s_initialized, 1) == 1)
        {
            return;
        }

        if (directory is not null)
        {
            NativeDirectory = directory;
        }

        var path = Path.Combine(NativeDirectory, "libllama.so");
        if (!File.Exists(path))
        {
            throw new InvalidOperationException($"llama.cpp natives not found: {path} does not exist (NuGet LLamaSharp.Backend.Cpu 0.30.0, linux-x64/native/avx512; set PETALS_LLAMA_NATIVE or --llama-native DIR).");
        }

        NativeLibrary.SetDllImportResolver(typeof(LlamaNative).Assembly, Resolve);
        llama_log_set(&Quiet, null);
        llama_backend_init();
        CheckLayout();
    }

    private static nint Resolve(string name, Assembly assembly, DllImportSearchPath? searchPath) =>
        name == Library ? NativeLibrary.Load(Path.Combine(NativeDirectory, "libllama.so")) : 0;

    private static string DefaultDirectory()
    {
        var env = Environment.GetEnvironmentVariable("PETALS_LLAMA_NATIVE");
        if (!string.IsNullOrEmpty(env))
        {
            return env;
        }

        return Path.Combine(AppContext.BaseDirectory, "llama-native");
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static void Quiet(int level, byte* text, void* user)
    {
        // GGML_LOG_LEVEL_ERROR = 4: keep errors (they explain a failed load), drop the rest.
        if (level == 4 && text is not null)
        {
            Console.Error.Write("llama.cpp: " + Marshal.PtrToStringUTF8((nint)text));
        }
    }

    /// <summary>Refuses to run when the defaults do not read back at the offsets this harness writes.</summary>
    private static void CheckLayout()
    {
        var c = ContextDefaults();
        if (c.Int(0) != 512 || c.Int(4) != 2048 || c.Int(8) != 512 || c.Int(12) != 1 || c.Int(24) <= 0 || c.Int(24) != c.Int(28))
        {
            throw new InvalidOperationException($"llama_context_params of {NativeDirectory} do not have the expected layout (n_ctx {c.Int(0)}, n_batch {c.Int(4)}, n_ubatch {c.Int(8)}, n_seq_max {c.Int(12)}, n_threads {c.Int(24)}/{c.Int(28)}); this harness was checked against LLamaSharp.Backend.Cpu 0.30.0.");
        }

        var q = llama_model_quantize_default_params();
        if (q.Int(0) != 0 || q.Int(4) != (int)FileType.MostlyQ8_0)
        {
            throw new InvalidOperationException($"llama_model_quantize_params of {NativeDirectory} do not have the expected layout (nthread {q.Int(0)}, ftype {q.Int(4)}).");
        }
    }

    /// <summary>The library's default context parameters.</summary>
    public static ContextParams ContextDefaults() => llama_context_default_params();

    /// <summary>Loads a model (memory-mapped, the library's defaults).</summary>
    /// <exception cref="InvalidOperationException">The library refused the file.</exception>
    public static nint LoadModel(string path)
    {
        var model = llama_model_load_from_file(path, llama_model_default_params());
        return model != 0 ? model : throw new InvalidOperationException($"llama.cpp could not load {path} (see its error above).");
    }

    /// <summary>Creates a context of <paramref name="contextLength"/> positions running on <paramref name="threads"/> threads.</summary>
    public static nint CreateContext(nint model, int contextLength, int batch, int threads)
    {
        var p = llama_context_default_params();
        p.SetInt(0, contextLength);
        p.SetInt(4, batch);
        p.SetInt(8, batch);
        p.SetInt(24, threads);
        p.SetInt(28, threads);
        var ctx = llama_init_from_model(model, p);
        return ctx != 0 ? ctx : throw new InvalidOperationException("llama.cpp could not create a context (see its error above).");
    }

    /// <summary>Decodes <paramref name="tokens"/> at the next positions of sequence 0 and waits for the result.</summary>
    public static void Decode(nint ctx, ReadOnlySpan<int> tokens)
    {
        fixed (int* t = tokens)
        {
            var batch = llama_batch_get_one(t, tokens.Length);
            var rc = llama_decode(ctx, batch);
            if (rc != 0)
            {
                throw new InvalidOperationException($"llama_decode returned {rc} for {tokens.Length} tokens.");
            }

            llama_synchronize(ctx);
        }
    }

    /// <summary>Drops positions <paramref name="from"/> and later of sequence 0 (the cache then holds <paramref name="from"/> positions).</summary>
    public static void Truncate(nint ctx, int from)
    {
        if (!llama_memory_seq_rm(llama_get_memory(ctx), 0, from, -1))
        {
            throw new InvalidOperationException($"llama_memory_seq_rm refused to drop positions {from}.. of sequence 0.");
        }
    }

    /// <summary>Empties the context's cache.</summary>
    public static void Clear(nint ctx) => llama_memory_clear(llama_get_memory(ctx), true);

    /// <summary>Writes <paramref name="output"/> from <paramref name="input"/> in <paramref name="type"/> with <paramref name="threads"/> threads.</summary>
    /// <exception cref="InvalidOperationException">llama_model_quantize failed.</exception>
    public static void Quantize(string input, string output, FileType type, int threads)
    {
        var p = llama_model_quantize_default_params();
        p.SetInt(0, threads);
        p.SetInt(4, (int)type);
        var rc = llama_model_quantize(input, output, &p);
        if (rc != 0)
        {
            throw new InvalidOperationException($"llama_model_quantize {input} -> {output} ({type}) returned {rc}.");
        }
    }

    public static void FreeContext(nint ctx) => llama_free(ctx);

    public static void FreeModel(nint model) => llama_model_free(model);

    /// <summary>llama_context_params as raw bytes (160 in this build; 256 reserved so a larger struct cannot overrun).</summary>
    [StructLayout(LayoutKind.Sequential, Size = 256)]
    public struct ContextParams
    {
        private fixed byte _bytes[256];

        public readonly int Int(int offset)
        {
            fixed (byte* b = _bytes)
            {
                return *(int*)(b + offset);
            }
        }

        public void SetInt(int offset, int value)
        {
            fixed (byte* b = _bytes)
            {
                *(int*)(b + offset) = value;
            }
        }
    }

    /// <summary>llama_model_params as raw bytes (72 in this build).</summary>
    [StructLayout(LayoutKind.Sequential, Size = 256)]
    public struct ModelParams
    {
        private fixed byte _bytes[256];
    }

    /// <summary>llama_model_quantize_params as raw bytes (56 in this build); passed by pointer.</summary>
    [StructLayout(LayoutKind.Sequential, Size = 256)]
    public struct QuantizeParams
    {
        private fixed byte _bytes[256];

        public readonly int Int(int offset)
        {
            fixed (byte* b = _bytes)
            {
                return *(int*)(b + offset);
            }
        }

        public void SetInt(int offset, int value)
        {
            fixed (byte* b = _bytes)
            {
                *(int*)(b + offset) = value;
            }
        }
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct Batch
    {
        public int NTokens;
        public int* Token;
        public float* Embd;
        public int* Pos;
        public int* NSeqId;
        public int** SeqId;
        public sbyte* Logits;
    }

    // The struct-by-value parameters (context/model params) are the last argument of their functions, so passing the
    // 256-byte buffers (which the SysV ABI copies onto the stack) leaves the callee's view of its first bytes intact.
    [LibraryImport(Library)]
    private static partial void llama_backend_init();

    [LibraryImport(Library)]
    private static partial void llama_log_set(delegate* unmanaged[Cdecl]<int, byte*, void*, void> callback, void* user);

    [LibraryImport(Library)]
    private static partial ModelParams llama_model_default_params();

    [LibraryImport(Library)]
    private static partial ContextParams llama_context_default_params();

    [LibraryImport(Library)]
    private static partial QuantizeParams llama_model_quantize_default_params();

    [LibraryImport(Library, StringMarshalling = StringMarshalling.Utf8)]
    private static partial nint llama_model_load_from_file(string path, ModelParams p);

    [LibraryImport(Library)]
    private static partial nint llama_init_from_model(nint model, ContextParams p);

    [LibraryImport(Library)]
    private static partial Batch llama_batch_get_one(int* tokens, int count);

    [LibraryImport(Library)]
    private static partial int llama_decode(nint ctx, Batch batch);

    [LibraryImport(Library)]
    private static partial void llama_synchronize(nint ctx);

    [LibraryImport(Library)]
    private static partial nint llama_get_memory(nint ctx);

    [LibraryImport(Library)]
    private static partial void llama_memory_clear(nint memory, [MarshalAs(UnmanagedType.U1)] bool data);

    [LibraryImport(Library)]
    [return: MarshalAs(UnmanagedType.U1)]
    private static partial bool llama_memory_seq_rm(nint memory, int seq, int p0, int p1);

    [LibraryImport(Library, StringMarshalling = StringMarshalling.Utf8)]
    private static partial uint llama_model_quantize(string input, string output, QuantizeParams* p);

    [LibraryImport(Library)]
    private static partial void llama_free(nint ctx);

    [LibraryImport(Library)]
    private static partial void llama_model_free(nint model);
}
