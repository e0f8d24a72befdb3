"""Tests for connector.web.receive.signature: HS256 and ES256 verification, pure functions."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from connector.core.errors import BadSignature
from connector.web.receive import signature
from connector.web.receive.signature import (
    KeysUnavailable,
    VerificationPolicy,
    verify_es256,
    verify_hs256,
    verify_push,
)
from tests.support.helpers import OLD_SECRET, SECRET, dt_body, sign

# Known-answer vector, computed independently with hmac/hashlib (not PyJWT):
# body and claims shaped like DT's signed temperature sample; exp = iat + 3600.
KAT_SECRET = b"kat-secret-for-tests-only-0123456789"
KAT_BODY = (
    b'{"event":{"eventId":"cpbg96qngr7ai7ldarrg","targetName":"projects/c0md3mm0c7pet3cfe9f0/devices/'
    b'bchonod7rihjtvdmd2vg","eventType":"temperature","data":{"temperature":{"value":27,"updateTime":'
    b'"2024-05-29T10:34:03.970415Z","samples":[{"value":27,"sampleTime":"2024-05-29T10:34:03.970415Z"}],'
    b'"isBackfilled":false}},"timestamp":"2024-05-29T10:34:03.970415Z"},"labels":{"name":"test temp"},'
    b'"metadata":{"deviceId":"bchonod7rihjtvdmd2vg","projectId":"c0md3mm0c7pet3cfe9f0","deviceType":'
    b'"temperature","productNumber":""}}'
)
KAT_TOKEN = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
    "eyJjaGVja3N1bSI6IjgzNTY4N2MyM2Q0YzY1NWQ0ZDVmNjg0NzgwNjlmMTA3NjIyOWZjY2MiLCJjaGVja3N1bV9zaGEyNTYiOiJj"
    "NTdlNjU3ZjM2YjA4OWZlNTc2MjNkNmRiZWZiNmMzNTc2N2YyZmU4ZDY3Zjk1ZWY2MzI0NGIwZGI3OGJkZTliIiwiZXhwIjoxNzE2"
    "OTgyNDQzLCJpYXQiOjE3MTY5Nzg4NDMsImp0aSI6ImNwYmc5NnFuZ3I3YWk3bGRhcnMwIn0."
    "3UoGsTNyZVaMjU1CMCuTWx_WrnmsdJ65Ivwvfts9-V4"
)
KAT_IAT = 1716978843
KAT_EXP = 1716982443
ISSUER = "https://identity.example.test/data-connector"
ORG = "org-123"


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def forge(header: dict[str, Any], claims: dict[str, Any], key: bytes = b"") -> str:
    """A token with an arbitrary header, HMAC-signed with ``key``."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    mac = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


def hs(body: bytes, token: str, *, now: float, secrets: tuple[bytes, ...] = (SECRET.encode(),), leeway_s: float = 60):
    return verify_hs256(body, token, secrets=secrets, now=now, leeway_s=leeway_s)


class TestKnownAnswer:
    def test_vector_verifies_and_returns_claims(self):
        claims = hs(KAT_BODY, KAT_TOKEN, now=KAT_IAT + 5, secrets=(KAT_SECRET,))
        assert claims["checksum_sha256"] == hashlib.sha256(KAT_BODY).hexdigest()
        assert claims["exp"] == KAT_EXP

    def test_vector_checksums_are_of_the_raw_body(self):
        payload = json.loads(base64.urlsafe_b64decode(KAT_TOKEN.split(".")[1] + "=="))
        assert payload["checksum_sha256"] == "c57e657f36b089fe57623d6dbefb6c35767f2fe8d67f95ef63244b0db78bde9b"
        assert payload["checksum"] == "835687c23d4c655d4d5f68478069f1076229fccc"

    def test_reserialised_body_does_not_verify(self):
        reserialised = json.dumps(json.loads(KAT_BODY)).encode()  # adds spaces: a different body
        with pytest.raises(BadSignature) as info:
            hs(reserialised, KAT_TOKEN, now=KAT_IAT, secrets=(KAT_SECRET,))
        assert info.value.reason == "checksum-mismatch"

    def test_wrong_secret(self):
        with pytest.raises(BadSignature) as info:
            hs(KAT_BODY, KAT_TOKEN, now=KAT_IAT, secrets=(b"another-secret-0123456789abcdef0123",))
        assert info.value.reason == "signature-invalid"

    def test_expiry_honours_leeway(self):
        hs(KAT_BODY, KAT_TOKEN, now=KAT_EXP + 59, secrets=(KAT_SECRET,), leeway_s=60)
        with pytest.raises(BadSignature) as info:
            hs(KAT_BODY, KAT_TOKEN, now=KAT_EXP + 61, secrets=(KAT_SECRET,), leeway_s=60)
        assert info.value.reason == "token-expired"


