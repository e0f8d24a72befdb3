"""Dead letters in Redis: listed across read batches, in order, with filters."""

from __future__ import annotations

from redis import Redis

from connector.core import deadletters
from tests.support.samples import push_of


def test_dead_letters_list_across_read_batches_in_order_with_filters(redis: Redis):
    for n in range(450):  # more than two pipelined read batches
        destination = "moost" if n % 3 else "spot"
        deadletters.record(redis, key=f"{destination}-many{n:03d}", destination=destination,
                           push=push_of("temperature", event_id=f"many{n:03d}"), received_at=1.0,
                           reason="http-400", status=400, excerpt="", now=1000.0 + n)  # fmt: skip
    redis.delete("dt:dead:moost-many010")  # expired meanwhile: skipped, not an error
    spot = deadletters.list_dead(redis, destination="spot")
    assert [x.event_id for x in spot] == [f"many{n:03d}" for n in range(0, 450, 3)]
    moost = deadletters.list_dead(redis, destination="moost", limit=250)
    assert len(moost) == 250 and moost[0].event_id == "many001" and "many010" not in {x.event_id for x in moost}
    assert [x.failed_at for x in moost] == sorted(x.failed_at for x in moost)
