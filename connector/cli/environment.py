"""The environment the operator commands run with.

``setup``, ``doctor``, ``failed`` and ``backfill`` need the deployment's Redis. On a laptop that is
often the embedded one ``dt-connector dev`` started on a free port in another terminal: with
``REDIS_URL`` unset they use the URL ``dev`` announced in its state directory, and say so, with the
development signature secret ``dev`` verifies with when none is configured (the settings insist on one).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

from connector.cli.dev.embedded_redis import announced_url
from connector.cli.dev.secret import read_dev_secret
from connector.core.settings import env_text

STATE_DIR = Path(".dt-connector")
"""Per-checkout development state (embedded Redis data, generated dev secret); gitignored."""


def tool_environ(environ: Mapping[str, str], state_dir: Path = STATE_DIR) -> Mapping[str, str]:
    """``environ``, with ``REDIS_URL`` taken from a running ``dt-connector dev`` when it is unset."""
    if env_text(environ, "REDIS_URL"):
        return environ
    url = announced_url(state_dir)
    if url is None:
        return environ
    print(f"dt-connector: REDIS_URL is unset; using the Redis of `dt-connector dev` ({url})", file=sys.stderr)
    chosen = {**environ, "REDIS_URL": url}
    verifying = any(env_text(environ, name) for name in ("DT_SIGNATURE_SECRET", "DT_ORG_ID", "DT_ASYMMETRIC_SIGNATURE"))
    secret = None if verifying else read_dev_secret(state_dir)
    if secret:
        chosen["DT_SIGNATURE_SECRET"] = secret
    return chosen
