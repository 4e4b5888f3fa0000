"""Export throughput (lines/s) and the exporting process's peak RSS at two sizes, against a raw cursor read of the same data.

On the embedded MongoDB (nx-27017 on SQLite files under a temporary directory): one workspace of
`--users` users and `--chats` chats, seeded straight into the store with documents as a send writes
them (app.services.messages.message_doc, seqs given in order; 1 message in 20 with a reaction, 1 in 50
edited once). Then, at `--messages // 10` and at `--messages`:

- baseline: the same collections read in this process by plain cursors in the same order and batches
  (users, chats, memberships, each chat's messages by seq), no decoration, no serialisation;
- export: `main.py export --workspace ID --out FILE` as a process; its peak RSS from wait4's ru_maxrss.

Flat memory shows as the same peak RSS at both sizes.

    .venv/bin/python -m bench.export                    # 250,000 messages
    .venv/bin/python -m bench.export --messages 20000   # a smoke run
"""

from __future__ import annotations

import argparse
import datetime
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from app.embedded import EmbeddedStack
from app.services.messages import message_doc
from app.store import Store, make_client, new_id, utcnow
from bench.common import cli, fmt, saved
from bench.stack import workdir

ROOT = Path(__file__).resolve().parent.parent
INSERT_BATCH = 2000
READ_BATCH = 500


async def seed(store: Store, workspace_id: str, users: int, chats: int, upto: int, have: int,
               rng: random.Random) -> None:
    """Messages `have`..`upto` spread over the chats (seqs continue where each chat stopped)."""
    user_ids = [f"u{i:06d}{workspace_id[-10:]}" for i in range(users)]
    if have == 0:
        now = utcnow()
        await store.workspaces.insert_one({"_id": workspace_id, "name": "bench", "name_key": "bench",
                                           "owner_id": user_ids[0], "invite_code": new_id(), "created_at": now})
        await store.users.insert_many([{"_id": uid, "workspace_id": workspace_id, "fullname": f"User {i}",
                                        "email": f"user{i}@bench.example", "password_hash": "x", "created_at": now}
                                       for i, uid in enumerate(user_ids)])
        await store.chats.insert_many([{"_id": f"c{c:06d}{workspace_id[-10:]}", "workspace_id": workspace_id,
                                        "type": "public_channel", "name": f"chan-{c}", "name_key": f"chan-{c}",
                                        "last_seq": 0, "created_at": now} for c in range(chats)])
        await store.members.insert_many([{"_id": f"c{c:06d}{workspace_id[-10:]} {uid}",
                                          "chat_id": f"c{c:06d}{workspace_id[-10:]}", "user_id": uid,
                                          "role": "member", "last_read_seq": 0, "joined_at": now}
                                         for c in range(chats) for uid in user_ids[:50]])
    chat_ids = [f"c{c:06d}{workspace_id[-10:]}" for c in range(chats)]
    seqs = {cid: (await store.chats.find_one({"_id": cid}))["last_seq"] for cid in chat_ids}
    start = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    words = "release build ship test review merge deploy coffee lunch plan the a of to".split()
    done = have
    while done < upto:
        n = min(INSERT_BATCH, upto - done)
        docs, reactions, marks, versions = [], [], [], []
        for i in range(n):
            cid = chat_ids[rng.randrange(chats)]
            seqs[cid] += 1
            sender = user_ids[rng.randrange(min(users, 50))]
            text = " ".join(rng.choice(words) for _ in range(8))
            doc = message_doc(cid, sender, text, created_at=start + datetime.timedelta(seconds=done + i))
            doc.update(seq=seqs[cid], ord=seqs[cid], version=new_id())
            if (done + i) % 50 == 0:
                doc.update(rev=1, edited_at=doc["created_at"])
                versions.append({"_id": f"{doc['_id']}:0", "message_id": doc["_id"], "chat_id": cid, "rev": 0,
                                 "content": "before", "content_html": "<p>before</p>\n",
                                 "edited_at": doc["created_at"]})
            if (done + i) % 20 == 0:
                reactions.append({"_id": f"{doc['_id']} {sender} tada", "chat_id": cid, "message_id": doc["_id"],
                                  "emoji": "tada", "user_id": sender, "created_at": doc["created_at"]})
                marks.append({"_id": doc["_id"], "chat_id": cid, "reactions": [f"tada {sender}"]})
            docs.append(doc)
        await store.messages.insert_many(docs, ordered=False)
        for name, extra in (("reactions", reactions), ("message_marks", marks), ("message_versions", versions)):
            if extra:
                await store.db[name].insert_many(extra, ordered=False)
        done += n
    for cid, seq in seqs.items():
        await store.chats.update_one({"_id": cid}, {"$set": {"last_seq": seq}})


