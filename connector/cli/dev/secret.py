"""The development signature secret: one file in the state directory, made once, never printed.

``dt-connector dev`` makes it when no ``DT_SIGNATURE_SECRET`` is set; ``send-test-event``
signs with it, so the two agree without the user copying a secret around.
"""

from __future__ import annotations

import secrets
from pathlib import Path

FILE_NAME = "dev-secret"


def dev_secret_path(state_dir: Path) -> Path:
    return state_dir / FILE_NAME


def ensure_dev_secret(state_dir: Path) -> Path:
    """The secret file in ``state_dir``, created (mode 0600, 32 random bytes) when missing."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = dev_secret_path(state_dir)
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(32) + "\n")
    return path


def read_dev_secret(state_dir: Path) -> str | None:
    """The secret made by :func:`ensure_dev_secret`, or None when ``dev`` has not run yet."""
    path = dev_secret_path(state_dir)
    return path.read_text().strip() if path.exists() else None
