using System.Text;
using Petals.Client;
using Petals.Execution;
using Petals.Models;
using Petals.Protocol;
using Petals.Server;
using Petals.Tensors;
using Petals.Tests.Client;
using Petals.Tests.Client.Faults;
using Petals.Tests.Generation;

namespace Petals.Tests.Protocol;

/// <summary>
/// The weight quantization in the wire protocol's info (protocol 1.2): what a server states from its executor, how it is
/// encoded after the stated error, and what is refused.
/// </summary>
public sealed class InfoQuantizationTests
{
    private static readonly InfoResponse Info = new(1, 2, "m", new BlockRange(0, 2), 16, TensorDType.F32, WireCodecs.All, 10, 1 << 20, 1 << 20, 8, 8) { StatedError = 1e-4f };

    [Fact]
    public void Servers_state_their_executors_quantization_from_protocol_1_2_on_and_none_when_it_reports_nothing()
    {
        using var model = new TinyModel(2);
        using var executor = new WeightsInfoExecutor(RandomModelFixture.Factory.Create(model.Weights, new BlockRange(0, 2)), "q4_k+q6_k");
        var server = new BlockServer(executor, new BlockServerOptions { Blocks = new(0, 2), ModelId = "m" });
        Assert.Equal("q4_k+q6_k", server.Quantization);
        Assert.Equal(3, ConnectionPreamble.CurrentVersionMinor);
        Assert.Equal("q4_k+q6_k", server.CreateInfo().Quantization);
        Assert.Equal("q4_k+q6_k", server.CreateInfo(2).Quantization);
        Assert.Null(server.CreateInfo(1).Quantization); // a 1.1 client would refuse the trailing string
        Assert.NotNull(server.CreateInfo(1).StatedError);

        using var plain = RandomModelFixture.Factory.Create(model.Weights, new BlockRange(0, 2));
        Assert.Equal("none", new BlockServer(plain, new BlockServerOptions { Blocks = new(0, 2), ModelId = "m" }).CreateInfo().Quantization);
    }

    [Fact]
    public void An_executor_reporting_a_quantization_that_cannot_be_announced_is_refused_when_the_server_is_made()
    {
        using var model = new TinyModel(2);
        using var executor = new WeightsInfoExecutor(RandomModelFixture.Factory.Create(model.Weights, new BlockRange(0, 2)), "Q4 K");
        var error = Assert.Throws<ArgumentException>(() => new BlockServer(executor, new BlockServerOptions { Blocks = new(0, 2), ModelId = "m" }));
        Assert.Contains("weight quantization that cannot be announced", error.Message, StringComparison.Ordinal);
        Assert.Contains("'Q'", error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("none")]
    [InlineData("nf4")]
    [InlineData("q4_k+q6_k")]
    public void The_quantization_round_trips_after_the_stated_error(string quantization)
    {
        var bytes = ProtocolTestKit.Encode(ProtocolLimits.Default, [(1u, Info with { Quantization = quantization })]);
        using var reader = new ProtocolReader(ProtocolTestKit.Filled(bytes), ProtocolLimits.Default);
        var decoded = Assert.IsType<InfoResponse>(ProtocolTestKit.ReadNow(reader)!.Value.Message);
        Assert.Equal(quantization, decoded.Quantization);
        Assert.Equal(1e-4f, decoded.StatedError);

        // Exactly a u16 length and the text follow the 1.1 encoding.
        var older = ProtocolTestKit.Encode(ProtocolLimits.Default, [(1u, Info)]);
        Assert.Equal(older.Length + 2 + quantization.Length, bytes.Length);
        Assert.Equal(quantization, Encoding.ASCII.GetString(bytes, bytes.Length - quantization.Length, quantization.Length));
    }

    [Fact]
    public void Bad_quantizations_are_refused_on_both_ends()
    {
        Assert.Throws<InvalidOperationException>(() => ProtocolTestKit.Encode(ProtocolLimits.Default, [(1u, Info with { Quantization = "NF4" })]));
        Assert.Throws<InvalidOperationException>(() => ProtocolTestKit.Encode(ProtocolLimits.Default, [(1u, Info with { StatedError = null, Quantization = "nf4" })]));

        // A valid frame whose text is patched to upper case.
        var bytes = ProtocolTestKit.Encode(ProtocolLimits.Default, [(1u, Info with { Quantization = "nf4" })]);
        bytes[^3] = (byte)'N';
        using var reader = new ProtocolReader(ProtocolTestKit.Filled(bytes), ProtocolLimits.Default);
        var error = Assert.Throws<ProtocolException>(() => ProtocolTestKit.ReadNow(reader));
        Assert.Equal(ProtocolErrorCode.MalformedFrame, error.Code);
        Assert.Contains("quantization", error.Message, StringComparison.Ordinal);
        Assert.Contains("'N'", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void The_throughput_cache_key_holds_the_quantization_and_none_keeps_the_older_key()
    {
        Assert.Equal("m|blocks=2|executor=cpu|dtype=F32|hw=x", ThroughputCache.Key("m", 2, "cpu", "F32", "x"));
        Assert.Equal(ThroughputCache.Key("m", 2, "cpu", "F32", "x"), ThroughputCache.Key("m", 2, "cpu", "F32", "x", "none"));
        Assert.Equal("m|blocks=2|executor=cpu|dtype=F32|quant=nf4|hw=x", ThroughputCache.Key("m", 2, "cpu", "F32", "x", "nf4"));
        Assert.NotEqual(ThroughputCache.Key("m", 2, "cpu", "F32", "x", "int8"), ThroughputCache.Key("m", 2, "cpu", "F32", "x", "nf4"));

        var options = new ThroughputMeterOptions { Quantization = "NF4" };
        var error = Assert.Throws<ArgumentOutOfRangeException>(options.Validate);
        Assert.Equal(nameof(ThroughputMeterOptions.Quantization), error.ParamName);
    }

    [Fact]
    public void A_required_quantization_that_no_server_could_announce_is_refused_by_the_options()
    {
        new RemoteSequenceOptions { RequiredQuantization = "q4_k+q6_k" }.Validate();
        foreach (var bad in new[] { "", "Int8", "q4 k" })
        {
            var error = Assert.Throws<ArgumentException>(() => new RemoteSequenceOptions { RequiredQuantization = bad }.Validate());
            Assert.Equal(nameof(RemoteSequenceOptions.RequiredQuantization), error.ParamName);
        }
    }
}
