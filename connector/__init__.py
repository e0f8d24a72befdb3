"""dt-connector's web side, and the contracts both sides share.

* ``connector.receive``: ``POST /dt/events`` — verify, parse, dedupe and enqueue (``connector.app``
  builds the Flask app; ``connector:create_app()`` is what gunicorn serves);
* ``connector.ops``: ``/metrics`` and ``/status``;
* ``connector.dt``: DT's REST API and backfill; ``connector.dev``: the local stack and a DT simulator;
* ``connector.cli``: the ``dt-connector`` command, the only module that imports both sides;
* shared with ``workers``: ``settings``, ``keys`` (every Redis key), ``jobspec`` (what a job is),
  ``events`` (DT's event types), ``deadletters``, ``errors``, ``redis_conn``, ``logs``.

The web side never imports ``workers`` (``setup.cfg``'s import contracts, checked in CI).

``create_app`` is imported on first use: gunicorn's master loads ``connector.gunicorn_config``
(and so this package) before its workers apply gevent's monkey-patching, and Flask, requests,
urllib3 and redis must first be imported after it, or they keep unpatched ``ssl`` classes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from connector.app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from connector.app import create_app

        return create_app
    raise AttributeError(f"module 'connector' has no attribute {name!r}")
