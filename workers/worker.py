"""The worker process (Procfile ``worker:``): RQ workers on the connector's queue.

A forward spends nearly all its time waiting for the downstream (50 ms and more), so one
job at a time cannot keep up with DT: ``WORKER_PROCESSES`` (default 20) non-forking
``SimpleWorker`` processes run under RQ's ``WorkerPool``, forked from one parent so they
share its memory pages, each holding one keep-alive session. Each job is a few ms of
CPU, so forking a work-horse per job (RQ's default) would cost more than the job.
On Heroku's SIGTERM the pool asks every worker to finish its current job — a forward is
bounded by ``FORWARD_TIMEOUT_S`` (10 s) and the job timeout (20 s) — and exits inside
the 30 s before SIGKILL. Workers run the scheduler, so retries with intervals fire.
With ``WORKER_PROCESSES=1`` a single ``HerokuWorker`` (fork per job) runs instead.
"""

from __future__ import annotations

import logging
from typing import Any

from rq import Queue, SimpleWorker
from rq.serializers import JSONSerializer
from rq.worker import HerokuWorker
from rq.worker_pool import WorkerPool

from connector.config import Settings
from connector.logs import configure as configure_logging
from connector.redis_conn import connect
from connector.rqjob import QUEUES_SET

log = logging.getLogger("workers")

MAINTENANCE_INTERVAL_S = 60
"""How often each worker cleans RQ's registries (RQ's default is 10 min). Delivered jobs
expire 10 s after success but stay listed in the finished registry until a cleaning;
and a job abandoned by a killed worker is retried only once a cleaning notices it."""


class ConnectorWorker(SimpleWorker):
    """RQ's in-process worker, cleaning its registries every ``MAINTENANCE_INTERVAL_S``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("maintenance_interval", MAINTENANCE_INTERVAL_S)
        super().__init__(*args, **kwargs)


def run_worker(settings: Settings, *, burst: bool = False, name: str | None = None) -> bool:
    """Consume the connector queue until stopped (or until empty with ``burst``)."""
    configure_logging()
    # RQ's blocking dequeue waits longer than a push-path timeout, so no socket timeout here.
    redis = connect(settings.redis_url, timeout_s=None, tls_verify=settings.redis_tls_verify)
    queue = Queue(settings.queue_name, connection=redis, serializer=JSONSerializer)
    redis.sadd(QUEUES_SET, queue.key)
    if settings.worker_processes > 1:
        log.info("worker pool of %d consuming queue %s", settings.worker_processes, settings.queue_name)
        pool = WorkerPool(
            [settings.queue_name],
            connection=redis,
            num_workers=settings.worker_processes,
            worker_class=ConnectorWorker,
            serializer=JSONSerializer,
        )
        pool.start(burst=burst, logging_level="WARNING")
        return True
    worker = HerokuWorker(
        [queue], connection=redis, serializer=JSONSerializer, name=name, maintenance_interval=MAINTENANCE_INTERVAL_S
    )
    log.info("worker consuming queue %s", settings.queue_name)
    return bool(worker.work(burst=burst, with_scheduler=True, logging_level="WARNING"))
