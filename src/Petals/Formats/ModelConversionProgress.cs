namespace Petals.Formats;

/// <summary>Progress of writing a model, reported after each tensor.</summary>
/// <param name="TensorName">The tensor just written.</param>
/// <param name="TensorsDone">Tensors written so far.</param>
/// <param name="TensorsTotal">Tensors to write in all.</param>
/// <param name="BytesDone">Bytes of tensor data written so far.</param>
/// <param name="BytesTotal">Bytes of tensor data to write in all.</param>
public sealed record ModelConversionProgress(string TensorName, int TensorsDone, int TensorsTotal, long BytesDone, long BytesTotal);
