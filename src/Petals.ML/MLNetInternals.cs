using System.Reflection;
using System.Reflection.Emit;
using System.Runtime.CompilerServices;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Runtime;

namespace Petals.ML;

/// <summary>
/// The few ML.NET 6 members that a third-party transformer needs but ML.NET keeps internal ("best friend" of its own
/// assemblies): the column shapes of <see cref="SchemaShape"/>, the catalog's environment, writing a model entry with
/// <see cref="ModelSaveContext"/> and a loader class in the component catalog. Pinned by the Petals.ML tests
/// (save, load, transform) to the Microsoft.ML version this package references.
/// </summary>
internal static class MLNetInternals
{
    /// <summary>The model signature (8 characters) and loader signature of each saved transform.</summary>
    internal const string EmbedModelSignature = "PTLSEMBD";
    internal const string EmbedLoaderSignature = "PetalsEmbedTransformer";
    internal const string GenerateModelSignature = "PTLSGENR";
    internal const string GenerateLoaderSignature = "PetalsGenerateTransform";
    private const uint Version = 0x00010001;

    private static readonly Assembly Core = typeof(ICanSaveModel).Assembly;
    private static readonly Lazy<AssemblyBuilder> LoaderAssembly = new(CreateLoaderAssembly);

    /// <summary>Set by the transforms: reads a saved entry (environment, ModelLoadContext) back into a transformer.</summary>
    internal static Func<IHostEnvironment, BinaryReader, ITransformer>? Load { get; set; }

    [UnsafeAccessor(UnsafeAccessorKind.Constructor)]
    private static extern SchemaShape.Column NewColumn(string name, SchemaShape.Column.VectorKind vecKind, DataViewType itemType, bool isKey, SchemaShape? annotations);

    [UnsafeAccessor(UnsafeAccessorKind.StaticMethod, Name = "Create")]
    private static extern SchemaShape CreateShape(SchemaShape? type, DataViewSchema schema);

    /// <summary>The shape of a schema (ML.NET's <c>SchemaShape.Create</c> is internal).</summary>
    internal static SchemaShape ShapeOf(DataViewSchema schema) => CreateShape(null, schema);

    /// <summary>A column shape (ML.NET's constructor of <see cref="SchemaShape.Column"/> is internal).</summary>
    internal static SchemaShape.Column Column(string name, SchemaShape.Column.VectorKind kind, DataViewType itemType) =>
        NewColumn(name, kind, itemType, false, null);

    /// <summary>The environment behind a catalog (ML.NET's <c>IInternalCatalog.Environment</c>).</summary>
    internal static IHostEnvironment GetEnvironment(object catalog)
    {
        for (var type = catalog.GetType(); type is not null; type = type.BaseType)
        {
            foreach (var property in type.GetProperties(BindingFlags.Instance | BindingFlags.NonPublic | BindingFlags.Public | BindingFlags.DeclaredOnly))
            {
                if (typeof(IHostEnvironment).IsAssignableFrom(property.PropertyType) && property.GetIndexParameters().Length == 0
                    && property.GetValue(catalog) is IHostEnvironment env)
                {
                    return env;
                }
            }
        }

        throw new InvalidOperationException($"This version of ML.NET ({Core.GetName().Version}) hides the environment of {catalog.GetType().FullName}; Petals.ML supports Microsoft.ML 6.");
    }

    /// <summary>Writes a model entry: ML.NET's header (signatures, versions, loader assembly) and then <paramref name="payload"/>.</summary>
    internal static void Save(ModelSaveContext ctx, string modelSignature, string loaderSignature, string payload)
    {
        ArgumentNullException.ThrowIfNull(ctx);
        var versionInfo = Activator.CreateInstance(
            Core.GetType("Microsoft.ML.VersionInfo", throwOnError: true)!,
            modelSignature,
            Version,
            Version,
            Version,
            typeof(MLNetInternals).Assembly.FullName,
            loaderSignature,
            null);
        Invoke(ctx, "CheckAtModel", []);
        Invoke(ctx, "SetVersionInfo", [versionInfo]);
        var writer = (BinaryWriter)typeof(ModelSaveContext).GetField("Writer", BindingFlags.Instance | BindingFlags.NonPublic | BindingFlags.Public)!.GetValue(ctx)!;
        writer.Write(payload);
    }

