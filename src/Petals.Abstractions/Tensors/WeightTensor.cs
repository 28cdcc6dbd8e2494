namespace Petals.Tensors;

/// <summary>
/// A weight tensor: its descriptor and its raw little-endian bytes. The bytes may be a view of a
/// memory-mapped file, valid as long as the <see cref="Models.IModelWeights"/> that produced it is not disposed.
/// </summary>
/// <param name="Descriptor">Name, dtype and shape.</param>
/// <param name="Data">Exactly <see cref="TensorDescriptor.ByteSize"/> bytes.</param>
public sealed record WeightTensor(TensorDescriptor Descriptor, ReadOnlyMemory<byte> Data);
