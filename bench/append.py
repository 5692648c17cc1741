#!/usr/bin/env python3
"""Append benchmark (issue 17 item 1): the edge's append to the log against a bare append, in the same run.

For each shape (1 or 100 events a request, with or without idempotency keys) it times ``--requests`` appends of
fresh commands through ``core.queue.RedisStreamLog.append`` (idempotency reservations, serialisation, the XADDs,
the drain trigger), and, as the ceiling, the same commands already serialised and appended with one
``MULTI``/``XADD``…/``EXEC``: what any edge pays to make a request durable. Prints ms per append and the ratio.

    python bench/append.py
    python bench/append.py --requests 1000 --redis-url redis://127.0.0.1:6379/9
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
T0 = datetime(2026, 11, 2, tzinfo=UTC)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=300, help="appends per shape")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/9", help="a Redis database it may flush")
    args = parser.parse_args(argv)

    import orjson
    import redis

    from core.commands import EventCommand, command_to_dict
    from core.ids import new_id
    from core.queue import RedisStreamLog
    from core.tenant import Tenant

    client = redis.Redis.from_url(args.redis_url)
    client.flushdb()
    log = RedisStreamLog(client, lambda _partition: None)

    def request(size: int, keyed: bool) -> list[EventCommand]:
        return [EventCommand(id=new_id("evt", T0), event_type="page_view", occurred_at=T0, received_at=T0,
                             visitor_key=f"visitor-{n}", url="https://shop.example/p/1?utm_source=google",
                             properties={"n": n}, idempotency_key=uuid.uuid4().hex if keyed else None)
                for n in range(size)]

    print(f"append benchmark: {args.requests} appends per shape, Redis {args.redis_url}")
    try:
        for size, keyed in ((1, False), (1, True), (100, False), (100, True)):
            tenant = Tenant(f"acct_{uuid.uuid4().hex[:12]}", "test")
            requests = [request(size, keyed) for _ in range(args.requests)]
            payloads = [[orjson.dumps(command_to_dict(c)) for c in r] for r in requests]
            began = time.perf_counter()
            for payload in payloads:
                pipe = client.pipeline(transaction=True)
                for data in payload:
                    pipe.xadd(f"bare:{tenant.account_id}", {"c": data})
                pipe.execute()
            bare = (time.perf_counter() - began) / args.requests
            began = time.perf_counter()
            for commands in requests:
                log.append(tenant, commands)
            ours = (time.perf_counter() - began) / args.requests
            print(f"  {size:3d} event(s), keys {'yes' if keyed else 'no ':3}: append {ours * 1e3:6.3f} ms, "
                  f"bare MULTI/XADD {bare * 1e3:6.3f} ms, ratio bare/append {bare / ours:.2f}")
    finally:
        client.flushdb()
    return 0


if __name__ == "__main__":
    sys.exit(main())
