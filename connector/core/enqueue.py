"""Dedupe and enqueue a verified push in one atomic Redis step: the receive path's only I/O, and backfill's way in.

One Lua script, one round trip per push:

1. claim ``dt:seen:<eventId>`` with ``SET NX EX``; if it already exists the event was
   queued before: answer "duplicate";
2. otherwise write one RQ job hash per destination and push the ids on the queue.

Because Redis runs a script atomically, concurrent deliveries of one event yield exactly
one set of jobs, and there is no window in which the id is claimed but not queued: a
process that dies before the script runs leaves nothing behind, so DT's redelivery gets
through. (A ``SET NX`` followed by an enqueue has that window; putting both in one
MULTI does not help because MULTI is not conditional.) Redis does not roll a script
back when a command in it fails, so the writes run under ``pcall`` and any failure
deletes the claim before the error is returned: the redelivery is queued again — a
possible duplicate job, never a lost event. (The jobs queued before the failure are still
counted in the job ledger, so the accounting stays exact.) Workers send the eventId downstream as an
idempotency key for that case.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from redis import Redis
from redis.exceptions import NoScriptError, RedisError

from connector.core.errors import QueueUnavailable
from connector.core.jobspec import JobTemplate, job_description, job_id, job_payload, rq_timestamp
from connector.core.keys import JOB_LEDGER, JOB_PREFIX, PUSH_COUNTERS, QUEUE_PREFIX, QUEUES_SET, SEEN_PREFIX
from connector.core.settings import Settings

# The job fields that never vary (timeout, TTLs, status, origin, ...) are baked into the
# script text as literals at start-up, so each push sends only what differs: redis-py's
# argument packing, not Redis, was the largest cost when they travelled as ARGV (45 → 7 items).
# KEYS: 1 marker, 2 queue list, 3 push counters (metrics), 4 job ledger, 5.. one job hash per destination
# ARGV: 1 marker TTL, 2 RQ timestamp, then per job: id, data, description
# The counters ride along in the same call: metrics cost the push path no round trip, and the
# ledger's ``created`` moves in the same atomic step as the jobs it counts.
_SCRIPT_TEMPLATE = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  redis.call('HINCRBY', KEYS[3], 'duplicate', 1)
  return 0
end
local pos = 3
for k = 5, #KEYS do
  local reply = redis.pcall('HSET', KEYS[k], 'data', ARGV[pos + 1], 'description', ARGV[pos + 2],
                            'created_at', ARGV[2], 'enqueued_at', ARGV[2]{static_fields})
  if type(reply) == 'table' and reply.err then
    redis.call('DEL', KEYS[1])
    redis.call('HINCRBY', KEYS[4], 'created', k - 5)
    return reply
  end
  reply = redis.pcall('RPUSH', KEYS[2], ARGV[pos])
  if type(reply) == 'table' and reply.err then
    redis.call('DEL', KEYS[1])
    redis.call('HINCRBY', KEYS[4], 'created', k - 5)
    return reply
  end
  pos = pos + 3
end
redis.call('HINCRBY', KEYS[3], 'accepted', 1)
redis.call('HINCRBY', KEYS[4], 'created', #KEYS - 4)
return 1
"""


def dedupe_and_enqueue_script(template: JobTemplate) -> str:
    """The Lua source for ``template``: constant job fields inlined as string literals."""
    return _SCRIPT_TEMPLATE.replace("{static_fields}", "".join(f", {_lua_literal(v)}" for v in template.static_fields))


_JOB_PREFIX = JOB_PREFIX.encode()


def _bulk(value: bytes) -> bytes:
    """``value`` as a RESP bulk string."""
    return b"$%d\r\n%s\r\n" % (len(value), value)


