using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Petals.Backends.Cpu.Kernels;

/// <summary>How to widen weight elements of one storage type to fp32 in registers.</summary>
internal unsafe interface IWeightFormat
{
    /// <summary>Bytes per element.</summary>
    static abstract int ElementSize { get; }

    /// <summary>Loads 16 elements starting at <paramref name="p"/> as fp32.</summary>
    static abstract Vector512<float> Load16(byte* p);

    /// <summary>Loads 8 elements starting at <paramref name="p"/> as fp32.</summary>
    static abstract Vector256<float> Load8(byte* p);

    /// <summary>Loads one element at <paramref name="p"/> as fp32.</summary>
    static abstract float Load1(byte* p);
}

/// <summary>IEEE binary32 weights.</summary>
internal readonly unsafe struct F32Format : IWeightFormat
{
    public static int ElementSize => 4;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Load16(byte* p) => Vector512.Load((float*)p);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load8(byte* p) => Vector256.Load((float*)p);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Load1(byte* p) => Unsafe.ReadUnaligned<float>(p);
}

/// <summary>bfloat16 weights: the upper half of a binary32, widened by a 16-bit shift.</summary>
internal readonly unsafe struct Bf16Format : IWeightFormat
{
    public static int ElementSize => 2;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Load16(byte* p) =>
        Vector512.ShiftLeft(Vector512.WidenLower(Vector256.Load((ushort*)p).ToVector512Unsafe()), 16).AsSingle();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load8(byte* p) =>
        Vector256.ShiftLeft(Vector256.WidenLower(Vector128.Load((ushort*)p).ToVector256Unsafe()), 16).AsSingle();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Load1(byte* p) => BitConverter.Int32BitsToSingle(Unsafe.ReadUnaligned<ushort>(p) << 16);
}

/// <summary>
/// IEEE binary16 weights, widened exactly in registers: the exponent and mantissa are moved into binary32 position
/// and rebased by a multiplication by 2^112 (which also normalizes subnormals); infinities and NaNs get the full exponent.
/// </summary>
internal readonly unsafe struct F16Format : IWeightFormat
{
    public static int ElementSize => 2;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Load16(byte* p)
    {
        var h = Vector512.WidenLower(Vector256.Load((ushort*)p).ToVector512Unsafe());
        var magnitude = Vector512.ShiftLeft(h & Vector512.Create(0x7fffu), 13);
        var scaled = magnitude.AsSingle() * Vector512.Create(5.192296858534828e33f);
        var special = Vector512.Equals(h & Vector512.Create(0x7c00u), Vector512.Create(0x7c00u));
        var value = Vector512.ConditionalSelect(special.AsSingle(), (magnitude | Vector512.Create(0x7f800000u)).AsSingle(), scaled);
        return (value.AsUInt32() | Vector512.ShiftLeft(h & Vector512.Create(0x8000u), 16)).AsSingle();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load8(byte* p)
    {
        var h = Vector256.WidenLower(Vector128.Load((ushort*)p).ToVector256Unsafe());
        var magnitude = Vector256.ShiftLeft(h & Vector256.Create(0x7fffu), 13);
        var scaled = magnitude.AsSingle() * Vector256.Create(5.192296858534828e33f);
        var special = Vector256.Equals(h & Vector256.Create(0x7c00u), Vector256.Create(0x7c00u));
        var value = Vector256.ConditionalSelect(special.AsSingle(), (magnitude | Vector256.Create(0x7f800000u)).AsSingle(), scaled);
        return (value.AsUInt32() | Vector256.ShiftLeft(h & Vector256.Create(0x8000u), 16)).AsSingle();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Load1(byte* p) => (float)Unsafe.ReadUnaligned<Half>(p);
}

/// <summary>
/// IEEE binary16 weights known to be finite (checked when the layer is created): sign-extended to 32 bits, shifted into
/// binary32 position with the sign's copies in the exponent's top bits masked off, and rebased by 2^112 (which also
/// normalizes subnormals). Four operations per vector instead of <see cref="F16Format"/>'s eleven; exact for every finite
/// value, wrong for infinities and NaNs (which would read as finite values of 2^16 or more).
/// </summary>
internal readonly unsafe struct F16FiniteFormat : IWeightFormat
{
    public static int ElementSize => 2;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Load16(byte* p)
    {
        var h = Vector512.WidenLower(Vector256.Load((short*)p).ToVector512Unsafe());
        return (Vector512.ShiftLeft(h, 13) & Vector512.Create(unchecked((int)0x8FFFE000))).AsSingle() * Vector512.Create(5.192296858534828e33f);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load8(byte* p)
    {
        var h = Vector256.WidenLower(Vector128.Load((short*)p).ToVector256Unsafe());
        return (Vector256.ShiftLeft(h, 13) & Vector256.Create(unchecked((int)0x8FFFE000))).AsSingle() * Vector256.Create(5.192296858534828e33f);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Load1(byte* p) => (float)Unsafe.ReadUnaligned<Half>(p);

    /// <summary>Whether every value of the binary16 data is finite (no exponent field of all ones).</summary>
    public static bool AllFinite(ReadOnlySpan<byte> data)
    {
        var values = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, ushort>(data);
        var i = 0;
        var any = Vector256<ushort>.Zero;
        var exponent = Vector256.Create((ushort)0x7c00);
        for (; i + 16 <= values.Length; i += 16)
        {
            var v = Vector256.Create(values.Slice(i, 16));
            any |= Vector256.Equals(v & exponent, exponent);
        }

        if (any != Vector256<ushort>.Zero)
        {
            return false;
        }

        for (; i < values.Length; i++)
        {
            if ((values[i] & 0x7c00) == 0x7c00)
            {
                return false;
            }
        }

        return true;
    }
}
