using Petals.Client;
using Petals.Health;
using Petals.Protocol;
using Petals.Transport;

namespace Petals.Tests.Health;

/// <summary>Which exceptions of a call mean the server failed, and how.</summary>
public sealed class PeerFailureClassifierTests
{
    /// <summary>Each server failure by name (theory data stays serializable), with its kind during a call and while connecting.</summary>
    private static readonly (string Error, string DuringCall, string Connecting)[] Table =
    [
        ("chain mismatch", "mismatch", "mismatch"),
        ("unresponsive", "unresponsive", "unresponsive"),
        ("timeout", "timeout", "unreachable"),
        ("fatal protocol", "connection_lost", "unreachable"),
        ("fatal remote protocol", "connection_lost", "unreachable"),
        ("remote error", "error_answer", "error_answer"),
        ("malformed", "malformed_answer", "mismatch"),
        ("transport", "connection_lost", "unreachable"),
        ("io", "connection_lost", "unreachable"),
        ("end of stream", "connection_lost", "unreachable"),
        ("disposed", "connection_lost", "unreachable"),
    ];

    public static TheoryData<string, string, string> Kinds { get; } = new(Table);

    public static TheoryData<string> ServerFailures { get; } = new(Table.Select(row => row.Error));

    /// <summary>Exceptions that are not the server's: bugs on this side.</summary>
    public static TheoryData<string> NotTheServers { get; } = new("argument", "invalid operation", "key not found");

    [Theory]
    [MemberData(nameof(Kinds))]
    public void Each_failure_of_a_server_has_its_kind_during_a_call_and_while_connecting(string error, string duringCall, string connecting)
    {
        Assert.Equal(duringCall, PeerFailureClassifier.Classify(Error(error), CancellationToken.None)?.Value);
        Assert.Equal(connecting, PeerFailureClassifier.Classify(Error(error), CancellationToken.None, connecting: true)?.Value);
    }

    [Theory]
    [MemberData(nameof(ServerFailures))]
    public void Nothing_is_the_servers_failure_once_the_caller_canceled(string error)
    {
        using var canceled = new CancellationTokenSource();
        canceled.Cancel();
        Assert.Null(PeerFailureClassifier.Classify(Error(error), canceled.Token));
        Assert.Null(PeerFailureClassifier.Classify(Error(error), canceled.Token, connecting: true));
    }

    [Theory]
    [MemberData(nameof(NotTheServers))]
    public void An_exception_that_is_not_the_servers_is_not_classified(string error)
    {
        Assert.Null(PeerFailureClassifier.Classify(Error(error), CancellationToken.None));
        Assert.Null(PeerFailureClassifier.Classify(Error(error), CancellationToken.None, connecting: true));
    }

    [Fact]
    public void A_missing_exception_is_refused()
    {
        Assert.Equal("error", Assert.Throws<ArgumentNullException>(() => PeerFailureClassifier.Classify(null!, CancellationToken.None)).ParamName);
    }

    private static Exception Error(string name) => name switch
    {
        "chain mismatch" => new RemoteChainException("test: announced as another peer"),
        "unresponsive" => new PeerUnresponsiveException("test: silent for 5 s"),
        "timeout" => new TimeoutException("test: no answer"),
        "fatal protocol" => new ProtocolException(ProtocolErrorCode.Internal, "test: corrupt frame") { IsConnectionFatal = true },
        "fatal remote protocol" => new ProtocolException(ProtocolErrorCode.Internal, "test: the server closed") { IsConnectionFatal = true, IsRemoteError = true },
        "remote error" => new ProtocolException(ProtocolErrorCode.Internal, "test: the step failed") { IsRemoteError = true },
        "malformed" => new ProtocolException(ProtocolErrorCode.Internal, "test: wrong shape"),
        "transport" => new TransportException(TransportErrorKind.Aborted, "test: reset"),
        "io" => new IOException("test: broken pipe"),
        "end of stream" => new EndOfStreamException("test: closed"),
        "disposed" => new ObjectDisposedException("test: the stream"),
        "argument" => new ArgumentException("test: a bad argument"),
        "invalid operation" => new InvalidOperationException("test: a bad state"),
        "key not found" => new KeyNotFoundException("test: a bug"),
        _ => throw new ArgumentOutOfRangeException(nameof(name), name, "no such error"),
    };
}
