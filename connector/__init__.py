"""dt-connector's process side and tooling: everything but the job code (``workers``).

* ``connector.core``: the contracts every process shares — settings, Redis keys, DT's event types,
  the job spec, enqueueing, dead letters, errors, times, logs, Redis clients, the RQ seam;
* ``connector.web``: the web process — ``POST /dt/events`` (``receive``) and the operator pages
  (``ops``); gunicorn serves ``connector.web.app:create_app()``;
* ``connector.dt``: DT's REST API and backfill from its event history;
* ``connector.cli``: the ``dt-connector`` command, the one layer above all others, with the local
  development stack (``connector.cli.dev``).

``workers`` (the job side) imports ``connector.core`` and nothing else of this package; the web side
never imports ``workers``. ``setup.cfg``'s import contract checks both in CI.
"""
