"""A corpus of malformed and forged pushes: each gets its specific 4xx, nothing is queued,
and the receiver stays healthy afterwards. Plus property-based tests (hypothesis) that
verification, parsing and translation never raise anything but their own errors."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis import Redis

from connector.core.errors import RejectedPush
from connector.core.events import DT_EVENT_TYPES, parse_push
from connector.web.receive.signature import VerificationPolicy, verify_push
from tests.support.helpers import SECRET, dt_body, queued_ids, sign
from tests.support.samples import push_of
from workers.moost.events import to_moost
from workers.spot.events import to_spot
from workers.translate.mapping import load_mapping
from workers.translate.pushes import InvalidEvent, Skipped

NOW = time.time()
BODY = dt_body(event_id="corpus")


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def token(
    claims: Any = None,
    header: Any = None,
    *,
    secret: str = SECRET,
    body: bytes = BODY,
    raw_header: bytes | None = None,
    raw_claims: bytes | None = None,
    signature: str | None = None,
) -> str:
    """A compact JWS built by hand, so that anything can be wrong with it."""
    if claims is None:
        claims = {"checksum_sha256": hashlib.sha256(body).hexdigest(), "iat": int(NOW), "exp": int(NOW) + 3600}
    head = b64(raw_header if raw_header is not None else json.dumps(header or {"alg": "HS256", "typ": "JWT"}).encode())
    payload = b64(raw_claims if raw_claims is not None else json.dumps(claims).encode())
    if signature is None:
        signature = b64(hmac.digest(secret.encode(), f"{head}.{payload}".encode(), "sha256"))
    return f"{head}.{payload}.{signature}"


def claims(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "checksum_sha256": hashlib.sha256(BODY).hexdigest(),
        "iat": int(NOW),
        "exp": int(NOW) + 3600,
    }
    for key, value in changes.items():
        if value is None:
            base.pop(key, None)
        else:
            base[key] = value
    return base


def signed(body: bytes) -> dict[str, str]:
    return {"X-Dt-Signature": sign(body)}


Case = tuple[str, bytes, dict[str, str], int, str]
HS = "X-Dt-Signature"
CORPUS: list[Case] = [
    # ---- the signature header ---------------------------------------------------------
    ("no signature header", BODY, {}, 401, "signature-missing"),
    ("only the other scheme's header", BODY, {"DT-Asymmetric-Signature": token()}, 401, "signature-missing"),
    ("empty header", BODY, {HS: ""}, 401, "token-malformed"),
    ("not a jwt", BODY, {HS: "hello"}, 401, "token-malformed"),
    ("two segments", BODY, {HS: "a.b"}, 401, "token-malformed"),
    ("four segments", BODY, {HS: token() + ".x"}, 401, "token-malformed"),
    ("empty signature segment (alg none style)", BODY, {HS: token().rsplit(".", 1)[0] + "."}, 401, "token-malformed"),
    ("padded base64", BODY, {HS: token().replace(".", "=.", 1)}, 401, "token-malformed"),
    ("standard base64 alphabet", BODY, {HS: "a+b/." + token().split(".", 1)[1]}, 401, "token-malformed"),
    ("impossible base64 length", BODY, {HS: "abcde." + token().split(".", 1)[1]}, 401, "token-malformed"),
    ("header not json", BODY, {HS: token(raw_header=b"{alg:HS256")}, 401, "token-malformed"),
    ("header a json array", BODY, {HS: token(raw_header=b'["HS256"]')}, 401, "token-malformed"),
    ("claims not json", BODY, {HS: token(raw_claims=b"exp=1")}, 401, "token-malformed"),
    ("claims a json string", BODY, {HS: token(raw_claims=b'"claims"')}, 401, "token-malformed"),
    ("crit header", BODY, {HS: token(header={"alg": "HS256", "crit": ["x"], "x": 1})}, 401, "token-malformed"),
    ("token with Bearer prefix", BODY, {HS: "Bearer " + token()}, 401, "token-malformed"),
    ("two tokens in one header", BODY, {HS: token() + "," + token()}, 401, "token-malformed"),
    ("non-ascii in token", BODY, {HS: token()[:-2] + "é"}, 401, "token-malformed"),
    # ---- algorithm confusion ------------------------------------------------------------
    ("alg none with a signature", BODY, {HS: token(header={"alg": "none"})}, 401, "alg-not-allowed"),
    ("alg None capitalised", BODY, {HS: token(header={"alg": "None"})}, 401, "alg-not-allowed"),
    ("alg missing", BODY, {HS: token(header={"typ": "JWT"})}, 401, "alg-not-allowed"),
    ("alg HS512", BODY, {HS: token(header={"alg": "HS512"})}, 401, "alg-not-allowed"),
    ("alg HS384", BODY, {HS: token(header={"alg": "HS384"})}, 401, "alg-not-allowed"),
    ("alg RS256 keyed with the secret", BODY, {HS: token(header={"alg": "RS256"})}, 401, "alg-not-allowed"),
    ("alg ES256 on the HS header", BODY, {HS: token(header={"alg": "ES256", "kid": "k"})}, 401, "alg-not-allowed"),
    ("alg hs256 lowercase", BODY, {HS: token(header={"alg": "hs256"})}, 401, "alg-not-allowed"),
    # ---- the signature itself -------------------------------------------------------------
    ("wrong secret", BODY, {HS: token(secret="not-the-secret-0123456789abcdef-xyz")}, 401, "signature-invalid"),
    ("truncated signature", BODY, {HS: token()[:-4]}, 401, "signature-invalid"),
    ("signature of another token", BODY, {HS: token().rsplit(".", 1)[0] + "." + token(claims(iat=1)).rsplit(".")[2]},
     401, "signature-invalid"),
    ("signature not base64", BODY, {HS: token(signature="!!!!")}, 401, "signature-invalid"),
    ("claims swapped after signing", BODY,
     {HS: token().split(".")[0] + "." + b64(json.dumps(claims(exp=int(NOW) + 99999)).encode()) + "."
      + token().split(".")[2]}, 401, "signature-invalid"),
    # ---- claims ---------------------------------------------------------------------------
    ("no exp", BODY, {HS: token(claims(exp=None))}, 401, "token-malformed"),
    ("exp a string", BODY, {HS: token(claims(exp=str(int(NOW) + 3600)))}, 401, "token-malformed"),
    ("exp a boolean", BODY, {HS: token(claims(exp=True))}, 401, "token-malformed"),
    ("exp null", BODY, {HS: token(raw_claims=b'{"exp":null}')}, 401, "token-malformed"),
    ("expired an hour ago", BODY, {HS: token(claims(iat=int(NOW) - 7200, exp=int(NOW) - 3600))}, 401, "token-expired"),
    ("expired long ago", BODY, {HS: token(claims(iat=0, exp=1))}, 401, "token-expired"),
    ("not valid before tomorrow", BODY, {HS: token(claims(nbf=int(NOW) + 86400))}, 401, "token-not-yet-valid"),
    ("issued tomorrow", BODY, {HS: token(claims(iat=int(NOW) + 86400))}, 401, "token-not-yet-valid"),
    ("iat a string", BODY, {HS: token(claims(iat="now"))}, 401, "token-not-yet-valid"),
    ("no checksum at all", BODY, {HS: token(claims(checksum_sha256=None))}, 401, "checksum-missing"),
    ("checksum of another body", BODY,
     {HS: token(claims(checksum_sha256=hashlib.sha256(b"other").hexdigest()))}, 401, "checksum-mismatch"),
    ("checksum a number", BODY, {HS: token(claims(checksum_sha256=12345))}, 401, "checksum-mismatch"),
    ("checksum empty", BODY, {HS: token(claims(checksum_sha256=""))}, 401, "checksum-mismatch"),
    ("sha-1 checksum of another body", BODY,
     {HS: token(claims(checksum_sha256=None, checksum=hashlib.sha1(b"x").hexdigest()))}, 401, "checksum-mismatch"),
    ("good sha-1 cannot rescue a bad sha-256", BODY,
     {HS: token(claims(checksum_sha256="0" * 64, checksum=hashlib.sha1(BODY).hexdigest()))}, 401, "checksum-mismatch"),
    ("body with a trailing newline", BODY + b"\n", {HS: token()}, 401, "checksum-mismatch"),
    ("body re-serialised with spaces", json.dumps(json.loads(BODY)).encode(), {HS: token()}, 401, "checksum-mismatch"),
    # ---- validly signed, but not a DT push ------------------------------------------------
    ("empty body", b"", signed(b""), 400, "not-json"),
    ("plain text", b"hello", signed(b"hello"), 400, "not-json"),
    ("truncated json", BODY[:-1], signed(BODY[:-1]), 400, "not-json"),
    ("trailing garbage", BODY + b"x", signed(BODY + b"x"), 400, "not-json"),
    ("NaN literal", b'{"event":{"eventId":"x","eventType":"t","v":NaN}}',
     signed(b'{"event":{"eventId":"x","eventType":"t","v":NaN}}'), 400, "not-json"),
    ("lone surrogate", b'{"event":{"eventId":"\\ud800","eventType":"t"}}',
     signed(b'{"event":{"eventId":"\\ud800","eventType":"t"}}'), 400, "not-json"),
    ("deeply nested", b'{"event":' + b"[" * 5000 + b"]" * 5000 + b"}",
     signed(b'{"event":' + b"[" * 5000 + b"]" * 5000 + b"}"), 400, "not-json"),
    ("latin-1 bytes", b'{"event":"caf\xe9"}', signed(b'{"event":"caf\xe9"}'), 400, "not-utf8"),
    ("utf-16", BODY.decode().encode("utf-16"), signed(BODY.decode().encode("utf-16")), 400, "not-utf8"),
    ("json array", b"[1,2]", signed(b"[1,2]"), 400, "not-an-object"),
    ("json string", b'"push"', signed(b'"push"'), 400, "not-an-object"),
    ("json null", b"null", signed(b"null"), 400, "not-an-object"),
    ("no event", b'{"labels":{}}', signed(b'{"labels":{}}'), 400, "no-event"),
    ("event a list", b'{"event":[]}', signed(b'{"event":[]}'), 400, "no-event"),
    ("no eventId", b'{"event":{"eventType":"touch"}}', signed(b'{"event":{"eventType":"touch"}}'), 400, "no-event-id"),
    ("eventId a number", b'{"event":{"eventId":7,"eventType":"touch"}}',
     signed(b'{"event":{"eventId":7,"eventType":"touch"}}'), 400, "no-event-id"),
    ("eventId empty", b'{"event":{"eventId":"","eventType":"touch"}}',
     signed(b'{"event":{"eventId":"","eventType":"touch"}}'), 400, "no-event-id"),
    ("eventId 10 KB long", dt_body(event_id="e" * 10_000), signed(dt_body(event_id="e" * 10_000)), 400, "no-event-id"),
    ("no eventType", b'{"event":{"eventId":"x"}}', signed(b'{"event":{"eventId":"x"}}'), 400, "no-event-type"),
    ("eventType an object", b'{"event":{"eventId":"x","eventType":{}}}',
     signed(b'{"event":{"eventId":"x","eventType":{}}}'), 400, "no-event-type"),
    ("labels a list", b'{"event":{"eventId":"x","eventType":"t"},"labels":[]}',
     signed(b'{"event":{"eventId":"x","eventType":"t"},"labels":[]}'), 400, "bad-labels"),
    ("metadata a string", b'{"event":{"eventId":"x","eventType":"t"},"metadata":"m"}',
     signed(b'{"event":{"eventId":"x","eventType":"t"},"metadata":"m"}'), 400, "bad-metadata"),
    # ---- size -----------------------------------------------------------------------------
    ("body over the limit", b'{"event":"' + b"x" * 70_000 + b'"}', {HS: "x.y.z"}, 413, "too-large"),
    ("huge body, 5 MB", b"[" * 5_000_000, {HS: "x.y.z"}, 413, "too-large"),
]  # fmt: skip


def test_the_corpus_is_large_and_its_names_unique():
    assert len(CORPUS) >= 50
    assert len({name for name, *_ in CORPUS}) == len(CORPUS)


@pytest.mark.parametrize(("body", "headers", "status", "reason"), [c[1:] for c in CORPUS], ids=[c[0] for c in CORPUS])
def test_bad_push_gets_its_specific_answer_and_queues_nothing(
    client: FlaskClient, redis: Redis, body: bytes, headers: dict[str, str], status: int, reason: str
):
    response = client.post("/dt/events", data=body, headers=headers)
    assert (response.status_code, response.get_json()["error"]) == (status, reason)
    assert response.get_json()["detail"]
    assert queued_ids(redis) == [] and redis.keys("dt:seen:*") == []
    if status == 401:
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_the_receiver_is_healthy_after_the_whole_corpus(client: FlaskClient, redis: Redis):
    for _, body, headers, _, _ in CORPUS:
        client.post("/dt/events", data=body, headers=headers)
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    assert client.post("/dt/events", data=BODY, headers=signed(BODY)).get_json() == {"status": "accepted"}
    assert queued_ids(redis) == ["log-corpus"]


# ---- properties -------------------------------------------------------------------------------

POLICY = VerificationPolicy(secrets=(SECRET.encode(),))
MAPPING = load_mapping()
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(body=st.binary(max_size=300), hs=st.one_of(st.none(), st.text(max_size=200)))
def test_verification_only_raises_its_own_errors(body: bytes, hs: str | None):
    try:
        verify_push(body, hs_token=hs, es_token=None, policy=POLICY, now=NOW)
    except RejectedPush as exc:
        assert exc.status_code == 401 and exc.reason
    else:
        raise AssertionError("an arbitrary token verified")


@PROPERTY
@given(doc=json_values)
def test_parsing_any_json_only_raises_its_own_errors(doc: Any):
    body = json.dumps(doc).encode()
    try:
        push = parse_push(body)
    except RejectedPush as exc:
        assert exc.status_code == 400 and exc.reason
    else:
        assert push.event_id and push.event_type


@PROPERTY
@given(event_type=st.sampled_from(DT_EVENT_TYPES), data=json_values, labels=st.dictionaries(st.text(), st.text()))
def test_translation_of_mangled_events_only_raises_its_own_errors(event_type: str, data: Any, labels: Any):
    push = push_of(event_type, data=data if isinstance(data, dict) else {event_type: data}, labels=labels)
    translators: list[Callable[[], Any]] = [
        lambda: to_moost(push, MAPPING, customer_id="656730be2bc9719e6e5ed51d"),
        lambda: to_spot(push, MAPPING),
    ]
    for translate in translators:
        with contextlib.suppress(Skipped, InvalidEvent):  # the translators' own errors
            translate()
