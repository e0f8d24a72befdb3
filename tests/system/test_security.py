"""The front door, attacked from outside: one test per attack of docs/security.md's threat model.

The slow-client test runs the receiver under the Procfile's gunicorn settings and prints its
figures; the rest drive the app, the key store or the release command directly.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, suppress
from pathlib import Path

import pytest
import requests
from flask.testing import FlaskClient
from redis import Redis

from connector.cli.dev.embedded_redis import EmbeddedRedis
from connector.core.errors import ConfigError
from connector.core.settings import Settings
from connector.web.app import create_app
from connector.web.receive.signing_keys import JwksKeyStore
from tests.support.helpers import ROOT, SECRET, SUMMARY_LINES, dt_body, make_settings, push, queued_ids, sign
from tests.support.identity import ORG, IdentityServer
from tests.support.servers import gunicorn, post

TOKEN = "operator-token-0123456789abcdef-test-only"


def _connect(base: str) -> socket.socket:
    host, port = base.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=30)


def _answer_then_close(sock: socket.socket, within_s: float = 5) -> tuple[str, bool]:
    """Everything the server sends on ``sock``, and whether it then closed the connection."""
    sock.settimeout(within_s)
    received, deadline = b"", time.monotonic() + within_s
    try:
        while time.monotonic() < deadline:
            chunk = sock.recv(4096)
            if not chunk:
                return received.decode(errors="replace"), True
            received += chunk
    except TimeoutError:
        pass
    except OSError:
        return received.decode(errors="replace"), True
    return received.decode(errors="replace"), False


# 1. Slow clients -----------------------------------------------------------------------------


@pytest.mark.slow
def test_slow_and_silent_clients_cannot_hold_the_door(redis: Redis, redis_server: EmbeddedRedis):
    """200 connections trickle headers, trickle a body or go silent after one byte; signed
    pushes are still answered 200, and the server cuts every slow connection."""
    with ExitStack() as stack, gunicorn(redis_server.url, WEB_REQUEST_DEADLINE_S="3") as (base, _process):
        silent, trickling_headers, trickling_bodies = [], [], []
        for n in range(200):
            sock = stack.enter_context(_connect(base))
            if n % 2 == 0:
                sock.sendall(b"P")  # one byte, then nothing
                silent.append(sock)
            elif n % 10 == 1:
                sock.sendall(b"POST /dt/events HTTP/1.1\r\nHost: x\r\nContent-Length: 600\r\n\r\n{")
                trickling_bodies.append(sock)
            else:
                sock.sendall(b"POST /dt/events HTTP/1.1\r\n")
                trickling_headers.append(sock)
        stop = threading.Event()

        def trickle() -> None:  # one byte per connection every 0.5 s
            while not stop.wait(0.5):
                for sock, byte in [(s, b"X") for s in trickling_headers] + [(s, b" ") for s in trickling_bodies]:
                    with suppress(OSError):  # the server may have cut it already
                        sock.sendall(byte)

        trickler = threading.Thread(target=trickle, daemon=True)
        trickler.start()
        latencies: list[float] = []
        statuses: list[int] = []

        def send(first: int) -> None:
            for n in range(first, first + 25):
                started = time.perf_counter()
                statuses.append(post(base, dt_body(event_id=f"slow-door-{n}"), timeout=10).status_code)
                latencies.append(time.perf_counter() - started)

        senders = [threading.Thread(target=send, args=(k * 25,)) for k in range(4)]
        for thread in senders:
            thread.start()
        for thread in senders:
            thread.join()
        assert statuses == [200] * 100  # every push answered within DT's 10 s
        assert len(queued_ids(redis)) == 100
        # The server cuts them: silent ones at the 5 s header limit, body tricklers at the 3 s
        # request deadline, header tricklers at the header limit.
        started = time.monotonic()
        samples = (silent[0], trickling_bodies[0], trickling_headers[0])
        cut = [_answer_then_close(sock, within_s=15)[1] for sock in samples]
        stop.set()
        ordered = sorted(latencies)
        line = (
            f"SLOW CLIENTS: 200 slow connections (100 silent, 80 trickling headers, 20 trickling bodies); "
            f"100 signed pushes from 4 clients: p50 {statistics.median(ordered) * 1000:.0f} ms, "
            f"p99 {ordered[98] * 1000:.0f} ms, max {ordered[-1] * 1000:.0f} ms; slow connections all cut "
            f"{time.monotonic() - started:.1f} s after the pushes"
        )
        print(line)
        SUMMARY_LINES.append(line)
        assert cut == [True, True, True]


# 2. Both schemes configured: the secret stays required ------------------------------------------


@pytest.fixture
def both_schemes(identity: IdentityServer, redis: Redis, redis_server: EmbeddedRedis) -> FlaskClient:
    settings = make_settings(redis_server.url, asymmetric=True, oidc_discovery_url=identity.discovery_url, org_id=ORG)
    return create_app(settings, configure_logs=False).test_client()


def test_an_asymmetric_signature_alone_is_refused_when_a_secret_is_set(
    both_schemes: FlaskClient, identity: IdentityServer, redis: Redis
):
    body = dt_body(event_id="only-es")
    es = identity.sign(body, "key-1")
    response = both_schemes.post("/dt/events", data=body, headers={"DT-Asymmetric-Signature": es})
    assert (response.status_code, response.get_json()["error"]) == (401, "signature-missing")
    both = {"DT-Asymmetric-Signature": es, "X-Dt-Signature": sign(body)}
    assert both_schemes.post("/dt/events", data=body, headers=both).status_code == 200
    assert queued_ids(redis) == ["log-only-es"]


# 3. Tokens naming an audience ------------------------------------------------------------------


def test_a_token_naming_an_audience_is_refused(client: FlaskClient, redis: Redis):
    body = dt_body(event_id="aud1")
    response = push(client, body, sign(body, aud="https://someone-else.example"))
    assert (response.status_code, response.get_json()["error"]) == (401, "audience-not-allowed")
    assert queued_ids(redis) == []


# 4. Weak secrets and guessing ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value"),
    [("DT_SIGNATURE_SECRET", "Qx7"), ("DT_SIGNATURE_SECRET", f"{SECRET},Qx7-short"), ("METRICS_TOKEN", "Zq9")],
)
def test_weak_secrets_are_refused_at_start(variable: str, value: str):
    env = {"REDIS_URL": "redis://localhost/0", "DT_SIGNATURE_SECRET": SECRET, variable: value}
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env)
    assert variable in str(info.value) and "32 characters" in str(info.value)
    assert value.rsplit(",", 1)[-1] not in str(info.value)  # the weak secret is not echoed


def test_wrong_operator_tokens_are_throttled_per_client(redis: Redis, redis_server: EmbeddedRedis):
    client = create_app(make_settings(redis_server.url, metrics_token=TOKEN), configure_logs=False).test_client()
    guesser = {"REMOTE_ADDR": "203.0.113.7"}
    answers = [
        client.get("/metrics", headers={"Authorization": f"Bearer guess-{n}"}, environ_base=guesser).status_code
        for n in range(12)
    ]
    assert answers == [401] * 10 + [429] * 2
    throttled = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, environ_base=guesser)
    assert throttled.status_code == 429 and int(throttled.headers["Retry-After"]) > 0
    operator = {"REMOTE_ADDR": "198.51.100.2"}
    right = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, environ_base=operator)
    assert right.status_code == 200


# 5. The replay window --------------------------------------------------------------------------


def test_dedupe_ttl_shorter_than_a_token_lives_is_refused():
    env = {"REDIS_URL": "redis://localhost/0", "DT_SIGNATURE_SECRET": SECRET, "DEDUPE_TTL_S": "60"}
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env)
    assert "DEDUPE_TTL_S must be at least 3660" in str(info.value)
    assert Settings.from_env({**env, "DEDUPE_TTL_S": "3660"}).dedupe_ttl_s == 3660


# 6. DT's identity service ----------------------------------------------------------------------


def test_forged_pushes_cannot_make_us_hammer_the_identity_service(
    identity: IdentityServer, redis: Redis, redis_server: EmbeddedRedis
):
    identity.down = True  # nothing cached: the state in which every push used to fetch
    settings = make_settings(
        redis_server.url, signature_secrets=(), asymmetric=True, oidc_discovery_url=identity.discovery_url, org_id=ORG
    )
    client = create_app(settings, configure_logs=False).test_client()
    forged = "eyJhbGciOiJFUzI1NiIsImtpZCI6ImZvcmdlZCJ9.e30.c2ln"
    answers = {client.post("/dt/events", data=dt_body(event_id=f"f{n}"), headers={"DT-Asymmetric-Signature": forged})
               .status_code for n in range(50)}  # fmt: skip
    assert answers == {503}
    assert len(identity.requests) == 1  # one attempt per 30 s, whatever the pushes


def test_a_slow_identity_service_never_delays_a_push_whose_key_is_cached(identity: IdentityServer):
    store = JwksKeyStore(identity.discovery_url, min_refresh_s=0)
    key = store("key-1")
    identity.delay_s = 2.5
    fetching = threading.Thread(target=store, args=("rotated-kid",))  # an unknown kid: a (slow) refresh
    fetching.start()
    time.sleep(0.2)
    assert store("key-1") is key  # answered from the cache ...
    assert fetching.is_alive()  # ... while the refresh is still waiting on the identity service
    assert store("another-unknown-kid") is None  # and a second refresh does not queue behind it
    fetching.join()


# 7. Operator pages -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/metrics", "/status"])
def test_operator_pages_cannot_be_framed(redis: Redis, redis_server: EmbeddedRedis, path: str):
    client = create_app(make_settings(redis_server.url, metrics_token=TOKEN), configure_logs=False).test_client()
    for headers in ({"Authorization": f"Bearer {TOKEN}"}, {}):
        response = client.get(path, headers=headers)
        assert response.headers["X-Frame-Options"] == "DENY"
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]


@pytest.mark.parametrize(
    ("remote", "headers", "status"),
    [
        ("127.0.0.1", {}, 200),  # dt-connector dev on this machine
        ("::1", {}, 200),
        ("::ffff:127.0.0.1", {}, 200),  # an IPv4 client of the [::] socket `dt-connector web` binds
        ("::ffff:10.1.2.3", {}, 403),
        ("127.0.0.1", {"X-Forwarded-For": "203.0.113.7"}, 403),  # through ngrok or another proxy
        ("10.1.2.3", {}, 403),  # Heroku's router, or a public port
    ],
)
def test_without_a_token_operator_pages_answer_this_machine_only(
    redis: Redis, redis_server: EmbeddedRedis, remote: str, headers: dict[str, str], status: int
):
    client = create_app(make_settings(redis_server.url), configure_logs=False).test_client()
    for path in ("/metrics", "/status"):
        response = client.get(path, headers=headers, environ_base={"REMOTE_ADDR": remote})
        assert response.status_code == status
        if status == 403:
            assert response.get_json()["error"] == "operator-pages-off"


# 8. HTTP edges ---------------------------------------------------------------------------------


@pytest.fixture
def server(redis: Redis, redis_server: EmbeddedRedis, tmp_path) -> Iterator[tuple[str, str]]:
    log = tmp_path / "web.log"
    with log.open("wb") as out, gunicorn(redis_server.url, log=out) as (base, _process):
        yield base, str(log)


@pytest.mark.slow
def test_a_malformed_chunked_body_is_a_400_not_a_500(server: tuple[str, str], redis: Redis):
    base, log = server
    with _connect(base) as sock:
        sock.sendall(b"POST /dt/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n")
        answer, closed = _answer_then_close(sock)
    assert answer.startswith("HTTP/1.1 400") and '"bad-framing"' in answer, answer
    assert "connection: close" in answer.lower() and closed
    time.sleep(0.3)
    text = Path(log).read_text()
    assert "Traceback" not in text and '"level":"error"' not in text


@pytest.mark.slow
def test_a_413_closes_the_connection_it_announces_closing(server: tuple[str, str], redis: Redis):
    base, _log = server
    body = b"{" + b" " * (70 * 1024) + b"}"
    with _connect(base) as sock:
        sock.sendall(b"POST /dt/events HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body[:1024])
        answer, closed = _answer_then_close(sock)
    assert answer.startswith("HTTP/1.1 413") and '"too-large"' in answer, answer
    assert "connection: close" in answer.lower() and closed
    assert requests.get(f"{base}/healthz", timeout=5).status_code == 200  # the next client is fine


# 9. Heroku defaults ----------------------------------------------------------------------------


def test_the_button_does_not_turn_asymmetric_checking_off_and_check_config_warns_on_heroku():
    app_json = json.loads((ROOT / "app.json").read_text())
    assert "value" not in app_json["env"]["DT_ASYMMETRIC_SIGNATURE"]  # DT_ORG_ID decides, as README says
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DT_", "MOOST_", "SPOT_", "METRICS_"))}
    env.update(REDIS_URL="rediss://:pw@redis.example:6380", DT_SIGNATURE_SECRET=SECRET, DYNO="release.1")
    result = subprocess.run(
        [sys.executable, "-m", "connector.cli", "check-config"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "set DT_ORG_ID" in result.stderr and "METRICS_TOKEN is not set" in result.stderr
    with_org = subprocess.run(
        [sys.executable, "-m", "connector.cli", "check-config"],
        env={**env, "DT_ORG_ID": ORG, "METRICS_TOKEN": TOKEN},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert with_org.returncode == 0 and "warning" not in with_org.stderr