class TestHs256:
    body = dt_body()

    def test_pyjwt_made_token_verifies(self):
        now = time.time()
        assert hs(self.body, sign(self.body, now=now), now=now)["jti"]

    def test_rotation_any_secret_verifies(self):
        now = time.time()
        secrets = (SECRET.encode(), OLD_SECRET.encode())
        hs(self.body, sign(self.body, OLD_SECRET, now=now), now=now, secrets=secrets)
        hs(self.body, sign(self.body, SECRET, now=now), now=now, secrets=secrets)
        with pytest.raises(BadSignature):
            hs(self.body, sign(self.body, OLD_SECRET, now=now), now=now, secrets=(SECRET.encode(),))

    @pytest.mark.parametrize("alg", ["none", "HS384", "HS512", "RS256", "ES256", None])
    def test_algorithm_is_pinned(self, alg):
        now = time.time()
        header = {"typ": "JWT"} if alg is None else {"alg": alg, "typ": "JWT"}
        claims = {"checksum_sha256": hashlib.sha256(self.body).hexdigest(), "exp": now + 60}
        token = forge(header, claims, SECRET.encode())
        with pytest.raises(BadSignature) as info:
            hs(self.body, token, now=now)
        assert info.value.reason == "alg-not-allowed"

    def test_alg_none_with_empty_signature(self):
        now = time.time()
        claims = {"checksum_sha256": hashlib.sha256(self.body).hexdigest(), "exp": now + 60}
        header = b64(b'{"alg":"none"}')
        token = f"{header}.{b64(json.dumps(claims).encode())}."
        with pytest.raises(BadSignature) as info:
            hs(self.body, token, now=now)
        assert info.value.reason == "token-malformed"

    def test_legacy_sha1_checksum_only(self):
        now = time.time()
        hs(self.body, sign(self.body, now=now, checksum_sha256=None), now=now)
        bad = sign(self.body, now=now, checksum_sha256=None, checksum=hashlib.sha1(b"other").hexdigest())
        with pytest.raises(BadSignature) as info:
            hs(self.body, bad, now=now)
        assert info.value.reason == "checksum-mismatch"

    def test_sha256_wins_over_sha1_when_both_present(self):
        now = time.time()
        token = sign(self.body, now=now, checksum_sha256=hashlib.sha256(b"other").hexdigest())
        with pytest.raises(BadSignature) as info:
            hs(self.body, token, now=now)
        assert info.value.reason == "checksum-mismatch"

    def test_checksum_of_another_body(self):
        now = time.time()
        with pytest.raises(BadSignature) as info:
            hs(dt_body(event_id="other"), sign(self.body, now=now), now=now)
        assert info.value.reason == "checksum-mismatch"

    def test_uppercase_hex_checksum_is_accepted(self):
        now = time.time()
        token = sign(self.body, now=now, checksum_sha256=hashlib.sha256(self.body).hexdigest().upper())
        hs(self.body, token, now=now)

    @pytest.mark.parametrize("claimed", ["é" * 64, 12345, None, ["x"]])
    def test_odd_checksum_claims_are_mismatches_not_crashes(self, claimed):
        now = time.time()
        token = (
            sign(self.body, now=now, checksum_sha256=claimed)
            if claimed is not None
            else sign(self.body, now=now, checksum_sha256=None, checksum=12)
        )
        with pytest.raises(BadSignature) as info:
            hs(self.body, token, now=now)
        assert info.value.reason == "checksum-mismatch"

    def test_no_checksum(self):
        now = time.time()
        with pytest.raises(BadSignature) as info:
            hs(self.body, sign(self.body, now=now, checksum=None, checksum_sha256=None), now=now)
        assert info.value.reason == "checksum-missing"

    @pytest.mark.parametrize("exp", [None, "9999999999", True, [1]])
    def test_exp_must_be_a_number(self, exp):
        now = time.time()
        token = sign(self.body, now=now, exp=exp) if exp is not None else sign(self.body, now=now, exp=None)
        with pytest.raises(BadSignature) as info:
            hs(self.body, token, now=now)
        assert info.value.reason == "token-malformed"

    def test_not_yet_valid(self):
        now = time.time()
        with pytest.raises(BadSignature) as info:
            hs(self.body, sign(self.body, now=now, nbf=int(now) + 600), now=now)
        assert info.value.reason == "token-not-yet-valid"
        with pytest.raises(BadSignature) as info:
            hs(self.body, sign(self.body, now=now + 600), now=now)
        assert info.value.reason == "token-not-yet-valid"

    @pytest.mark.parametrize(
        "token",
        [
            "",
            "abc",
            "a.b",
            "a.b.c.d",
            "eyJhbGciOiJIUzI1NiJ9.e30.",  # empty signature
            "eyJhbGciOiJIUzI1NiJ9.e30=.c2ln",  # padding characters
            "eyJhbGciOiJIUzI1NiJ9.e30.c2l+",  # standard, not url-safe, alphabet
            "W10.e30.c2ln",  # header is a JSON array
            "eyJhbGciOiJIUzI1NiJ9.bm90IGpzb24.c2ln",  # claims not JSON
            " eyJhbGciOiJIUzI1NiJ9.e30.c2ln",
            "eyJhbGciOiJIUzI1NiJ9.e30A.c2ln",  # impossible base64 length
            "eyJhbGciOiJIUzI1NiJ9.e3#0.c2ln",  # stray character
        ],
    )
    def test_malformed_tokens(self, token):
        with pytest.raises(BadSignature) as info:
            hs(self.body, token, now=time.time())
        assert info.value.reason == "token-malformed"

    def test_non_canonical_signature_encoding_does_not_verify(self):
        now = time.time()
        token = sign(self.body, now=now)
        head, payload, signature = token.split(".")
        last = signature[-1]
        # Flip the unused low bits of the last base64url character: same bytes, other text.
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        twin = alphabet[alphabet.index(last) ^ 1]
        with pytest.raises(BadSignature) as info:
            hs(self.body, f"{head}.{payload}.{signature[:-1]}{twin}", now=now)
        assert info.value.reason == "signature-invalid"

    def test_critical_header_rejected(self):
        now = time.time()
        with pytest.raises(BadSignature) as info:
            hs(self.body, sign(self.body, now=now, headers={"crit": ["x"]}), now=now)
        assert info.value.reason == "token-malformed"


