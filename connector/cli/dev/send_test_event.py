"""``dt-connector send-test-event``: act as DT Cloud against a receiver (I/O edge).

Builds events with ``connector.cli.dev.simulate``, signs each delivery attempt, POSTs it, and
retries every answer but 200 the way DT does (backoff; DT keeps at it for 12 hours, this
command for ``retry_for_s``). A share of events is delivered twice, as DT may. One line
is printed per delivery.
"""

from __future__ import annotations

import http.server
import json
import random
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from connector.cli.dev.simulate import AsymmetricSigner, Fleet, build_push, discovery_document, sign_hs256, xid

RETRY_DELAYS_S = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0)
"""Waits between attempts (the last one repeats): DT's own schedule is not published."""


@dataclass
class SendReport:
    """What happened to a run: counts by outcome, and every eventId that got a 200."""

    sent: int = 0
    duplicates_sent: int = 0
    attempts: int = 0
    acknowledged: set[str] = field(default_factory=set)
    answers: dict[str, int] = field(default_factory=dict)
    gave_up: list[str] = field(default_factory=list)

    def add(self, other: SendReport) -> None:
        """Fold ``other`` (e.g. another sender thread's report) into this one."""
        self.sent += other.sent
        self.duplicates_sent += other.duplicates_sent
        self.attempts += other.attempts
        self.acknowledged |= other.acknowledged
        for status, count in other.answers.items():
            self.answers[status] = self.answers.get(status, 0) + count
        self.gave_up += other.gave_up


@dataclass
class DtSimulator:
    """Pushes signed DT-like events to ``url``."""

    url: str
    secret: str | None = None
    signer: AsymmetricSigner | None = None
    rng: random.Random = field(default_factory=random.Random)
    retry_for_s: float = 60.0
    timeout_s: float = 10.0
    out: IO[str] | None = None
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    session: requests.Session = field(default_factory=requests.Session)

    def __repr__(self) -> str:
        return f"DtSimulator(url={self.url!r}, hs256={self.secret is not None}, es256={self.signer is not None})"

    def run(self, event_types: Sequence[str], *, count: int, duplicate_rate: float = 0.0) -> SendReport:
        """Send ``count`` new events (cycling through ``event_types``), some twice."""
        fleet = Fleet.create(self.rng)
        bodies = (
            build_push(event_types[n % len(event_types)], fleet=fleet, event_id=xid(self.rng), now=self.clock(),
                       rng=self.rng)
            for n in range(count)
        )  # fmt: skip
        return self.send(bodies, duplicate_rate=duplicate_rate)

    def send(self, bodies: Iterable[bytes], *, duplicate_rate: float = 0.0) -> SendReport:
        """Deliver each body as DT would, delivering a ``duplicate_rate`` share of them twice."""
        report = SendReport()
        for body in bodies:
            self.deliver(body, report)
            report.sent += 1
            if self.rng.random() < duplicate_rate:
                self.deliver(body, report, duplicate=True)
                report.duplicates_sent += 1
        return report

    def deliver(self, body: bytes, report: SendReport, *, duplicate: bool = False) -> bool:
        """POST ``body`` until it is answered 200 or ``retry_for_s`` has passed."""
        event = json.loads(body)["event"]
        event_id, event_type = event["eventId"], event["eventType"]
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            report.attempts += 1
            status, detail, ms = self._post(body)
            report.answers[str(status)] = report.answers.get(str(status), 0) + 1
            label = "redelivery" if duplicate else "delivery"
            self._print(f"{event_id} {event_type:<18} {label} {attempt}: {status} {detail} ({ms:.0f} ms)")
            if status == 200:
                report.acknowledged.add(event_id)
                return True
            delay = RETRY_DELAYS_S[min(attempt - 1, len(RETRY_DELAYS_S) - 1)]
            if time.monotonic() - started + delay > self.retry_for_s:
                self._print(f"{event_id} {event_type:<18} gave up after {attempt} attempts")
                report.gave_up.append(event_id)
                return False
            self.sleep(delay)

    def _post(self, body: bytes) -> tuple[int | str, str, float]:
        now = self.clock()
        headers = {"Content-Type": "application/json"}
        if self.secret is not None:
            headers["X-Dt-Signature"] = sign_hs256(body, self.secret, now=now, jti=xid(self.rng))
        if self.signer is not None:
            headers["DT-Asymmetric-Signature"] = self.signer.sign(body, now=now)
        started = time.perf_counter()
        try:
            response = self.session.post(self.url, data=body, headers=headers, timeout=self.timeout_s)
        except requests.Timeout:
            return "timeout", "", (time.perf_counter() - started) * 1000
        except requests.RequestException:  # refused, reset, or an answer cut short: DT retries them all
            return "connection-error", "", (time.perf_counter() - started) * 1000
        ms = (time.perf_counter() - started) * 1000
        try:
            doc = response.json()
            detail = str(doc.get("status") or doc.get("error") or "")
        except ValueError:
            detail = response.text[:80]
        return response.status_code, detail, ms

    def _print(self, line: str) -> None:
        if self.out is not None:
            print(line, file=self.out, flush=True)


def load_or_create_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """The local ES256 key at ``path`` (PEM), generated on first use with mode 0600."""
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{path} is not an EC private key")
        return key
    key = ec.generate_private_key(ec.SECP256R1())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return key


class LocalIdentity:
    """A local stand-in for DT's signing identity: ``signer`` plus, while in use, its
    discovery document and JWKS served on 127.0.0.1:``port``.

    A receiver configured with ``DT_OIDC_DISCOVERY_URL=<discovery_url>`` then verifies
    the ``DT-Asymmetric-Signature`` of pushes signed by ``signer`` (the issuer is the
    discovery URL's base, as OpenID Connect Discovery requires).
    """

    def __init__(self, key: ec.EllipticCurvePrivateKey, *, kid: str, org_id: str, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.discovery_url = f"{self.base}/.well-known/openid-configuration"
        self.signer = signer = AsymmetricSigner(key=key, kid=kid, issuer=self.base, org_id=org_id)
        documents = {
            "/.well-known/openid-configuration": discovery_document(signer.issuer, f"{self.base}/jwks"),
            "/jwks": signer.jwks(),
        }

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                doc: Any = documents.get(self.path)
                raw = json.dumps(doc).encode() if doc is not None else b'{"error":"not found"}'
                self.send_response(200 if doc is not None else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> LocalIdentity:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
