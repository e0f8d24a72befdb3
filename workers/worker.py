"""The worker process (Procfile ``worker:``): an RQ worker on the connector's queue.

Uses RQ's ``HerokuWorker``: on Heroku's SIGTERM it lets the running job wind down and
exits well inside the 30 s before SIGKILL. The scheduler runs in-process so retries
with intervals fire.
"""

from __future__ import annotations

import logging

from rq import Queue
from rq.serializers import JSONSerializer
from rq.worker import HerokuWorker

from connector.config import Settings
from connector.logs import configure as configure_logging
from connector.redis_conn import connect

log = logging.getLogger("workers")


def run_worker(settings: Settings, *, burst: bool = False, name: str | None = None) -> bool:
    """Consume the connector queue until stopped (or until empty with ``burst``)."""
    configure_logging()
    # RQ's blocking dequeue waits longer than a push-path timeout, so no socket timeout here.
    redis = connect(settings.redis_url, timeout_s=None, tls_verify=settings.redis_tls_verify)
    queue = Queue(settings.queue_name, connection=redis, serializer=JSONSerializer)
    worker = HerokuWorker([queue], connection=redis, serializer=JSONSerializer, name=name)
    log.info("worker consuming queue %s", settings.queue_name)
    return bool(worker.work(burst=burst, with_scheduler=True, logging_level="WARNING"))