@pytest.fixture(scope="module")
def ec_key():
    return ec.generate_private_key(ec.SECP256R1())


def es_token(key, body: bytes, *, now: float, kid: str = "k1", **overrides: Any) -> str:
    claims: dict[str, Any] = {
        "checksum_sha256": hashlib.sha256(body).hexdigest(),
        "iat": int(now),
        "exp": int(now) + 300,
        "iss": ISSUER,
        "sub": "org-123",
    }
    for name, value in overrides.items():
        if value is None:
            claims.pop(name)
        else:
            claims[name] = value
    return jwt.encode(claims, key, algorithm="ES256", headers={"kid": kid})


class TestEs256:
    body = dt_body()

    def verify(self, token, ec_key, *, org_id="org-123", keys=None, now=None):
        keys = {"k1": ec_key.public_key()} if keys is None else keys
        return verify_es256(
            self.body,
            token,
            key_for=keys.get,
            issuer=ISSUER,
            org_id=org_id,
            now=time.time() if now is None else now,
            leeway_s=30,
        )

    def test_valid(self, ec_key):
        assert self.verify(es_token(ec_key, self.body, now=time.time()), ec_key)["sub"] == "org-123"

    def test_any_org_when_not_configured(self, ec_key):
        self.verify(es_token(ec_key, self.body, now=time.time(), sub="someone-else"), ec_key, org_id=None)

    @pytest.mark.parametrize(
        ("overrides", "reason"),
        [
            ({"iss": "https://evil.example/data-connector"}, "issuer-mismatch"),
            ({"iss": None}, "issuer-mismatch"),
            ({"sub": "org-999"}, "org-mismatch"),
            ({"checksum_sha256": hashlib.sha256(b"x").hexdigest()}, "checksum-mismatch"),
            ({"checksum_sha256": None}, "checksum-missing"),
            ({"exp": 1000}, "token-expired"),
        ],
    )
    def test_claim_failures(self, ec_key, overrides, reason):
        with pytest.raises(BadSignature) as info:
            self.verify(es_token(ec_key, self.body, now=time.time(), **overrides), ec_key)
        assert info.value.reason == reason

    def test_unknown_kid(self, ec_key):
        with pytest.raises(BadSignature) as info:
            self.verify(es_token(ec_key, self.body, now=time.time(), kid="k2"), ec_key)
        assert info.value.reason == "key-unknown"

    def test_signed_by_another_key(self, ec_key):
        other = ec.generate_private_key(ec.SECP256R1())
        with pytest.raises(BadSignature) as info:
            self.verify(es_token(other, self.body, now=time.time()), ec_key)
        assert info.value.reason == "signature-invalid"

    def test_hs256_with_public_key_as_secret_is_refused(self, ec_key):
        """Algorithm confusion: HMAC keyed with the public key PEM must not pass as ES256."""
        pem = ec_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        claims = {"checksum_sha256": hashlib.sha256(self.body).hexdigest(), "exp": time.time() + 60, "iss": ISSUER}
        token = forge({"alg": "HS256", "kid": "k1"}, claims, pem)
        with pytest.raises(BadSignature) as info:
            self.verify(token, ec_key)
        assert info.value.reason == "alg-not-allowed"

    def test_rs256_token_is_refused(self, ec_key):
        rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        token = jwt.encode({"iss": ISSUER, "exp": time.time() + 60}, rsa_key, algorithm="RS256", headers={"kid": "k1"})
        with pytest.raises(BadSignature) as info:
            self.verify(token, ec_key)
        assert info.value.reason == "alg-not-allowed"

    def test_key_of_wrong_type_does_not_crash(self, ec_key):
        with pytest.raises(BadSignature) as info:
            self.verify(es_token(ec_key, self.body, now=time.time()), ec_key, keys={"k1": b"not a key"})
        assert info.value.reason == "signature-invalid"


