"""Errors raised on the receive path, each carrying the HTTP status it maps to.

Hierarchy::

    ConfigError                  bad or missing settings; the process must not start
    RejectedPush                 a push we answer with a non-200 status
    ├── BadSignature      401    missing, forged, expired or body-mismatched signature
    ├── MalformedPush     400    signed, but not a DT push
    ├── PushTooLarge      413    body over the configured limit
    └── QueueUnavailable  503    Redis unreachable or the enqueue failed; DT retries

``reason`` is a short machine-readable slug (used in logs and, later, metrics);
``detail`` is a sentence for humans. Neither ever contains a secret or a token.
"""

from __future__ import annotations


class ConfigError(Exception):
    """A setting is missing or invalid. The message names the environment variable."""


class RejectedPush(Exception):
    """Base for every push we refuse. Subclasses fix ``status_code``."""

    status_code = 400
    closes_connection = False
    """Answer with ``Connection: close``: what is left of the request on the connection cannot be
    told from the next one."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class BadSignature(RejectedPush):
    """The push is not provably from DT for this connector (401; DT retries it)."""

    status_code = 401


class MalformedPush(RejectedPush):
    """The push verified but is not a DT event envelope (400)."""

    status_code = 400


class BadFraming(MalformedPush):
    """The body could not be read: a malformed chunked encoding, a body cut short (400)."""

    closes_connection = True


class PushTooLarge(RejectedPush):
    """The body exceeds ``MAX_BODY_BYTES`` (413); the rest of it is left unread."""

    status_code = 413
    closes_connection = True


class QueueUnavailable(RejectedPush):
    """We could not make the event durable; answer 503 so DT redelivers it."""

    status_code = 503
