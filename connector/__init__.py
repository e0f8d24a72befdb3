"""dt-connector's web side, and the contracts both sides share.

* ``connector.receive``: ``POST /dt/events`` — verify, parse, dedupe and enqueue (``connector.app``
  builds the Flask app; ``connector:create_app()`` is what gunicorn serves);
* ``connector.ops``: ``/metrics`` and ``/status``;
* ``connector.dt``: DT's REST API and backfill; ``connector.dev``: the local stack and a DT simulator;
* ``connector.cli``: the ``dt-connector`` command, the only module that imports both sides;
* shared with ``workers``: ``settings``, ``keys`` (every Redis key), ``jobspec`` (what a job is),
  ``events`` (DT's event types), ``deadletters``, ``errors``, ``redis_conn``, ``logs``.

The web side never imports ``workers`` (``setup.cfg``'s import contracts, checked in CI).
"""

from connector.app import create_app

__all__ = ["create_app"]
