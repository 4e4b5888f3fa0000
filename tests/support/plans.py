"""Query plans of store commands: SQLite EXPLAIN QUERY PLAN on the embedded server, explain() on MongoDB."""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
from dataclasses import dataclass, field

from pymongo import MongoClient
from pymongo.database import Database

# Plan rows of SQLite that read every row of a table: the thing a request path must never do.
_SCAN = re.compile(r"^SCAN (?P<table>\S+)(?P<rest>.*)$")
# Table-valued functions scanned once per candidate row (array matching), not once per collection.
_PER_ROW = {"json_each", "jsonb_each", "json_tree", "jsonb_tree"}


@dataclass
class Statement:
    """One SQL statement neosqlite ran for a command, with SQLite's plan of it."""

    sql: str
    plan: list[str]

    @property
    def scans(self) -> list[str]:
        """Plan rows that read a whole table (a collection, or a temporary copy of one)."""
        found = []
        for row in self.plan:
            match = _SCAN.match(row)
            if match and match["table"] not in _PER_ROW and "VIRTUAL TABLE" not in match["rest"]:
                found.append(row)
        return found

    @property
    def sorts(self) -> list[str]:
        """Plan rows that sort every match before the LIMIT (no index gives the order)."""
        return [row for row in self.plan if row.startswith("USE TEMP B-TREE FOR ORDER BY")]


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
            if not allow_sort:
                found += [f"{row}   <- {statement.sql[:300]}" for row in statement.sorts]
        return found

    def assert_indexed(self, *, allow_sort: bool = False) -> None:
        problems = self.problems(allow_sort=allow_sort)
        assert not problems, f"{self.command!r} is not an index read:\n  " + "\n  ".join(problems) + "\n" + str(self)

    def __str__(self) -> str:
        if self.mongo_stages is not None:
            return f"MongoDB stages: {self.mongo_stages}"
        return "\n".join(f"{s.sql}\n    " + "\n    ".join(s.plan) for s in self.statements)


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

    def query_plan(self, database: str, sql: str) -> list[str]:
        with self.handler._lock_for(database):
            try:
                rows = self._sqlite(database).execute("EXPLAIN QUERY PLAN " + sql).fetchall()
            except Exception as e:  # e.g. a temporary table the command already dropped
                return [f"EXPLAIN failed: {e}"]
        return [row[3] for row in rows]


def _reads(sql: str, collection: str) -> bool:
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
        if not _reads(sql, collection):
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
