using FsCheck;
using FsCheck.Fluent;
using static Petals.Discovery.Tests.DhtTestKit;

namespace Petals.Discovery.Tests.Records;

public sealed class RecordValidatorTests
{
    private static readonly RecordLimits Limits = new() { MaxKeyBytes = 64, MaxValueBytes = 256, MaxTimeToLive = TimeSpan.FromHours(1) };
    private static readonly RecordValidator Validator = new(Limits);
    private static readonly DateTimeOffset Now = Start;

    private static DhtRecord Valid(int signer = 0, string key = "llama.3", byte[]? value = null, TimeSpan? ttl = null) =>
        Signed(Identities[signer], key, value ?? [1, 2, 3], Now + (ttl ?? TimeSpan.FromMinutes(5)));

    private static void AssertRejected(RecordRejectionReason reason, DhtRecord record, DateTimeOffset? now = null)
    {
        var verdict = Validator.Validate(record, now ?? Now);
        Assert.False(verdict.IsAccepted);
        Assert.Equal(reason, verdict.Reason);
        Assert.Contains(record.SubKey.ToString(), verdict.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Signed_records_round_trip_for_any_key_and_value()
    {
        Prop.ForAll(Gen.Choose(0, int.MaxValue).ToArbitrary(), seed =>
        {
            var random = new Random(seed);
            var signer = Identities[random.Next(Identities.Length)];
            var record = Signed(signer, RandomKey(random), RandomBytes(random, random.Next(0, 257)), Now + TimeSpan.FromMilliseconds(random.Next(1, 3_600_000)));
            Assert.Equal(signer.NodeId, record.SubKey);
            Assert.True(record.IsSigned);
            Assert.Equal(RecordValidationResult.Accepted, Validator.Validate(record, Now));
        }).Check(Config.QuickThrowOnFailure.WithMaxTest(100));
    }

    [Fact]
    public void Unsigned_records_are_rejected()
    {
        var valid = Valid();
        AssertRejected(RecordRejectionReason.NotSigned, valid.WithSignature(valid.PublicKey, ReadOnlyMemory<byte>.Empty));
        AssertRejected(RecordRejectionReason.NotSigned, valid.WithSignature(ReadOnlyMemory<byte>.Empty, valid.Signature));
        AssertRejected(RecordRejectionReason.NotSigned, new DhtRecord("k", Identities[0].NodeId, new byte[] { 1 }, Now.AddMinutes(1), default, default));
    }

    [Fact]
    public void Forged_records_are_rejected()
    {
        var valid = Valid();
        static DhtRecord Rebuild(DhtRecord r, string? key = null, byte[]? value = null, DateTimeOffset? expires = null) =>
            new(key ?? r.Key, r.SubKey, value ?? r.Value, expires ?? r.ExpiresAt, r.PublicKey, r.Signature);

        // Any field changed after signing breaks the signature.
        AssertRejected(RecordRejectionReason.ForgedSignature, Rebuild(valid, value: [1, 2, 4]));
        AssertRejected(RecordRejectionReason.ForgedSignature, Rebuild(valid, key: "llama.4"));
        AssertRejected(RecordRejectionReason.ForgedSignature, Rebuild(valid, expires: valid.ExpiresAt.AddMilliseconds(1)));
        var signature = valid.Signature.ToArray();
        signature[10] ^= 0x40;
        AssertRejected(RecordRejectionReason.ForgedSignature, valid.WithSignature(valid.PublicKey, signature));

        // A signature over the bare fields (no domain prefix) does not pass: signatures are domain-separated.
        var payload = valid.GetSignedPayload();
        var bare = Identities[0].Sign(payload.AsSpan("petals-dht-record-v1\0".Length));
        AssertRejected(RecordRejectionReason.ForgedSignature, valid.WithSignature(valid.PublicKey, bare));
    }

    [Fact]
    public void A_peer_cannot_write_under_another_peers_sub_key()
    {
        var victim = Identities[1].NodeId;
        var attacker = Identities[0];

        // The attacker signs a record claiming the victim's sub-key with its own key: the sub-key is not its id.
        var claim = new DhtRecord("llama.3", victim, new byte[] { 9 }, Now.AddMinutes(5), attacker.PublicKey, default);
        var signed = claim.WithSignature(attacker.PublicKey, attacker.Sign(claim.GetSignedPayload()));
        AssertRejected(RecordRejectionReason.SubKeyMismatch, signed);

        // Presenting the victim's public key with the attacker's signature is a forgery.
        var stolenKey = new DhtRecord("llama.3", victim, new byte[] { 9 }, Now.AddMinutes(5), Identities[1].PublicKey, default);
        AssertRejected(RecordRejectionReason.ForgedSignature, stolenKey.WithSignature(Identities[1].PublicKey, attacker.Sign(stolenKey.GetSignedPayload())));
    }

    [Fact]
    public void Malformed_public_keys_are_rejected()
    {
        var valid = Valid();
        AssertRejected(RecordRejectionReason.MalformedPublicKey, valid.WithSignature(new byte[91], valid.Signature));
        AssertRejected(RecordRejectionReason.MalformedPublicKey, valid.WithSignature(valid.PublicKey[..60], valid.Signature));
    }

    [Fact]
    public void Expired_and_future_dated_records_are_rejected()
    {
        var record = Valid(ttl: TimeSpan.FromMinutes(5));
        Assert.True(Validator.Validate(record, record.ExpiresAt.AddMilliseconds(-1)).IsAccepted);
        AssertRejected(RecordRejectionReason.Expired, record, record.ExpiresAt);
        AssertRejected(RecordRejectionReason.Expired, record, record.ExpiresAt.AddDays(1));

        var far = Valid(ttl: Limits.MaxTimeToLive + TimeSpan.FromMilliseconds(1));
        AssertRejected(RecordRejectionReason.ExpirationTooFar, far);
        Assert.True(Validator.Validate(Valid(ttl: Limits.MaxTimeToLive), Now).IsAccepted);

        // The validator's own clock is used when no time is given.
        var clock = new Petals.Testing.Time.ManualTimeProvider(Now);
        var timed = new RecordValidator(Limits, clock);
        Assert.True(timed.Validate(record).IsAccepted);
        clock.Advance(TimeSpan.FromMinutes(5));
        Assert.Equal(RecordRejectionReason.Expired, timed.Validate(record).Reason);
    }

    [Fact]
    public void Oversized_keys_and_values_are_rejected()
    {
        AssertRejected(RecordRejectionReason.ValueTooLarge, Valid(value: new byte[Limits.MaxValueBytes + 1]));
        Assert.True(Validator.Validate(Valid(value: new byte[Limits.MaxValueBytes]), Now).IsAccepted);
        AssertRejected(RecordRejectionReason.KeyTooLarge, Valid(key: new string('k', Limits.MaxKeyBytes + 1)));

        // The key limit counts UTF-8 bytes, not characters.
        AssertRejected(RecordRejectionReason.KeyTooLarge, Valid(key: new string('é', (Limits.MaxKeyBytes / 2) + 1)));
        Assert.True(Validator.Validate(Valid(key: new string('é', Limits.MaxKeyBytes / 2)), Now).IsAccepted);
    }

    [Fact]
    public void Only_a_later_expiration_replaces_a_stored_sub_record()
    {
        var stored = Valid(ttl: TimeSpan.FromMinutes(10));
        var older = Valid(ttl: TimeSpan.FromMinutes(9), value: [7]);
        var sameTimeOtherValue = Signed(Identities[0], stored.Key, [7], stored.ExpiresAt);
        var newer = Valid(ttl: TimeSpan.FromMinutes(11), value: [7]);

        Assert.Equal(RecordRejectionReason.Replayed, RecordValidator.CheckReplacement(stored, older).Reason);
        Assert.Equal(RecordRejectionReason.Replayed, RecordValidator.CheckReplacement(stored, sameTimeOtherValue).Reason);
        Assert.True(RecordValidator.CheckReplacement(stored, stored).IsAccepted);
        Assert.True(RecordValidator.CheckReplacement(stored, newer).IsAccepted);
        Assert.True(RecordValidator.CheckReplacement(null, older).IsAccepted);
        Assert.Throws<ArgumentException>(() => RecordValidator.CheckReplacement(stored, Valid(signer: 1)));
    }

    [Fact]
    public void Record_construction_checks_its_arguments()
    {
        var id = Identities[0].NodeId;
        Assert.Throws<ArgumentException>(() => new DhtRecord(string.Empty, id, default, Now, default, default));
        Assert.Throws<ArgumentException>(() => new DhtRecord("bad\uD800", id, default, Now, default, default));
        Assert.Throws<ArgumentException>(() => new DhtRecord("k", id, default, DateTimeOffset.UnixEpoch.AddMilliseconds(-1), default, default));
        Assert.Throws<ArgumentException>(() => new DhtRecord("k", id, default, Now, new byte[DhtRecord.MaxPublicKeyBytes + 1], default));
        Assert.Throws<ArgumentException>(() => new DhtRecord("k", id, default, Now, default, new byte[DhtRecord.MaxSignatureBytes + 1]));
        Assert.Throws<ArgumentOutOfRangeException>(() => new RecordValidator(new RecordLimits { MaxKeyBytes = 0 }));
    }

    [Fact]
    public void Verdicts_and_record_descriptions_are_precise()
    {
        Assert.Throws<ArgumentException>(() => RecordValidationResult.Reject(RecordRejectionReason.None, "x"));
        Assert.Equal("accepted", RecordValidationResult.Accepted.ToString());
        var rejected = RecordValidationResult.Reject(RecordRejectionReason.Expired, "too late");
        Assert.Equal("Expired: too late", rejected.ToString());

        var record = Valid(value: [0xAB, 0xCD]);
        Assert.Equal(record.KeyByteCount + 2 + record.PublicKey.Length + PeerIdentity.SignatureSize + DhtRecord.StorageOverheadBytes, record.StorageSize);
        Assert.Contains("2 value bytes, signed", record.ToString(), StringComparison.Ordinal);
        Assert.DoesNotContain("abcd", record.ToString(), StringComparison.OrdinalIgnoreCase);
        Assert.Equal(NodeId.FromKey("llama.3"), record.KeyId);
    }
}
