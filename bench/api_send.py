"""Send-message throughput and latency with C concurrent clients, against the raw driver insert + JetStream publish.

Fechatter: C users of one chat, each on its own keep-alive connection, POST
/api/chats/{id}/messages back to back. The baseline does the same work without HTTP, from
this process: with pymongo's AsyncMongoClient a `$inc` of the chat's counter and an
insert_one of a message document of the same shape and size, then a JetStream publish of the
same event envelope (waiting for its ack), C coroutines at a time, on the same nx-27017 and
nats-server. Both run with the notify role stopped, so nothing else takes the 2 cores.
The CPU seconds each process spent per message show where the time goes.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
from typing import Any

import psutil
from pymongo import ReturnDocument

from bench.common import cli, print_table, saved, stamp, summarize_ms, now
from bench.stack import FechatterStack, workdir


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    result = {}
    for name, pid in pids.items():
        try:
            times = psutil.Process(pid).cpu_times()
            result[name] = times.user + times.system
        except psutil.Error:
            result[name] = float("nan")
    return result


async def timed_run(send_one, *, clients: int, per_client: int, warmup: int, pids: dict[str, int]) -> dict:
    """`clients` coroutines each calling send_one(client, i) per_client times; latency and throughput."""
    for i in range(warmup):
        await send_one(0, -1 - i)
    latencies: list[float] = []
    errors: list[str] = []

    async def client(c: int) -> None:
        for i in range(per_client):
            began = now()
            try:
                await send_one(c, i)
            except Exception as e:  # noqa: BLE001 - counted and reported
                errors.append(repr(e))
                continue
            latencies.append(now() - began)

    cpu_before = cpu_seconds(pids)
    began = now()
    await asyncio.gather(*(client(c) for c in range(clients)))
    elapsed = now() - began
    cpu_after = cpu_seconds(pids)
    sent = len(latencies)
    return {
        "messages": sent, "errors": len(errors), "first_errors": errors[:3], "seconds": elapsed,
        "per_second": sent / elapsed if elapsed else 0.0, "latency": summarize_ms(latencies),
        "cpu_ms_per_message": {name: (cpu_after[name] - cpu_before[name]) * 1000 / max(sent, 1) for name in pids},
    }


async def run_raw(stack: FechatterStack, args) -> dict:
    """The same work as a send, straight through the drivers."""
    from app.config import load_config
    from app.events import MESSAGE_CREATED, EventBus, connect_nats, encode_event, make_event
    from app.store import Store, isoformat, make_client, new_id, utcnow

    config = load_config(env={}, overrides={"nats": {"url": stack.nats.url, "stream": "BENCH_RAW",
                                                       "subject_prefix": "benchraw"}})
    client = make_client(stack.mongo.uri, 10_000)
    store = Store(client, "bench_raw")
    await store.ensure_indexes()
    nc = await connect_nats(stack.nats.url, name="fechatter-bench-raw")
    bus = EventBus(nc, config.nats)
    await bus.ensure_stream()
    workspace_id, sender_id, chat_id = new_id(), new_id(), new_id()
    await store.chats.insert_one({"_id": chat_id, "workspace_id": workspace_id, "type": "group",
                                  "name": "bench", "last_seq": 0, "created_at": utcnow()})

    async def send_one(c: int, i: int) -> None:
        chat = await store.chats.find_one_and_update(
            {"_id": chat_id}, {"$inc": {"last_seq": 1}}, projection={"last_seq": 1},
            return_document=ReturnDocument.AFTER)
        created_at = utcnow()
        doc = {"_id": new_id(), "chat_id": chat_id, "seq": chat["last_seq"], "sender_id": sender_id,
               "content": stamp(i, now()), "files": [], "reply_to": None, "created_at": created_at,
               "edited_at": None, "deleted": False}
        await store.messages.insert_one(doc)
        data = {**doc, "id": doc.pop("_id"), "created_at": isoformat(created_at)}
        event = make_event(MESSAGE_CREATED, data, chat_id=chat_id, workspace_id=workspace_id, actor_id=sender_id)
        await bus.js.publish(bus.subjects.for_event(event), encode_event(event),
                             headers={"Nats-Msg-Id": event.id}, timeout=5)

    try:
        return await timed_run(send_one, clients=args.clients, per_client=args.messages // args.clients,
                               warmup=args.warmup, pids={"bench (raw driver)": psutil.Process().pid,
                                                         "nx-27017": stack.mongo.pid, "nats-server": stack.nats.pid})
    finally:
        await bus.close()
        await client.close()


async def run_api(stack: FechatterStack, args) -> dict:
    senders = stack.users[: args.clients]
    conns = [stack.connection() for _ in senders]

    async def send_one(c: int, i: int) -> None:
        await stack.send(i, conns[c], sender=senders[c])

    try:
        return await timed_run(send_one, clients=len(senders), per_client=args.messages // len(senders),
                               warmup=args.warmup, pids={"api": stack.api.pid, "nx-27017": stack.mongo.pid,
                                                         "nats-server": stack.nats.pid,
                                                         "bench (client)": psutil.Process().pid})
    finally:
        for conn in conns:
            conn.close()


def report(ours: dict, raw: dict, clients: int) -> None:
    print_table(f"api_send: {clients} concurrent clients, {ours['messages']} messages", [
        ("messages per second", ours["per_second"], raw["per_second"]),
        ("latency p50 (ms)", ours["latency"]["p50_ms"], raw["latency"]["p50_ms"]),
        ("latency p99 (ms)", ours["latency"]["p99_ms"], raw["latency"]["p99_ms"]),
        ("latency max (ms)", ours["latency"]["max_ms"], raw["latency"]["max_ms"]),
        ("errors", ours["errors"], raw["errors"]),
    ], headers=("fechatter", "raw", "ratio"))
    print("CPU ms per message, by process:")
    for label, result in (("fechatter", ours), ("raw", raw)):
        parts = ", ".join(f"{name} {ms:.2f}" for name, ms in result["cpu_ms_per_message"].items())
        print(f"  {label:10} {parts}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients C (default 8)")
    parser.add_argument("--messages", type=int, default=1000, help="messages in all (default 1,000)")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--mongo-memory", action="store_true", help="nx-27017 in memory instead of files")


async def run(args) -> dict[str, Any]:
    directory = workdir("api-send")
    stack = FechatterStack(directory, mongo_memory=args.mongo_memory)
    results: dict[str, Any] = {}
    try:
        await stack.start(notify=False)
        await stack.seed(max(3, args.clients))
        print(f"api_send: raw driver + publish, {args.clients} concurrent", flush=True)
        results["raw"] = await run_raw(stack, args)
        print(f"api_send: POST /api/chats/{{id}}/messages, {args.clients} concurrent", flush=True)
        results["fechatter"] = await run_api(stack, args)
    finally:
        await stack.stop()
        shutil.rmtree(directory, ignore_errors=True)
    report(results["fechatter"], results["raw"], args.clients)
    return saved("api_send", args, results)


def main() -> None:
    cli(__doc__, add_arguments, run)


if __name__ == "__main__":
    main()
