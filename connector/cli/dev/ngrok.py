"""``dt-connector dev --ngrok``: a public HTTPS URL for the local receiver (I/O edge).

Starts the ngrok agent with the repository's ``ngrok.yml`` (agent config v3; the
authtoken comes from the user's own ngrok config, never from this repository), then
asks the agent's local API (``NGROK_API_URL``, default ``http://127.0.0.1:4040``) for
the public ``https://`` URL of the tunnel to our port. DT accepts HTTPS only.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import requests

DEFAULT_API_URL = "http://127.0.0.1:4040"
ENDPOINT_NAME = "dt-connector"
"""The endpoint in ``ngrok.yml``."""
NGROK_YML = Path(__file__).resolve().parents[3] / "ngrok.yml"
"""The repository's agent config (a checkout's top level, where Heroku and ``pip install -e .`` keep it)."""
NGROK_YML_PORT = 5000
"""The upstream port ``ngrok.yml`` names (``dt-connector dev``'s default)."""


class NgrokError(Exception):
    """The agent could not be started or reported no HTTPS URL."""


def public_https_url(tunnels: Iterable[Mapping[str, Any]], *, port: int) -> str | None:
    """The public https URL among the agent's tunnels that forwards to ``port``. Pure.

    Accepts the agent API's ``/api/tunnels`` entries (``public_url``, ``config.addr``)
    and ``/api/endpoints`` entries (``url``, ``upstream.url``).
    """
    fallback = None
    for tunnel in tunnels:
        url = str(tunnel.get("public_url") or tunnel.get("url") or "")
        if not url.startswith("https://"):
            continue
        config = tunnel.get("config") or {}
        upstream = tunnel.get("upstream") or {}
        addr = str(config.get("addr") or upstream.get("url") or "")
        if addr.rstrip("/").endswith(f":{port}") or addr == str(port):
            return url.rstrip("/")
        fallback = fallback or url.rstrip("/")
    return fallback


def wait_for_url(api_url: str, *, port: int, timeout_s: float = 20.0, alive: Callable[[], bool] = lambda: True) -> str:
    """Poll the agent API until it reports the tunnel's https URL.

    Raises:
        NgrokError: no URL within ``timeout_s``, or the agent exited.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not alive():
            raise NgrokError("the ngrok agent exited (is your authtoken configured? run: ngrok config add-authtoken …)")
        for path, key in (("/api/tunnels", "tunnels"), ("/api/endpoints", "endpoints")):
            try:
                response = requests.get(f"{api_url}{path}", timeout=2)
                if response.status_code == 200:
                    url = public_https_url(response.json().get(key) or [], port=port)
                    if url:
                        return url
            except (requests.RequestException, ValueError, AttributeError):
                pass
        time.sleep(0.3)
    raise NgrokError(f"the ngrok agent API at {api_url} reported no https tunnel within {timeout_s:.0f} s")


def start_agent(config: Path = NGROK_YML, *, port: int, env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    """Start the agent for our endpoint, with the user's config plus ``config`` (the repository's).

    ``NGROK_BIN`` overrides the executable.

    Raises:
        NgrokError: no ngrok executable.
    """
    binary = find_binary(env)
    user_config = _user_config(env)
    configs = [str(user_config)] if user_config else []
    configs.append(str(config))
    # ngrok.yml names port 5000; any other port gets an ad-hoc endpoint.
    command = [binary, "start", ENDPOINT_NAME] if port == NGROK_YML_PORT else [binary, "http", str(port)]
    command += ["--config", ",".join(configs), "--log", "stdout", "--log-level", "warn"]
    return subprocess.Popen(command, env=dict(env), stdout=subprocess.DEVNULL, start_new_session=True)


def find_binary(env: Mapping[str, str]) -> str:
    """The ngrok executable: ``NGROK_BIN``, else ``ngrok`` on PATH.

    Raises:
        NgrokError: there is none.
    """
    binary = env.get("NGROK_BIN") or shutil.which("ngrok", path=env.get("PATH"))
    if not binary:
        raise NgrokError("ngrok is not installed (https://ngrok.com/download), or set NGROK_BIN")
    return binary


def _user_config(env: Mapping[str, str]) -> Path | None:
    """The user's own ngrok config (where ``ngrok config add-authtoken`` writes), if any."""
    candidates = [
        Path(env.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "ngrok" / "ngrok.yml",
        Path.home() / "Library" / "Application Support" / "ngrok" / "ngrok.yml",
    ]
    return next((path for path in candidates if path.is_file()), None)
