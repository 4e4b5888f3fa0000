"""Query plans of store commands: SQLite EXPLAIN QUERY PLAN on the embedded server, explain() on MongoDB."""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
import uuid
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import AsyncIterator

from pymongo import MongoClient
from pymongo.database import Database

from app.store import Store, make_client

# Plan rows of SQLite that read every row of a table: the thing a request path must never do.
_SCAN = re.compile(r"^SCAN (?P<table>\S+)(?P<rest>.*)$")
# Table-valued functions scanned once per candidate row (array matching), not once per collection.
_PER_ROW = {"json_each", "jsonb_each", "json_tree", "jsonb_tree"}
# A statement with no WHERE and a LIMIT reads at most LIMIT rows (in index order when it has an ORDER BY
# an index serves; otherwise it also has a TEMP B-TREE, reported apart): a bounded walk, not a scan.
_NO_WHERE_LIMIT = re.compile(r"^(?!.*\bWHERE\b).*\bLIMIT\s+\d+\s*$", re.IGNORECASE | re.DOTALL)
# SQL literals, so statements that differ only in their values group into one shape.
_LITERALS = re.compile(r"'(?:[^']|'')*'|\b\d+(?:\.\d+)?\b")


def _exempt(row: str) -> bool:
    match = _SCAN.match(row) or re.match(r"^SEARCH (?P<table>\S+)(?P<rest>.*)$", row)
    return bool(match) and (match["table"] in _PER_ROW or "VIRTUAL TABLE" in match["rest"])


def sql_shape(sql: str) -> str:
    """The statement with its literal values replaced by `?`."""
    return _LITERALS.sub("?", " ".join(sql.split()))


@dataclass
class Statement:
    """One SQL statement neosqlite ran for a command, with SQLite's plan of it."""

    sql: str
    plan: list[str]

    @property
    def scans(self) -> list[str]:
        """Plan rows that read a whole table (a collection, or a temporary copy of one)."""
        found = []
        if _NO_WHERE_LIMIT.match(self.sql.strip()):
            return [row for row in self.plan if row.startswith("EXPLAIN failed")]
        for row in self.plan:
            if row.startswith("EXPLAIN failed"):
                found.append(row)
                continue
            if _SCAN.match(row) and not _exempt(row):
                found.append(row)
        return found

    @property
    def sorts(self) -> list[str]:
        """Plan rows that sort every match before the LIMIT (no index gives the order)."""
        return [row for row in self.plan if row.startswith("USE TEMP B-TREE FOR")]

    @property
    def by_id_only(self) -> bool:
        """Every collection row of the plan is a lookup on the _id index: as many rows as ids were given."""
        rows = [row for row in self.plan if row.startswith(("SEARCH", "SCAN")) and not _exempt(row)]
        return bool(rows) and all(re.match(r"^SEARCH \S+ USING (?:COVERING )?INDEX idx_\S+_id \(_id", row)
                                  for row in rows)


@dataclass
class Plan:
    """What one command cost the store: every statement on the collection, or MongoDB's winning plan."""

    command: dict
    statements: list[Statement] = field(default_factory=list)
    mongo_stages: list[str] | None = None

    def problems(self, *, allow_sort: bool = False) -> list[str]:
        """Why this plan is not an index read; empty when it is."""
        if self.mongo_stages is not None:
            found = [f"MongoDB {stage}" for stage in self.mongo_stages if stage in ("COLLSCAN", "SORT")]
            if allow_sort:
                found = [p for p in found if p != "MongoDB SORT"]
            if not any(s in ("IXSCAN", "IDHACK", "EXPRESS_IXSCAN", "COUNT_SCAN", "TEXT_MATCH") for s in self.mongo_stages):
                found.append(f"MongoDB uses no index: {self.mongo_stages}")
            return found
        if not self.statements:
            return ["no SQL statement reached the collection (Python-side evaluation?)"]
        found = []
        for statement in self.statements:
            found += [f"{row}   <- {statement.sql[:300]}" for row in statement.scans]
            # A sort of rows fetched by _id is bounded by the ids the command named.
            if not allow_sort and not statement.by_id_only:
                found += [f"{row}   <- {statement.sql[:300]}" for row in statement.sorts]
        return found

    def assert_indexed(self, *, allow_sort: bool = False) -> None:
        problems = self.problems(allow_sort=allow_sort)
        assert not problems, f"{self.command!r} is not an index read:\n  " + "\n  ".join(problems) + "\n" + str(self)

    def __str__(self) -> str:
        if self.mongo_stages is not None:
            return f"MongoDB stages: {self.mongo_stages}"
        return "\n".join(f"{s.sql}\n    " + "\n    ".join(s.plan) for s in self.statements)


@dataclass(frozen=True)
class Traced:
    """One SQL statement the server ran, and the command (body and payload documents) it ran for."""

    command: dict
    sql: str

    @property
    def name(self) -> str:
        return next(iter(self.command), "?")

    @property
    def collection(self) -> str:
        value = self.command.get(self.name)
        return value if isinstance(value, str) else ""


@dataclass
class Trace:
    """What a database was asked (command documents as received) and the SQL each command ran."""

    database: str
    commands: list[dict] = field(default_factory=list)
    statements: list[Traced] = field(default_factory=list)


def _command_of(msg) -> dict:
    """The command document of a wire message, with its document-sequence payloads (updates, deletes) merged in."""
    command: dict = {}
    for kind, doc in (msg.get("sections") or []) if isinstance(msg, dict) else []:
        if kind == "body" and isinstance(doc, dict):
            command = {**doc, **command}
        elif isinstance(doc, dict):
            command.update({k: v for k, v in doc.items() if k not in command})
    return command


class TracedWireServer:
    """nx-27017 in this process: its own handler and connection loop, with SQLite's statements observable.

    The session's nx-27017 runs in a child process, whose SQL nobody can see. This one runs the same code
    (`NeoSQLiteHandler` behind `nx_27017.server.handle_client`, in-memory databases, as `--data-dir memory`)
    on a thread, and pymongo talks to it over TCP, so a command takes exactly the path it takes there.
    """

    def __init__(self, host: str = "127.0.0.1"):
        from nx_27017.handler import NeoSQLiteHandler

        self.host = host
        self.port: int | None = None
        self.handler = NeoSQLiteHandler(data_dir="memory")
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.base_events.Server | None = None
        self._thread = threading.Thread(target=self._run, name="nx-27017-traced", daemon=True)
        self._ready = threading.Event()
        self._error: BaseException | None = None
        # The command each worker thread is running, so every SQL statement can name its command.
        self._running = threading.local()
        self._traces: list[Trace] = []
        for method in ("handle_command", "handle_insert"):
            setattr(self.handler, method, self._tagging(getattr(self.handler, method)))

    def _tagging(self, handle):
        running = self._running

        def tagged(msg, *args, **kwargs):
            running.command = _command_of(msg)
            for trace in self._traces:
                if running.command.get("$db") == trace.database:
                    trace.commands.append(running.command)
            try:
                return handle(msg, *args, **kwargs)
            finally:
                running.command = None

        return tagged

    @property
    def uri(self) -> str:
        return f"mongodb://{self.host}:{self.port}/?directConnection=true"

    def _run(self) -> None:
        from nx_27017.server import handle_client

        asyncio.set_event_loop(self._loop)

        async def serve():
            self._server = await asyncio.start_server(
                lambda reader, writer: handle_client(reader, writer, self.handler), self.host, 0
            )
            self.port = self._server.sockets[0].getsockname()[1]
            self._ready.set()
            with contextlib.suppress(asyncio.CancelledError):
                await self._server.serve_forever()

        try:
            self._loop.run_until_complete(serve())
        except BaseException as e:  # reported by start()
            self._error = e
            self._ready.set()
        finally:
            # Connections still open would otherwise be destroyed pending when the loop closes.
            self._loop.set_exception_handler(lambda loop, context: None)
            pending = asyncio.all_tasks(self._loop)
            for task in pending:
                task.cancel()
            self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self._loop.close()

    def start(self) -> TracedWireServer:
        self._thread.start()
        if not self._ready.wait(10) or self._error:
            raise RuntimeError(f"in-process nx-27017 did not start: {self._error!r}")
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._loop.call_soon_threadsafe(self._server.close)
        self._thread.join(5)
        self.handler.close_all()

    def _sqlite(self, database: str):
        return self.handler.get_database(database).db

    @contextlib.contextmanager
    def statements(self, database: str):
        """Collect the SQL (parameters expanded) that the server runs on `database` inside the block."""
        collected: list[str] = []
        connection = self._sqlite(database)
        connection.set_trace_callback(collected.append)
        try:
            yield collected
        finally:
            connection.set_trace_callback(None)

    @contextlib.contextmanager
    def trace(self, database: str):
        """A Trace of every command the server receives for `database` inside the block, and their SQL."""
        trace = Trace(database)
        running = self._running

        def record(sql: str) -> None:
            trace.statements.append(Traced(getattr(running, "command", None) or {}, sql))

        connection = self._sqlite(database)
        connection.set_trace_callback(record)
        self._traces.append(trace)
        try:
            yield trace
        finally:
            self._traces.remove(trace)
            connection.set_trace_callback(None)

    def collections(self, database: str) -> list[str]:
        """The tables that hold a collection's documents (not neosqlite's metadata, FTS or sqlite tables)."""
        with self.handler._lock_for(database):
            rows = self._sqlite(database).execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
                " AND name NOT LIKE '\\_%' ESCAPE '\\' AND name NOT LIKE '%\\_fts%' ESCAPE '\\'"
            ).fetchall()
        return sorted(row[0] for row in rows)

    def query_plan(self, database: str, sql: str) -> list[str]:
        with self.handler._lock_for(database):
            try:
                rows = self._sqlite(database).execute("EXPLAIN QUERY PLAN " + sql).fetchall()
            except Exception as e:  # e.g. a temporary table the command already dropped
                return [f"EXPLAIN failed: {e}"]
        return [row[3] for row in rows]


def with_app_indexes(uri: str, database: str) -> None:
    """Store.ensure_indexes on `database`, from synchronous code: on nx-27017 the index names decide how a filter compiles."""

    async def ensure() -> None:
        client = make_client(uri, 10_000)
        try:
            await Store(client, database).ensure_indexes()
        finally:
            await client.close()

    asyncio.run(ensure())


@contextlib.asynccontextmanager
async def traced_database(prefix: str) -> AsyncIterator[SimpleNamespace]:
    """A TracedWireServer of the caller's own and a fresh database on it with the app's indexes.

    Yields `server`, `name`, `store` (the app's Store, for the services under test) and `db` (a synchronous
    pymongo Database, to seed documents with); everything is closed and stopped afterwards.
    """
    server = TracedWireServer().start()
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    client = make_client(server.uri, 5000)
    sync = MongoClient(server.uri, tz_aware=True)
    try:
        store = Store(client, name)
        await store.ensure_indexes()
        yield SimpleNamespace(server=server, name=name, store=store, db=sync[name])
    finally:
        sync.close()
        await client.close()
        server.stop()


def reads(sql: str, collection: str) -> bool:
    """True for a statement that reads the collection's table (not neosqlite's metadata about it)."""
    name = re.escape(collection)
    table = rf'(?:{name}|"{name}"|`{name}`|\[{name}\])'
    return re.search(rf"\b(?:FROM|JOIN|UPDATE)\s+{table}(?=[\s,)]|$)", sql, re.IGNORECASE) is not None


