"""Settings, read once from environment variables (Heroku config vars) and validated.

``Settings.from_env()`` is the only place that reads the environment. Every problem
raises ``ConfigError`` whose message names the variable, so a bad deploy fails at
start (and in Heroku's release phase) instead of answering pushes wrongly.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from connector.errors import ConfigError

DT_PRODUCTION_DISCOVERY_URL = (
    "https://identity.disruptive-technologies.com/data-connector/.well-known/openid-configuration"
)
"""OpenID discovery document of DT's data-connector signing identity (production)."""

DEFAULT_DEDUPE_TTL_S = 24 * 3600
"""Seconds an accepted eventId is remembered. DT redelivers for up to 12 h."""

DEFAULT_MAX_BODY_BYTES = 64 * 1024
"""DT events are a few KB; anything much larger is not a DT push."""

DEFAULT_SIGNATURE_LEEWAY_S = 60
"""Clock skew tolerated on ``exp``/``nbf``/``iat`` of the signature tokens, in seconds."""

DEFAULT_QUEUE = "dt-forward"
"""RQ queue that carries one job per event per destination."""

DEFAULT_JOB_TIMEOUT_S = 20
"""RQ job timeout; below Heroku's 30 s SIGTERM-to-SIGKILL window."""

DEFAULT_RETRY_AFTER_S = 10
"""``Retry-After`` sent with 503 answers, in seconds."""

DEFAULT_REDIS_TIMEOUT_S = 2.0
"""Socket timeout towards Redis. DT gives up on a push after ~10 s."""

DEFAULT_ACCESS_LOG_FLUSH_MS = 100
"""How long a push's log line may wait to be written with others (0: write at once)."""

DEFAULT_RETRY_SCHEDULE_S: tuple[int, ...] = (10, 30, 120, 300, 900, 1800, 3600, 7200, 10800, 14400, 14400)
"""Waits before delivery retries 1..11: about 14.9 h in all, beyond DT's own 12 h redelivery window."""

KNOWN_DESTINATIONS = ("log", "moost", "spot")
"""Destinations the workers can deliver to."""

DEFAULT_WORKER_PROCESSES = 2
"""Processes per worker dyno: each job costs a few ms of CPU under Python's GIL, so a second
process uses a second core."""

DEFAULT_WORKER_THREADS = 16
"""Jobs one worker process runs at once. A forward mostly waits on its downstream: 16 threads
hide 50 ms of downstream latency at well over 200 events/s per process."""

DEFAULT_WEB_THREADS = 4
"""Threads per gunicorn worker process (``GUNICORN_THREADS``); also the most Redis connections
the process opens, one per thread: a push that waited for a connection cost 15 % of the
receiver's throughput with 3 connections for 4 threads (bench.ingress, 2026-12-04)."""

DEFAULT_MOOST_BASE_URL = "https://api.moost.io"
DEFAULT_SPOT_BASE_URL = "https://dev-api.spot.ai"

_DESTINATION_VARIABLES = {
    "moost": ("MOOST_CLIENT_ID", "MOOST_CLIENT_SECRET", "MOOST_CUSTOMER_ID"),
    "spot": ("SPOT_API_KEY", "SPOT_INTEGRATION_ID"),
}

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