class TestPolicy:
    body = dt_body()

    def test_configured_scheme_header_missing(self):
        policy = VerificationPolicy(secrets=(SECRET.encode(),))
        with pytest.raises(BadSignature) as info:
            verify_push(self.body, hs_token=None, es_token="whatever", policy=policy, now=time.time())
        assert info.value.reason == "signature-missing"

    def test_unconfigured_scheme_is_ignored(self, ec_key):
        now = time.time()
        policy = VerificationPolicy(es_key_for={"k1": ec_key.public_key()}.get, es_issuer=ISSUER)
        verify_push(
            self.body, hs_token="garbage", es_token=es_token(ec_key, self.body, now=now), policy=policy, now=now
        )

    # The policy table of docs/security.md: configured schemes x headers present -> answer.
    @pytest.mark.parametrize(
        ("configured", "hs", "es", "answer"),
        [
            ("hs", "good", None, "accepted"),
            ("hs", None, "good", "signature-missing"),
            ("hs", "good", "garbage", "accepted"),  # an unconfigured scheme's header is ignored
            ("es", None, "good", "accepted"),
            ("es", "garbage", "good", "accepted"),
            ("es", "good", None, "signature-missing"),
            ("both", "good", "good", "accepted"),
            ("both", None, "good", "signature-missing"),  # the asymmetric header never replaces the secret
            ("both", "good", None, "signature-missing"),  # and, configured, it is required too
            ("both", "other-secret", "good", "signature-invalid"),
            ("both", "good", "other-org", "org-mismatch"),
            ("both", None, None, "signature-missing"),
        ],
    )
    def test_every_configured_scheme_is_required(self, ec_key, configured, hs, es, answer):
        now = time.time()
        secrets = (SECRET.encode(),) if configured in ("hs", "both") else ()
        keys = {"k1": ec_key.public_key()}.get if configured in ("es", "both") else None
        policy = VerificationPolicy(secrets=secrets, es_key_for=keys, es_issuer=ISSUER, org_id=ORG)
        hs_token = {"good": sign(self.body, now=now), "other-secret": sign(self.body, OLD_SECRET, now=now),
                    "garbage": "garbage", None: None}[hs]  # fmt: skip
        es_tokens = {"good": es_token(ec_key, self.body, now=now),
                     "other-org": es_token(ec_key, self.body, now=now, sub="another-org"),
                     "garbage": "garbage", None: None}  # fmt: skip
        try:
            verify_push(self.body, hs_token=hs_token, es_token=es_tokens[es], policy=policy, now=now)
            outcome = "accepted"
        except BadSignature as refused:
            outcome = refused.reason
        assert outcome == answer

    def test_skip(self):
        verify_push(b"anything", hs_token=None, es_token=None, policy=VerificationPolicy(skip=True), now=0)

    def test_key_resolver_outage_propagates_as_503(self, ec_key):
        def unavailable(kid: str) -> None:
            raise KeysUnavailable("keys-unavailable", "down")

        now = time.time()
        policy = VerificationPolicy(es_key_for=unavailable, es_issuer=ISSUER)
        with pytest.raises(KeysUnavailable) as info:
            verify_push(self.body, hs_token=None, es_token=es_token(ec_key, self.body, now=now), policy=policy, now=now)
        assert info.value.status_code == 503

    def test_repr_hides_secrets(self):
        assert SECRET not in repr(VerificationPolicy(secrets=(SECRET.encode(),)))
        assert SECRET.encode().hex() not in repr(VerificationPolicy(secrets=(SECRET.encode(),)))


