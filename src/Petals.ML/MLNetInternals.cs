using System.Reflection;
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
    private static readonly ConditionalWeakTable<ComponentCatalog, object> Registered = new();

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

    /// <summary>Registers the loaders of the Petals transforms with <paramref name="catalog"/> (once per catalog).</summary>
    internal static void RegisterLoaders(ComponentCatalog catalog)
    {
        lock (Registered)
        {
            if (Registered.TryGetValue(catalog, out _))
            {
                return;
            }

            AddLoaders(catalog);
            Registered.Add(catalog, catalog);
        }
    }

    private static void Invoke(object target, string name, object?[] arguments)
    {
        var method = target.GetType().GetMethods(BindingFlags.Instance | BindingFlags.NonPublic | BindingFlags.Public)
            .Single(m => m.Name == name && m.GetParameters().Length == arguments.Length);
        method.Invoke(target, arguments);
    }

    /// <summary>
    /// Adds the loaders of the Petals transforms to <paramref name="catalog"/>. ML.NET registers loaders from
    /// <c>LoadableClass</c> attributes, but that attribute, the load context and the loader signature are internal (and the
    /// runtime does not instantiate an attribute whose constructor the decorated assembly cannot see), so the class infos
    /// are built and added the way <c>ComponentCatalog.RegisterAssembly</c> adds them, with <see cref="LoadEntry"/> as the
    /// create method (ML.NET invokes it with the environment and its <c>ModelLoadContext</c>).
    /// </summary>
    private static void AddLoaders(ComponentCatalog catalog)
    {
        const BindingFlags Instance = BindingFlags.Instance | BindingFlags.NonPublic | BindingFlags.Public;
        var signatureType = Core.GetType("Microsoft.ML.SignatureLoadModel", throwOnError: true)!;
        var attributeType = Core.GetType("Microsoft.ML.LoadableClassAttribute", throwOnError: true)!;
        var attributeBase = Core.GetType("Microsoft.ML.LoadableClassAttributeBase", throwOnError: true)!;
        var infoType = typeof(ComponentCatalog).GetNestedType("LoadableClassInfo", BindingFlags.NonPublic | BindingFlags.Public)
            ?? throw new InvalidOperationException("ComponentCatalog.LoadableClassInfo is missing.");
        var infoConstructor = infoType.GetConstructor(Instance, [attributeBase, typeof(MethodInfo), typeof(ConstructorInfo), typeof(MethodInfo), typeof(bool)])
            ?? throw new InvalidOperationException("ComponentCatalog.LoadableClassInfo has no constructor of the expected shape.");
        var addClass = typeof(ComponentCatalog).GetMethod("AddClass", Instance, [infoType, typeof(string[]), typeof(bool)])
            ?? throw new InvalidOperationException("ComponentCatalog.AddClass is missing.");
        var gate = typeof(ComponentCatalog).GetField("_lock", Instance)?.GetValue(catalog) ?? catalog;
        var create = typeof(MLNetInternals).GetMethod(nameof(LoadEntry), BindingFlags.Static | BindingFlags.NonPublic)!;
        lock (gate)
        {
            foreach (var (name, signature) in new[] { ("Petals embedding", EmbedLoaderSignature), ("Petals generation", GenerateLoaderSignature) })
            {
                var attribute = Activator.CreateInstance(attributeType, [typeof(ITransformer), typeof(MLNetInternals), null, signatureType, name, new[] { signature }]);
                var info = infoConstructor.Invoke([attribute, null, null, create, true]);
                addClass.Invoke(catalog, [info, new[] { signature }, false]);
            }
        }
    }

    /// <summary>Called by ML.NET's catalog with the environment and its (internal) <c>ModelLoadContext</c>.</summary>
    private static ITransformer LoadEntry(IHostEnvironment env, object ctx)
    {
        ArgumentNullException.ThrowIfNull(env);
        ArgumentNullException.ThrowIfNull(ctx);
        var reader = (BinaryReader)ctx.GetType().GetField("Reader", BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic)!.GetValue(ctx)!;
        return PetalsTextCatalogExtensions.LoadTransformer(env, reader);
    }
}
