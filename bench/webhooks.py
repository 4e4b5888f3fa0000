"""Outgoing webhook deliveries per second of one `main.py --role=worker` process, against a bare POST loop to the same receiver."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import tornado.web
from tornado.httpclient import AsyncHTTPClient
from tornado.httpserver import HTTPServer

from app.config import load_config
from app.events import MESSAGE_CREATED, EventBus, connect_nats, encode_event, make_event
from app.processes import free_port
from app.store import Store, isoformat, make_client, new_id, new_secret, utcnow
from bench.common import spawn, wait_http_ok
from bench.stack import FechatterStack, workdir

HOST = "127.0.0.1"


class Receiver:
    def __init__(self) -> None:
        self.count = 0
        self.done = asyncio.Event()
        self.target = 0
        receiver = self

        class Hook(tornado.web.RequestHandler):
            def post(self) -> None:
                receiver.count += 1
                if receiver.target and receiver.count >= receiver.target:
                    receiver.done.set()
                self.finish("ok")

        self.port = free_port()
        self.server = HTTPServer(tornado.web.Application([(r"/.*", Hook)]))
        self.server.listen(self.port, HOST)

    def expect(self, n: int) -> None:
        self.count, self.target, self.done = 0, n, asyncio.Event()


async def baseline(receiver: Receiver, body: bytes, webhooks: int, events: int) -> float:
    """The floor: one sequential POST loop per webhook (per-webhook order allows no more), no queue, no checks."""
    client = AsyncHTTPClient(force_instance=True, max_clients=64)
    receiver.expect(webhooks * events)

    async def loop(w: int) -> None:
        for _ in range(events):
            await client.fetch(f"http://{HOST}:{receiver.port}/b{w}", method="POST", body=body,
                               follow_redirects=False, headers={"Content-Type": "application/json"})

    began = time.perf_counter()
    await asyncio.gather(*(loop(w) for w in range(webhooks)))
    elapsed = time.perf_counter() - began
    client.close()
    return webhooks * events / elapsed


async def run(args: argparse.Namespace) -> dict[str, float]:
    stack = FechatterStack(workdir("webhooks"))
    await stack.start_servers()
    env = {**stack.env(), "FECHATTER_WEBHOOKS_ALLOWED_HOSTS": f'["{HOST}"]',
           "FECHATTER_WORKER_PORT": str(free_port()), "FECHATTER_WORKER_POLL_SECONDS": "0.05"}
    config = load_config(env=env)
    receiver = Receiver()
    client = make_client(stack.mongo.uri, 5000)
    store = Store(client, config.mongo.database)
    await store.ensure_indexes()
    bus = EventBus(await connect_nats(stack.nats.url, "bench-webhooks"), config.nats)
    await bus.ensure_stream()
    worker = None
    try:
        workspace_id, chat_id = new_id(), new_id()
        now = utcnow()
        for w in range(args.webhooks):
            await store.webhooks.insert_one({
                "_id": new_id(), "workspace_id": workspace_id, "url": f"http://{HOST}:{receiver.port}/w{w}",
                "events": [MESSAGE_CREATED], "chat_ids": None, "secret": new_secret(), "created_by": "bench",
                "created_at": now, "created_ts": isoformat(now), "lease_owner": None, "lease_until": 0.0})
        main = str(Path(__file__).resolve().parent.parent / "main.py")
        worker = await spawn("worker", [sys.executable, main, "--role=worker"], stack.workdir / "worker.log", env)
        await wait_http_ok(HOST, config.worker.port, proc=worker.proc)
        while True:
            try:
                await bus.js.consumer_info(bus.stream, bus.webhook_consumer_name())
                break
            except Exception:  # noqa: BLE001 - the worker has not made it yet
                await asyncio.sleep(0.05)
        sample = make_event(MESSAGE_CREATED, {"id": new_id(), "content": "x" * 200}, chat_id=chat_id,
                            workspace_id=workspace_id)
        body = encode_event(sample)
        floor = await baseline(receiver, body, args.webhooks, args.events)

        receiver.expect(args.webhooks * args.events)
        began = time.perf_counter()
        for i in range(args.events):
            await bus.publish(make_event(MESSAGE_CREATED, {"id": new_id(), "content": "x" * 200, "n": i},
                                         chat_id=chat_id, workspace_id=workspace_id))
        await asyncio.wait_for(receiver.done.wait(), timeout=300)
        rate = args.webhooks * args.events / (time.perf_counter() - began)
        return {"deliveries_per_second": rate, "baseline_per_second": floor}
    finally:
        if worker is not None:
            await worker.stop()
        receiver.server.stop()
        await bus.close()
        await client.close()
        await stack.nats.stop()
        await stack.mongo.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.webhooks", description=__doc__)
    parser.add_argument("--webhooks", type=int, default=8, help="webhooks of the workspace (each gets every event)")
    parser.add_argument("--events", type=int, default=250, help="message.created events published")
    asyncio.run(run_and_report(parser.parse_args(argv)))


async def run_and_report(args: argparse.Namespace) -> None:
    result = await run(args)
    print(f"webhooks: {args.webhooks} webhooks x {args.events} events, one worker process: "
          f"{result['deliveries_per_second']:.0f} deliveries/s; "
          f"baseline (bare sequential POST loop per webhook, same receiver): {result['baseline_per_second']:.0f}/s "
          f"({result['deliveries_per_second'] / result['baseline_per_second']:.0%})", flush=True)


if __name__ == "__main__":
    main()