def test_pure_modules_do_no_io():
    """signature, events and jobspec must not reach for Flask, Redis, requests or the clock."""
    from connector.core import events, jobspec

    for module in (signature, events, jobspec):
        names = vars(module)
        for forbidden in ("flask", "redis", "requests", "time", "Redis", "request"):
            assert forbidden not in names, f"{module.__name__} imports {forbidden}"


class TestAudience:
    """RFC 7519 §4.1.3: a token naming an audience the receiver is not must be refused."""

    body = dt_body()

    def test_hs256_token_with_an_audience_is_refused(self):
        token = sign(self.body, aud="another-connector")
        with pytest.raises(BadSignature) as info:
            verify_hs256(self.body, token, secrets=(SECRET.encode(),), now=time.time(), leeway_s=60)
        assert info.value.reason == "audience-not-allowed"

    def test_hs256_token_naming_the_configured_audience_is_accepted(self):
        token = sign(self.body, aud=["other", "this-connector"])
        claims = verify_hs256(
            self.body, token, secrets=(SECRET.encode(),), now=time.time(), leeway_s=60, audience="this-connector"
        )
        assert claims["aud"] == ["other", "this-connector"]

    def test_es256_token_with_an_audience_is_refused(self, ec_key):
        claims = {
            "iss": ISSUER,
            "sub": "org-123",
            "aud": "another-connector",
            "exp": time.time() + 60,
            "checksum_sha256": hashlib.sha256(self.body).hexdigest(),
        }
        token = jwt.encode(claims, ec_key, algorithm="ES256", headers={"kid": "k1"})
        with pytest.raises(BadSignature) as info:
            verify_es256(self.body, token, key_for=lambda kid: ec_key.public_key(), issuer=ISSUER, org_id="org-123",
                         now=time.time(), leeway_s=60)  # fmt: skip
        assert info.value.reason == "audience-not-allowed"
