"""What gunicorn's master process loads before its gevent workers patch the standard library."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.support.helpers import ROOT

MUST_FOLLOW_THE_PATCHING = ("redis", "rq", "flask", "werkzeug", "requests", "urllib3", "jwt")
"""Libraries that keep unpatched ``socket``/``ssl`` references when imported before gevent's
``patch_all``: a blocking Redis call would then block every request of the worker (measured: the
receiver's CPU per push rose by a sixth when the settings module imported RQ)."""


def test_the_master_imports_no_library_that_must_follow_gevents_patching():
    """The master loads the config and the worker class; the app is loaded by each worker, after."""
    script = (
        "import json, sys; import connector.web.gunicorn_config, connector.web.gunicorn_worker; "
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {MUST_FOLLOW_THE_PATCHING!r})))"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []
