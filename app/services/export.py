"""A workspace as NDJSON lines (export) and those lines loaded into an empty database (import), batch by batch."""

from __future__ import annotations

import datetime
import logging
from typing import Any, AsyncIterator, Iterable

import msgspec
from bson import json_util
from bson.json_util import JSONOptions, JSONMode

from app.errors import forbidden
from app.store import Store, isoformat, startup_timeout

log = logging.getLogger("fechatter.export")

# Documents per read and per write: what an export or import holds at once, whatever the workspace's size.
BATCH = 500
ORDER = ("workspace", "user", "chat", "membership", "message")
# Never exported: what signs a person or a bot in.
SECRET_USER_FIELDS = ("password_hash", "bot_token_hash")
# Lossless and typed: datetimes as {"$date": "...Z"}, read back as aware UTC datetimes.
JSON_OPTIONS = JSONOptions(json_mode=JSONMode.RELAXED, tz_aware=True)
# What a non-empty database has: an import refuses to mix into it.
FILLED_COLLECTIONS = ("workspaces", "users", "chats", "members", "messages")


class ImportFailed(Exception):
    """The file cannot be imported; the message tells the operator why."""


def dump_line(type_: str, doc: dict[str, Any]) -> str:
    """`{"type": ..., "id": ..., ...}` with sorted keys: the same document always gives the same line."""
    # A document's own `type` (a chat's) is `<line type>_type`: the line's `type` says what the line is.
    body = {("id" if k == "_id" else f"{type_}_type" if k == "type" else k): v for k, v in doc.items()}
    text = _ENCODER.encode(_extended(body)).decode()
    return '{"type":"' + type_ + '",' + text[1:] + "\n" if len(text) > 2 else '{"type":"' + type_ + '"}\n'


def _extended(value: Any) -> Any:
    """Datetimes as bson.json_util's relaxed Extended JSON writes them (msgspec would write plain strings)."""
    if isinstance(value, dict):
        return {k: _extended(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_extended(v) for v in value]
    if isinstance(value, datetime.datetime):
        return {"$date": isoformat(value)}
    return value


# Sorted keys, so the same document always gives the same line; ~7x faster than json_util.dumps (bench/export.py).
# Other BSON values (an ObjectId) as json_util writes them.
_ENCODER = msgspec.json.Encoder(order="sorted", enc_hook=lambda v: json_util.default(v, json_options=JSON_OPTIONS))


def load_line(line: str) -> tuple[str, dict[str, Any]]:
    doc = json_util.loads(line, json_options=JSON_OPTIONS)
    if not isinstance(doc, dict) or doc.get("type") not in ORDER:
        raise ImportFailed(f"not an export line: {line[:80]!r}")
    type_ = doc.pop("type")
    if "id" in doc:
        doc["_id"] = doc.pop("id")
    if f"{type_}_type" in doc:
        doc["type"] = doc.pop(f"{type_}_type")
    return type_, doc


async def _batches(cursor) -> AsyncIterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    async for doc in cursor:
        batch.append(doc)
        if len(batch) >= BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


class Exporter:
    """Yields a workspace's lines a batch at a time (each batch one string), reading by index ranges only."""

    def __init__(self, store: Store, batch: int = BATCH):
        self.store = store
        self.batch = batch

    async def owned_workspace(self, user_id: str, workspace_id: str) -> dict[str, Any]:
        workspace = await self.store.workspaces.find_one({"_id": workspace_id})
        if workspace is None or workspace.get("owner_id") != user_id:
            raise forbidden("only the workspace owner can export it")
        return workspace

    async def lines(self, workspace_id: str) -> AsyncIterator[str]:
        store = self.store
        workspace = await store.workspaces.find_one({"_id": workspace_id})
        if workspace is None:
            raise LookupError(f"no workspace {workspace_id}")
        yield dump_line("workspace", workspace)
        users = store.users.find({"workspace_id": {"$eq": workspace_id}}).sort([("_id", 1)]).batch_size(self.batch)
        async for batch in _batches(users):
            yield "".join(dump_line("user", _public_user(doc)) for doc in batch)
        async for batch in self._chats(workspace_id):
            yield "".join(dump_line("chat", doc) for doc in batch)
        async for batch in self._chats(workspace_id, {"_id": 1}):
            for chat in batch:
                members = store.members.find({"chat_id": {"$eq": chat["_id"]}}).sort([("_id", 1)])
                async for part in _batches(members.batch_size(self.batch)):
                    yield "".join(dump_line("membership", doc) for doc in part)
        async for batch in self._chats(workspace_id, {"_id": 1}):
            for chat in batch:
                async for part in self._messages(chat["_id"]):
                    yield part

    def _chats(self, workspace_id: str, projection: dict | None = None):
        cursor = self.store.chats.find({"workspace_id": {"$eq": workspace_id}}, projection).sort([("_id", 1)])
        return _batches(cursor.batch_size(self.batch))

    async def _messages(self, chat_id: str) -> AsyncIterator[str]:
        """A chat's messages a seq range at a time, each with its reactions, pin and history. File metadata is
        the message's own `files` and `file_info` (name, size, type, copied at send); the bytes are not exported."""
        after = -1
        while True:
            page = await self.store.messages.find(
                {"chat_id": {"$eq": chat_id}, "seq": {"$gt": after}}).sort([("seq", 1)]).limit(self.batch).to_list()
            if not page:
                return
            after = page[-1]["seq"]
            yield "".join(dump_line("message", doc) for doc in await self._decorated(page))
            if len(page) < self.batch:
                return

    async def _decorated(self, page: list[dict[str, Any]]) -> list[dict[str, Any]]:
        store = self.store
        ids = [doc["_id"] for doc in page]
        # Every read by _id (an index read on MongoDB and on the embedded server) or a range of an index.
        marks = {doc["_id"]: doc for doc in await store.message_marks.find({"_id": {"$in": ids}}).to_list()}
        reaction_ids = []
        for mid, mark in marks.items():
            for key in mark.get("reactions") or ():
                emoji, _, user_id = key.rpartition(" ")
                reaction_ids.append(f"{mid} {user_id} {emoji}")
        reactions: dict[str, list[dict]] = {}
        if reaction_ids:
            for doc in await store.reactions.find({"_id": {"$in": reaction_ids}}).to_list():
                reactions.setdefault(doc["message_id"], []).append(
                    {"emoji": doc["emoji"], "user_id": doc["user_id"], "created_at": doc.get("created_at")})
        pins = {doc["_id"]: doc for doc in await store.pins.find({"_id": {"$in": ids}}).to_list()}
        out = []
        for doc in page:
            mid = doc["_id"]
            history = []
            if doc.get("rev", 0) > 0:
                history = await store.message_versions.find(
                    {"message_id": {"$eq": mid}, "rev": {"$gte": 0}}).sort([("rev", 1)]).to_list()
                history = [{k: v for k, v in h.items() if k not in ("_id", "message_id", "chat_id")} for h in history]
            mark = marks.get(mid) or {}
            order = {key: i for i, key in enumerate(mark.get("reactions") or ())}
            mine = sorted(reactions.get(mid, ()), key=lambda r: order.get(f"{r['emoji']} {r['user_id']}", 0))
            pin = pins.get(mid)
            out.append({
                **doc,
                "reactions": mine,
                "history": history,
                "pin": {k: v for k, v in pin.items() if k != "_id"} if pin else None,
            })
        return out


def _public_user(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k not in SECRET_USER_FIELDS}


class Importer:
    """Loads export lines into an empty database, a batch of inserts at a time, and rebuilds derived state."""

    def __init__(self, store: Store, batch: int = BATCH):
        self.store = store
        self.batch = batch
        self.counts: dict[str, int] = {t: 0 for t in ORDER}

    async def check_empty(self) -> None:
        for name in FILLED_COLLECTIONS:
            if await self.store.db[name].find_one({}, {"_id": 1}) is not None:
                raise ImportFailed(f"the database {self.store.db.name!r} is not empty (it has {name}); "
                                   "import only into an empty database")

    async def load(self, lines: Iterable[str]) -> dict[str, int]:
        await self.check_empty()
        pending: dict[str, list[dict]] = {}
        stage = 0
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                type_, doc = load_line(line)
            except ValueError as e:
                raise ImportFailed(f"line {number}: not JSON ({e})") from None
            at = ORDER.index(type_)
            if at < stage:
                raise ImportFailed(f"line {number}: a {type_} after a {ORDER[stage]} (lines must be in export order)")
            stage = at
            self._stage(type_, doc, pending)
            if sum(len(v) for v in pending.values()) >= self.batch:
                await self._flush(pending)
        await self._flush(pending)
        return dict(self.counts)

    def _stage(self, type_: str, doc: dict[str, Any], pending: dict[str, list[dict]]) -> None:
        self.counts[type_] += 1
        if type_ != "message":
            name = {"workspace": "workspaces", "user": "users", "chat": "chats", "membership": "members"}[type_]
            if type_ == "user":
                doc.setdefault("password_hash", None)  # signs in again after a password reset
            pending.setdefault(name, []).append(doc)
            return
        mid, chat_id = doc["_id"], doc["chat_id"]
        reactions = doc.pop("reactions", None) or []
        history = doc.pop("history", None) or []
        pin = doc.pop("pin", None)
        pending.setdefault("messages", []).append(doc)
        for r in reactions:
            pending.setdefault("reactions", []).append(
                {"_id": f"{mid} {r['user_id']} {r['emoji']}", "chat_id": chat_id, "message_id": mid, **r})
        if reactions or pin:
            mark: dict[str, Any] = {"_id": mid, "chat_id": chat_id,
                                    "reactions": [f"{r['emoji']} {r['user_id']}" for r in reactions]}
            if pin:
                mark["pinned_by"] = pin.get("user_id") or pin.get("pinned_by")
            pending.setdefault("message_marks", []).append(mark)
        if pin:
            pending.setdefault("pins", []).append({"_id": mid, **pin})
        for h in history:
            pending.setdefault("message_versions", []).append(
                {"_id": f"{mid}:{h['rev']}", "message_id": mid, "chat_id": chat_id, **h})
        if not doc.get("deleted"):
            for uid in doc.get("mentions") or ():
                pending.setdefault("mentions", []).append(
                    {"_id": f"{uid}:{mid}", "user_id": uid, "chat_id": chat_id, "message_id": mid,
                     "created_at": doc.get("created_at")})

    async def _flush(self, pending: dict[str, list[dict]]) -> None:
        # Parents first: a message's marks, pins and versions after it.
        for name in ("workspaces", "users", "chats", "members", "messages", "reactions", "message_marks", "pins",
                     "message_versions", "mentions"):
            docs = pending.pop(name, None)
            if not docs:
                continue
            await self.store.db[name].insert_many(docs, ordered=True)
        pending.clear()

    async def rebuild(self) -> int:
        """Chat seq counters at least the highest seq imported (a send's next seq never collides)."""
        fixed = 0
        async for chat in self.store.chats.find({}, {"_id": 1, "last_seq": 1}):
            last = await self.store.messages.find_one(
                {"chat_id": {"$eq": chat["_id"]}, "seq": {"$gte": 0}}, {"seq": 1}, sort=[("seq", -1)])
            if last is not None and last["seq"] > chat.get("last_seq", 0):
                await self.store.chats.update_one({"_id": chat["_id"]}, {"$set": {"last_seq": last["seq"]}})
                fixed += 1
        return fixed


async def export_to_file(store: Store, workspace_id: str, path: str) -> int:
    """`main.py export`: the lines written to `path` batch by batch; the number of lines."""
    n = 0
    with open(path, "w", encoding="utf-8") as out:
        async for part in Exporter(store).lines(workspace_id):
            out.write(part)
            n += part.count("\n")
    return n


async def import_from_file(store: Store, path: str) -> dict[str, int]:
    """`main.py import`: the file into an empty database; the count of each type of line."""
    importer = Importer(store)
    with open(path, encoding="utf-8") as source:
        counts = await importer.load(source)
    await importer.rebuild()
    return counts


async def run_command(command: str, store: Store, *, workspace_id: str | None, path: str) -> int:
    """`main.py export|import` once the store is built: 0 when done, 1 with a message on stderr otherwise."""
    import sys

    with startup_timeout():  # a whole workspace may take longer than one request may
        try:
            if command == "export":
                n = await export_to_file(store, workspace_id or "", path)
                print(f"fechatter: exported {n} lines of workspace {workspace_id} to {path}", file=sys.stderr)
            else:
                counts = await import_from_file(store, path)
                summary = ", ".join(f"{n} {t}s" for t, n in counts.items())
                print(f"fechatter: imported {summary} from {path}", file=sys.stderr)
        except (ImportFailed, LookupError, OSError) as e:
            print(f"fechatter: {command}: {e}", file=sys.stderr)
            return 1
    return 0