def embedded_plan(server: TracedWireServer, db: Database, command: dict) -> Plan:
    """Run `command` on the in-process nx-27017 and return SQLite's plan of each statement on its collection."""
    collection = next(iter(command.values()))
    with server.statements(db.name) as executed:
        db.command(dict(command))
    statements = []
    for sql in executed:
        if not reads(sql, collection):
            continue
        statements.append(Statement(sql, server.query_plan(db.name, sql)))
    return Plan(command, statements)


def _stages(node) -> list[str]:
    if isinstance(node, dict):
        found = [node["stage"]] if isinstance(node.get("stage"), str) else []
        for key in ("inputStage", "queryPlan", "winningPlan"):
            if key in node:
                found += _stages(node[key])
        for child in node.get("inputStages", []):
            found += _stages(child)
        return found
    return []


def mongo_plan(db: Database, command: dict) -> Plan:
    """MongoDB's winning plan of `command` (find, count, distinct, update, delete, findAndModify, aggregate)."""
    result = db.command({"explain": dict(command), "verbosity": "queryPlanner"})
    stages = _stages(result.get("queryPlanner", {}))
    for stage in result.get("stages", []):  # an aggregate whose first stage is a $cursor
        stages += _stages(stage.get("$cursor", {}).get("queryPlanner", {}))
    return Plan(command, mongo_stages=stages)


class PlanProbe:
    """One way to ask for a command's plan, whichever store the tests run on."""

    def __init__(self, client: MongoClient, server: TracedWireServer | None):
        self.client = client
        self.server = server

    @property
    def embedded(self) -> bool:
        return self.server is not None

    def plan(self, db: Database, command: dict) -> Plan:
        if self.server is not None:
            return embedded_plan(self.server, db, command)
        return mongo_plan(db, command)


def _shape_of(value) -> str:
    """A filter, sort or update with its values replaced by their type names: `{chat_id: {$eq: str}}`."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key}: {_shape_of(item)}" for key, item in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + " | ".join(sorted({_shape_of(item) for item in value})) + "]"
    return type(value).__name__


_SHAPE_FIELDS = ("filter", "query", "sort", "projection", "update", "remove", "new", "upsert", "pipeline",
                 "updates", "deletes", "key")


def command_shape(command: dict) -> str:
    """`find messages filter={chat_id: {$eq: str}, seq: {$lt: int}} sort={seq: int} limit`: what a command asks."""
    name = next(iter(command), "?")
    parts = [name, str(command.get(name, ""))]
    parts += [f"{key}={_shape_of(command[key])}" for key in _SHAPE_FIELDS if key in command]
    if "limit" in command:
        parts.append("limit")
    return " ".join(parts)


@dataclass
class ShapeReport:
    """Every statement that touched a collection for one command shape, each distinct SQL explained once."""

    shape: str
    runs: int
    plan: Plan

    @property
    def problems(self) -> list[str]:
        return self.plan.problems()

    def __str__(self) -> str:
        return f"{self.shape}   ({self.runs} statements)\n    " + str(self.plan).replace("\n", "\n    ")


def audit(server: TracedWireServer, trace: Trace) -> list[ShapeReport]:
    """Group the traced statements that read a collection by command shape, with SQLite's plan of each."""
    collections = server.collections(trace.database)
    grouped: dict[str, dict[str, str]] = {}
    runs: dict[str, int] = {}
    for traced in trace.statements:
        if not any(reads(traced.sql, collection) for collection in collections):
            continue
        shape = command_shape(traced.command)
        grouped.setdefault(shape, {}).setdefault(sql_shape(traced.sql), traced.sql)
        runs[shape] = runs.get(shape, 0) + 1
    reports = []
    for shape, examples in grouped.items():
        statements = [Statement(sql, server.query_plan(trace.database, sql)) for sql in examples.values()]
        reports.append(ShapeReport(shape, runs[shape], Plan({"shape": shape}, statements)))
    return sorted(reports, key=lambda report: report.shape)