    /// <summary>Registers the loaders of the Petals transforms with <paramref name="catalog"/> (idempotent).</summary>
    internal static void RegisterLoaders(ComponentCatalog catalog) => catalog.RegisterAssembly(LoaderAssembly.Value);

    private static void Invoke(object target, string name, object?[] arguments)
    {
        var method = target.GetType().GetMethods(BindingFlags.Instance | BindingFlags.NonPublic | BindingFlags.Public)
            .Single(m => m.Name == name && m.GetParameters().Length == arguments.Length);
        method.Invoke(target, arguments);
    }

    /// <summary>
    /// ML.NET finds the loader of a saved entry through a <c>LoadableClass</c> attribute on an assembly; that attribute and the
    /// load context are internal, so the attribute is put on a small dynamic assembly whose loader forwards to <see cref="Load"/>.
    /// </summary>
    private static AssemblyBuilder CreateLoaderAssembly()
    {
        var contextType = Core.GetType("Microsoft.ML.ModelLoadContext", throwOnError: true)!;
        var signatureType = Core.GetType("Microsoft.ML.SignatureLoadModel", throwOnError: true)!;
        var attributeType = Core.GetType("Microsoft.ML.LoadableClassAttribute", throwOnError: true)!;
        var assembly = AssemblyBuilder.DefineDynamicAssembly(new AssemblyName("Petals.ML.ModelLoaders"), AssemblyBuilderAccess.Run);
        var module = assembly.DefineDynamicModule("Petals.ML.ModelLoaders");
        var builder = module.DefineType("Petals.ML.ModelLoaders.PetalsTransformLoader", TypeAttributes.Public | TypeAttributes.Abstract | TypeAttributes.Sealed | TypeAttributes.Class);
        var create = builder.DefineMethod("Create", MethodAttributes.Public | MethodAttributes.Static, typeof(ITransformer), [typeof(IHostEnvironment), contextType]);
        var callbackType = typeof(Func<IHostEnvironment, object, ITransformer>);
        var callback = builder.DefineField("Callback", callbackType, FieldAttributes.Public | FieldAttributes.Static);
        var il = create.GetILGenerator();
        il.Emit(OpCodes.Ldsfld, callback);
        il.Emit(OpCodes.Ldarg_0);
        il.Emit(OpCodes.Ldarg_1);
        il.Emit(OpCodes.Callvirt, callbackType.GetMethod("Invoke")!);
        il.Emit(OpCodes.Ret);
        var loader = builder.CreateType();
        loader.GetField("Callback")!.SetValue(null, new Func<IHostEnvironment, object, ITransformer>(LoadEntry));
        var constructor = attributeType.GetConstructor([typeof(Type), typeof(Type), typeof(Type), typeof(Type), typeof(string), typeof(string[])])!;
        foreach (var (name, signature) in new[] { ("Petals embedding", EmbedLoaderSignature), ("Petals generation", GenerateLoaderSignature) })
        {
            assembly.SetCustomAttribute(new CustomAttributeBuilder(constructor, [typeof(ITransformer), loader, null, signatureType, name, new[] { signature }]));
        }

        return assembly;
    }

    /// <summary>Called by the dynamic loader with ML.NET's (internal) <c>ModelLoadContext</c>.</summary>
    private static ITransformer LoadEntry(IHostEnvironment env, object ctx)
    {
        ArgumentNullException.ThrowIfNull(env);
        ArgumentNullException.ThrowIfNull(ctx);
        var reader = (BinaryReader)ctx.GetType().GetField("Reader", BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic)!.GetValue(ctx)!;
        var load = Load ?? throw new InvalidOperationException("The Petals transforms are not initialised.");
        return load(env, reader);
    }
}