@dataclass(frozen=True)
class Settings:
    """Everything the web and worker processes need, validated.

    Secrets are kept out of ``repr`` so a logged or printed ``Settings`` leaks nothing.
    """

    redis_url: str = field(repr=False)
    signature_secrets: tuple[str, ...] = field(default=(), repr=False)
    asymmetric: bool = False
    oidc_discovery_url: str = DT_PRODUCTION_DISCOVERY_URL
    org_id: str | None = None
    insecure_skip_verify: bool = False
    signature_leeway_s: int = DEFAULT_SIGNATURE_LEEWAY_S
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    dedupe_ttl_s: int = DEFAULT_DEDUPE_TTL_S
    queue_name: str = DEFAULT_QUEUE
    job_timeout_s: int = DEFAULT_JOB_TIMEOUT_S
    retry_after_s: int = DEFAULT_RETRY_AFTER_S
    redis_timeout_s: float = DEFAULT_REDIS_TIMEOUT_S
    redis_tls_verify: bool = False
    destinations: tuple[str, ...] = ("log",)
    access_log_flush_ms: int = DEFAULT_ACCESS_LOG_FLUSH_MS
    moost_base_url: str = DEFAULT_MOOST_BASE_URL
    moost_client_id: str = ""
    moost_client_secret: str = field(default="", repr=False)
    moost_customer_id: str = ""
    spot_base_url: str = DEFAULT_SPOT_BASE_URL
    spot_api_key: str = field(default="", repr=False)
    spot_integration_id: int = 0
    mapping_path: str | None = None
    forward_timeout_s: float = 10.0
    worker_processes: int = DEFAULT_WORKER_PROCESSES
    worker_threads: int = DEFAULT_WORKER_THREADS
    web_threads: int = DEFAULT_WEB_THREADS
    metrics_token: str = field(default="", repr=False)
    retry_schedule_s: tuple[int, ...] = DEFAULT_RETRY_SCHEDULE_S

    def __post_init__(self) -> None:
        if not (self.signature_secrets or self.asymmetric or self.insecure_skip_verify):
            raise ConfigError(
                "no push verification configured: set DT_SIGNATURE_SECRET (the Data Connector's "
                "signature secret) and/or DT_ASYMMETRIC_SIGNATURE=on (with DT_ORG_ID). "
                "For a local experiment only, DT_INSECURE_SKIP_VERIFY=1 accepts unsigned pushes."
            )
        if any(not s for s in self.signature_secrets):
            raise ConfigError("DT_SIGNATURE_SECRET contains an empty secret (check stray commas)")
        unknown = [d for d in self.destinations if d not in KNOWN_DESTINATIONS]
        if unknown or not self.destinations:
            raise ConfigError(
                f"CONNECTOR_DESTINATIONS: unknown destination(s) {unknown!r}; known: {', '.join(KNOWN_DESTINATIONS)}"
            )

    @property
    def verification_summary(self) -> str:
        """A secret-free description of what is verified, for the start-up log."""
        parts = []
        if self.signature_secrets:
            parts.append(f"X-Dt-Signature HS256 ({len(self.signature_secrets)} secret(s))")
        if self.asymmetric:
            org = f"org {self.org_id}" if self.org_id else "ANY DT organisation (set DT_ORG_ID)"
            parts.append(f"DT-Asymmetric-Signature ES256 for {org}")
        if self.insecure_skip_verify:
            parts.append("NOTHING: DT_INSECURE_SKIP_VERIFY is on, unsigned pushes are accepted")
        return "; ".join(parts)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``environ`` (default ``os.environ``).

        Raises:
            ConfigError: naming the first variable that is missing or invalid.
        """
        env = os.environ if environ is None else environ
        redis_url = env.get("REDIS_URL", "").strip()
        if not redis_url:
            raise ConfigError("REDIS_URL is not set (e.g. redis://localhost:6379/0 or Heroku's rediss://…)")
        if not redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError("REDIS_URL must start with redis://, rediss:// or unix://")
        secrets = tuple(s.strip() for s in env.get("DT_SIGNATURE_SECRET", "").split(","))
        if secrets == ("",):
            secrets = ()
        org_id = env.get("DT_ORG_ID", "").strip() or None
        asymmetric_default = "on" if org_id else "off"
        destinations = _destinations(env)
        return cls(
            redis_url=redis_url,
            signature_secrets=secrets,
            asymmetric=_bool(env, "DT_ASYMMETRIC_SIGNATURE", asymmetric_default),
            oidc_discovery_url=env.get("DT_OIDC_DISCOVERY_URL", DT_PRODUCTION_DISCOVERY_URL),
            org_id=org_id,
            insecure_skip_verify=_bool(env, "DT_INSECURE_SKIP_VERIFY", "0"),
            signature_leeway_s=_int(env, "DT_SIGNATURE_LEEWAY_S", DEFAULT_SIGNATURE_LEEWAY_S, 0, 3600),
            max_body_bytes=_int(env, "MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES, 1024, 16 * 1024 * 1024),
            dedupe_ttl_s=_int(env, "DEDUPE_TTL_S", DEFAULT_DEDUPE_TTL_S, 60, 30 * 24 * 3600),
            queue_name=_name(env, "CONNECTOR_QUEUE", DEFAULT_QUEUE),
            job_timeout_s=_int(env, "JOB_TIMEOUT_S", DEFAULT_JOB_TIMEOUT_S, 1, 3600),
            retry_after_s=_int(env, "RETRY_AFTER_S", DEFAULT_RETRY_AFTER_S, 1, 3600),
            redis_timeout_s=_float(env, "REDIS_TIMEOUT_S", DEFAULT_REDIS_TIMEOUT_S, 0.05, 9.0),
            redis_tls_verify=_bool(env, "REDIS_TLS_VERIFY", "0"),
            destinations=destinations,
            access_log_flush_ms=_int(env, "ACCESS_LOG_FLUSH_MS", DEFAULT_ACCESS_LOG_FLUSH_MS, 0, 5000),
            moost_base_url=_url(env, "MOOST_BASE_URL", DEFAULT_MOOST_BASE_URL),
            moost_client_id=env.get("MOOST_CLIENT_ID", "").strip(),
            moost_client_secret=env.get("MOOST_CLIENT_SECRET", "").strip(),
            moost_customer_id=env.get("MOOST_CUSTOMER_ID", "").strip(),
            spot_base_url=_url(env, "SPOT_BASE_URL", DEFAULT_SPOT_BASE_URL),
            spot_api_key=env.get("SPOT_API_KEY", "").strip(),
            spot_integration_id=_int(env, "SPOT_INTEGRATION_ID", 0, 0, 2**31 - 1),
            mapping_path=env.get("CONNECTOR_MAPPING", "").strip() or None,
            forward_timeout_s=_float(env, "FORWARD_TIMEOUT_S", 10.0, 0.1, 25.0),
            worker_processes=_int(env, "WORKER_PROCESSES", DEFAULT_WORKER_PROCESSES, 1, 64),
            worker_threads=_int(env, "WORKER_THREADS", DEFAULT_WORKER_THREADS, 1, 256),
            web_threads=_int(env, "GUNICORN_THREADS", DEFAULT_WEB_THREADS, 1, 64),
            metrics_token=env.get("METRICS_TOKEN", "").strip(),
            retry_schedule_s=_schedule(env, "RETRY_SCHEDULE_S"),
        )


def _destinations(env: Mapping[str, str]) -> tuple[str, ...]:
    """Explicit ``CONNECTOR_DESTINATIONS``, else every destination whose credentials are set.

    A destination with only some of its variables set is an error naming the missing one.
    With none configured, events go to ``log``.
    """
    configured = []
    for name, variables in _DESTINATION_VARIABLES.items():
        present = [v for v in variables if env.get(v, "").strip()]
        if present and len(present) < len(variables):
            missing = next(v for v in variables if v not in present)
            raise ConfigError(f"{missing} is not set (needed with {', '.join(present)} for {name})")
        if present:
            configured.append(name)
    explicit = env.get("CONNECTOR_DESTINATIONS", "").strip()
    if not explicit:
        return tuple(configured) or ("log",)
    chosen = tuple(d.strip() for d in explicit.split(",") if d.strip())
    for name in chosen:
        if name in _DESTINATION_VARIABLES and name not in configured:
            raise ConfigError(f"CONNECTOR_DESTINATIONS names {name} but {_DESTINATION_VARIABLES[name][0]} is not set")
    return chosen


def _url(env: Mapping[str, str], key: str, default: str) -> str:
    value = env.get(key, default).strip().rstrip("/")
    if not value.startswith(("https://", "http://")):
        raise ConfigError(f"{key} must be an http(s) URL (got {value!r})")
    return value


def _bool(env: Mapping[str, str], key: str, default: str) -> bool:
    raw = env.get(key, default).strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ConfigError(f"{key} must be one of on/off, true/false, 1/0 (got {raw!r})")


def _schedule(env: Mapping[str, str], key: str) -> tuple[int, ...]:
    """Comma-separated waits in seconds (each 1 s to 1 day, at most 50 of them)."""
    raw = env.get(key, "").strip()
    if not raw:
        return DEFAULT_RETRY_SCHEDULE_S
    try:
        waits = tuple(int(part) for part in raw.split(","))
    except ValueError:
        raise ConfigError(f"{key} must be comma-separated whole seconds, e.g. 10,30,120 (got {raw!r})") from None
    if not 1 <= len(waits) <= 50 or not all(1 <= w <= 86400 for w in waits):
        raise ConfigError(f"{key} must list 1 to 50 waits of 1 to 86400 seconds (got {raw!r})")
    return waits


def _int(env: Mapping[str, str], key: str, default: int, low: int, high: int) -> int:
    raw = env.get(key)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{key} must be an integer (got {raw!r})") from None
    if not low <= value <= high:
        raise ConfigError(f"{key} must be between {low} and {high} (got {value})")
    return value


def _float(env: Mapping[str, str], key: str, default: float, low: float, high: float) -> float:
    raw = env.get(key)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{key} must be a number (got {raw!r})") from None
    if not low <= value <= high:
        raise ConfigError(f"{key} must be between {low} and {high} (got {value})")
    return value


def _name(env: Mapping[str, str], key: str, default: str) -> str:
    value = env.get(key, default).strip()
    if not value or not all(c.isalnum() or c in "-_" for c in value):
        raise ConfigError(f"{key} must be letters, digits, '-' or '_' (got {value!r})")
    return value


DT_API_URL = "https://api.disruptive-technologies.com/v2"
DT_TOKEN_URL = "https://identity.disruptive-technologies.com/oauth2/token"  # noqa: S105 (a URL)


@dataclass(frozen=True)
class DtApiSettings:
    """Credentials and addresses for DT's REST API (``connector``, ``backfill``, ``dev --ngrok``)."""

    key_id: str
    secret: str = field(repr=False)
    email: str
    project_id: str
    api_url: str = DT_API_URL
    token_url: str = DT_TOKEN_URL
    connector_id: str = ""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> DtApiSettings:
        """Read ``DT_SERVICE_ACCOUNT_*``, ``DT_PROJECT_ID`` and friends.

        Raises:
            ConfigError: naming every missing variable.
        """
        env = os.environ if environ is None else environ
        required = (
            "DT_SERVICE_ACCOUNT_KEY_ID",
            "DT_SERVICE_ACCOUNT_SECRET",
            "DT_SERVICE_ACCOUNT_EMAIL",
            "DT_PROJECT_ID",
        )
        missing = [name for name in required if not env.get(name, "").strip()]
        if missing:
            raise ConfigError(
                f"DT REST API access needs {', '.join(missing)} (a DT service account with the "
                "Project Developer role, and the project id)"
            )
        return cls(
            key_id=env["DT_SERVICE_ACCOUNT_KEY_ID"].strip(),
            secret=env["DT_SERVICE_ACCOUNT_SECRET"].strip(),
            email=env["DT_SERVICE_ACCOUNT_EMAIL"].strip(),
            project_id=env["DT_PROJECT_ID"].strip(),
            api_url=_url(env, "DT_API_URL", DT_API_URL),
            token_url=_url(env, "DT_TOKEN_URL", DT_TOKEN_URL),
            connector_id=env.get("DT_CONNECTOR_ID", "").strip(),
        )

    @staticmethod
    def configured(environ: Mapping[str, str] | None = None) -> bool:
        """True when the service-account variables are set at all."""
        env = os.environ if environ is None else environ
        return bool(env.get("DT_SERVICE_ACCOUNT_KEY_ID", "").strip())