async def raw_read(store: Store, workspace_id: str) -> int:
    """The floor: the same documents through plain cursors, in the export's order and batches."""
    n = 1
    await store.workspaces.find_one({"_id": workspace_id})
    async for _ in store.users.find({"workspace_id": {"$eq": workspace_id}}).sort([("_id", 1)]).batch_size(READ_BATCH):
        n += 1
    chat_ids = [c["_id"] async for c in store.chats.find({"workspace_id": {"$eq": workspace_id}}, {"_id": 1})
                .sort([("_id", 1)])]
    n += len(chat_ids)
    for cid in chat_ids:
        async for _ in store.members.find({"chat_id": {"$eq": cid}}).sort([("_id", 1)]).batch_size(READ_BATCH):
            n += 1
    for cid in chat_ids:
        after = -1
        while True:
            page = await store.messages.find({"chat_id": {"$eq": cid}, "seq": {"$gt": after}}).sort(
                [("seq", 1)]).limit(READ_BATCH).to_list()
            n += len(page)
            if len(page) < READ_BATCH:
                break
            after = page[-1]["seq"]
    return n


def export_process(mongo_uri: str, database: str, workspace_id: str, out: Path) -> tuple[float, int]:
    """`main.py export` as a process: (seconds, peak RSS bytes)."""
    env = {**os.environ, "FECHATTER_MONGO_URI": mongo_uri, "FECHATTER_MONGO_DATABASE": database,
           "FECHATTER_MONGO_TIMEOUT_MS": "60000", "FECHATTER_LOG_LEVEL": "warning"}
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(ROOT / "main.py"), "export", "--workspace", workspace_id,
                             "--out", str(out)], cwd=str(ROOT), env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"main.py export exited {proc.returncode}")
    return seconds, usage.ru_maxrss * 1024  # Linux: kilobytes


async def run(args: argparse.Namespace) -> dict[str, Any]:
    directory = workdir("export")
    stack = EmbeddedStack(directory, nats=False, mongo=True)
    await stack.start()
    client = make_client(stack.mongo_uri, 120_000)
    store = Store(client, "bench_export")
    results: dict[str, Any] = {}
    try:
        await store.ensure_indexes()
        rng = random.Random(20)
        workspace_id = new_id()
        have = 0
        for size in (args.messages // 10, args.messages):
            t0 = time.perf_counter()
            await seed(store, workspace_id, args.users, args.chats, size, have, rng)
            seeded = time.perf_counter() - t0
            have = size
            t0 = time.perf_counter()
            raw_docs = await raw_read(store, workspace_id)
            raw_s = time.perf_counter() - t0
            out = directory / f"export-{size}.ndjson"
            seconds, peak = export_process(stack.mongo_uri, "bench_export", workspace_id, out)
            with out.open() as f:
                lines = sum(1 for _ in f)
            row = {"messages": size, "seed_s": seeded, "raw_docs": raw_docs, "raw_docs_per_s": raw_docs / raw_s,
                   "export_lines": lines, "export_s": seconds, "export_lines_per_s": lines / seconds,
                   "export_peak_rss_MB": peak / 1e6, "export_MB": out.stat().st_size / 1e6}
            results[str(size)] = row
            print(f"{size:>8,} messages: seeded in {fmt(seeded)} s; raw cursors {fmt(raw_docs / raw_s)} docs/s; "
                  f"export {fmt(lines / seconds)} lines/s ({lines:,} lines, {fmt(seconds)} s incl. process start, "
                  f"{fmt(row['export_MB'])} MB), peak RSS {fmt(peak / 1e6)} MB", flush=True)
            out.unlink()
    finally:
        await client.close()
        await stack.stop()
        shutil.rmtree(directory, ignore_errors=True)
    return saved("export", args, results)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--messages", type=int, default=250_000, help="messages at the second size (first: a tenth)")
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--chats", type=int, default=40)


if __name__ == "__main__":
    cli(__doc__, add_arguments, run)