def _lua_literal(value: bytes) -> str:
    """A Lua string literal for arbitrary bytes (decimal escapes for anything unusual)."""
    safe = set(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.:/ ")
    return '"' + "".join(chr(b) if b in safe else f"\\{b:03d}" for b in value) + '"'


class Enqueuer:
    """Queues each new event once per destination; remembers ids for ``dedupe_ttl_s``."""

    def __init__(
        self,
        redis: Redis,
        *,
        queue_name: str,
        destinations: Sequence[str],
        dedupe_ttl_s: int,
        template: JobTemplate,
    ) -> None:
        self._redis = redis
        # Written out instead of redis-py's Script (which sends EVALSHA through the generic
        # execute_command layer and reloads the script on NOSCRIPT): with Script the receiver
        # fell from 0.80 to 0.68 of durable-min's requests per second, and each push cost
        # 48 µs more inside the web process (bench.ingress with wrk and bench.profile_receiver,
        # python-svc, 2026-12-04).
        self._source = dedupe_and_enqueue_script(template)
        self._sha = hashlib.sha1(self._source.encode(), usedforsecurity=False).hexdigest()
        self._queue_key = f"{QUEUE_PREFIX}{queue_name}"
        self._destinations = tuple(destinations)
        self._registered = False
        # EVALSHA <sha> <numkeys> KEYS... ARGV...: everything constant is encoded once.
        key_count = 4 + len(self._destinations)
        arg_count = 3 + key_count + 2 + 3 * len(self._destinations)
        self._head = b"*%d\r\n" % arg_count + b"".join(
            _bulk(part) for part in (b"EVALSHA", self._sha.encode(), str(key_count).encode())
        )
        self._queue_bulk = b"".join(_bulk(k.encode()) for k in (self._queue_key, PUSH_COUNTERS, JOB_LEDGER))
        self._descriptions = {d: _bulk(job_description(d).encode()) for d in self._destinations}
        self._ttl_bulk = _bulk(str(dedupe_ttl_s).encode())

    @classmethod
    def from_settings(cls, settings: Settings, redis: Redis) -> Enqueuer:
        """The dedupe+enqueue step ``settings`` describe: the receiver's, and backfill's."""
        return cls(
            redis,
            queue_name=settings.queue_name,
            destinations=settings.destinations,
            dedupe_ttl_s=settings.dedupe_ttl_s,
            template=JobTemplate.from_rq(queue_name=settings.queue_name, timeout_s=settings.job_timeout_s),
        )

    def _send(self, command: bytes) -> Any:
        """Send one pre-encoded command on a pooled connection and read its reply.

        This is redis-py's own connection and reply parser without the generic
        ``execute_command`` layer (argument encoding, retry wrapper, reply callbacks),
        which cost more per push than everything else in the receiver. The pool hands
        out a connection only after checking it is still open (a Redis restart leaves
        stale ones) and reconnects otherwise; a connection that fails mid-command is
        closed by redis-py and the push is answered 503, which DT retries.
        """
        pool = self._redis.connection_pool
        connection = pool.get_connection()
        try:
            connection.send_packed_command([command])  # type: ignore[no-untyped-call]
            return connection.read_response()
        finally:
            pool.release(connection)

    def register_queue(self) -> None:
        """Add the queue to RQ's registry of queues (what ``rq info`` lists).

        Done once per process rather than per push; the worker registers it too.

        Raises:
            RedisError: Redis is unreachable.
        """
        self._redis.sadd(QUEUES_SET, self._queue_key)
        self._registered = True

    def enqueue(self, event_id: str, body: bytes, *, received_at: float, replay: bool = False) -> bool:
        """Queue ``body`` for every destination unless ``event_id`` was seen.

        ``replay`` marks an event taken from DT's history (see ``job_payload``).

        Returns:
            True when jobs were queued, False for a duplicate (already queued).

        Raises:
            QueueUnavailable: Redis is unreachable or refused the write; nothing was
                acknowledged and the id is not marked seen.
        """
        if not self._registered:
            try:
                self.register_queue()
            except RedisError as exc:
                raise QueueUnavailable(
                    "redis-unavailable", f"could not queue the event ({type(exc).__name__})"
                ) from None
        parts = [self._head, _bulk((SEEN_PREFIX + event_id).encode()), self._queue_bulk]
        payloads: list[bytes] = []
        for destination in self._destinations:
            jid = job_id(destination, event_id).encode()
            parts.append(_bulk(_JOB_PREFIX + jid))
            payloads.append(_bulk(jid))
            payloads.append(_bulk(job_payload(destination, body, received_at, replay=replay)))
            payloads.append(self._descriptions[destination])
        parts.append(self._ttl_bulk)
        parts.append(_bulk(rq_timestamp(received_at)))
        parts.extend(payloads)
        command = b"".join(parts)
        try:
            try:
                result = self._send(command)
            except NoScriptError:
                # After a Redis restart the script cache is empty; load it and retry once
                # (nothing ran, so nothing is done twice).
                self._redis.script_load(self._source)
                result = self._send(command)
            return bool(result)
        except RedisError as exc:
            raise QueueUnavailable("redis-unavailable", f"could not queue the event ({type(exc).__name__})") from None
