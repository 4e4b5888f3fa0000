"""The systems under benchmark as real processes: the bare broadcaster, and Fechatter's api and notify roles."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any, AsyncIterator

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.embedded import MongoWireServer, NatsServer
from app.processes import free_port
from bench.common import Child, HttpConnection, now, spawn, stamp, wait_http_ok
from bench.sse_load import LoadClient

HOST = "127.0.0.1"
PASSWORD = "bench horse battery staple"


def message_shaped(msg_no: int, sent_at: float) -> dict[str, Any]:
    """What the bare broadcaster sends: a message document of the same shape and size as Fechatter's."""
    return {
        "id": uuid.uuid4().hex[:24], "chat_id": "0" * 24, "seq": msg_no, "sender_id": "0" * 24,
        "content": stamp(msg_no, sent_at), "files": [], "reply_to": None,
        "created_at": "2026-11-22T15:33:14.123Z", "edited_at": None, "deleted": False,
        # The fields Fechatter's message.created carries since issues 14-20: without them the floor's
        # frames were ~300 bytes against Fechatter's ~490 (bench.sse_fanout saves both as message_frame).
        "mentions": [], "mentions_all": False, "kind": "user", "system": None, "reactions": [], "pinned": False,
        "content_html": f"<p>{stamp(msg_no, sent_at)}</p>\n", "thread_root_id": None, "reply_count": 0,
        "last_reply_at": None,
    }


class BareServer:
    """bench.bare_broadcaster in its own process."""

    name = "bare"

    def __init__(self, workdir: Path, direct: bool = False):
        self.workdir = workdir
        self.direct = direct
        self.port = free_port()
        self.child: Child | None = None
        self.publisher = HttpConnection(HOST, self.port)

    @property
    def sse_port(self) -> int:
        return self.port

    @property
    def sse_pid(self) -> int:
        return self.child.pid

    async def start(self) -> None:
        args = [sys.executable, "-m", "bench.bare_broadcaster", "--port", str(self.port)]
        self.child = await spawn("bare", args + (["--direct"] if self.direct else []), self.workdir / "bare.log")
        await wait_http_ok(HOST, self.port, proc=self.child.proc)

    def stream_targets(self, count: int) -> list[tuple[str, dict]]:
        return [("/events", {})] * count

    async def send(self, msg_no: int, conn: HttpConnection | None = None) -> float:
        """Publish one stamped frame; returns the send time stamped into it."""
        sent_at = now()
        status, body = await (conn or self.publisher).request("POST", "/publish", message_shaped(msg_no, sent_at))
        if status != 200:
            raise RuntimeError(f"bare /publish answered {status}: {body!r}")
        return sent_at

    def connection(self) -> HttpConnection:
        return HttpConnection(HOST, self.port)

    async def stop(self) -> None:
        self.publisher.close()
        if self.child:
            await self.child.stop()


def write_key_pair(directory: Path) -> tuple[Path, Path]:
    key = Ed25519PrivateKey.generate()
    private, public = directory / "bench-ed25519-private.pem", directory / "bench-ed25519-public.pem"
    private.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    private.chmod(0o600)
    public.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public


class FechatterStack:
    """nats-server and nx-27017 (app.embedded), then `main.py --role=api` and `--role=notify` as processes."""

    name = "fechatter"

    def __init__(self, workdir: Path, *, mongo_memory: bool = False, log_level: str = "warning",
                 env: dict[str, str] | None = None):
        self.workdir = workdir
        self.extra_env = env or {}  # on top of env(): a benchmark's own settings (FECHATTER_...)
        self.nats = NatsServer(workdir / "nats")
        self.mongo = MongoWireServer(workdir / "mongo", memory=mongo_memory)
        self.api_port = free_port()
        self.notify_port = free_port()
        self.log_level = log_level
        self.api: Child | None = None
        self.notify: Child | None = None
        self.publisher = HttpConnection(HOST, self.api_port)
        self.owner: dict[str, Any] | None = None
        self.users: list[dict[str, Any]] = []
        self.chat_id: str | None = None
        self.subject_prefix = "fechatter"

    @property
    def sse_port(self) -> int:
        return self.notify_port

    @property
    def sse_pid(self) -> int:
        return self.notify.pid

    def env(self) -> dict[str, str]:
        private, public = write_key_pair(self.workdir)
        return {
            "FECHATTER_DATA_DIR": str(self.workdir / "data"),
            "FECHATTER_LOG_LEVEL": self.log_level,
            "FECHATTER_LIMITS_ENABLED": "false",
            "FECHATTER_API_PORT": str(self.api_port),
            "FECHATTER_NOTIFY_PORT": str(self.notify_port),
            "FECHATTER_MONGO_URI": self.mongo.uri,
            "FECHATTER_NATS_URL": self.nats.url,
            "FECHATTER_AUTH_PRIVATE_KEY_FILE": str(private),
            "FECHATTER_AUTH_PUBLIC_KEY_FILE": str(public),
            # Long enough that no stream ends for an expired token during a run.
            "FECHATTER_AUTH_ACCESS_TOKEN_TTL_SECONDS": "7200",
            **self.extra_env,
        }

    async def start_servers(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        await asyncio.gather(self.nats.start(), self.mongo.start())

    async def start(self, notify: bool = True) -> None:
        """The servers, the api role and (unless notify=False) the notify role."""
        await self.start_servers()
        env = self.env()
        main = str(Path(__file__).resolve().parent.parent / "main.py")
        self.api = await spawn("api", [sys.executable, main, "--role=api"], self.workdir / "api.log", env)
        started = [(self.api, self.api_port)]
        if notify:
            self.notify = await spawn("notify", [sys.executable, main, "--role=notify"],
                                      self.workdir / "notify.log", env)
            started.append((self.notify, self.notify_port))
        for child, port in started:
            try:
                await wait_http_ok(HOST, port, proc=child.proc)
            except (RuntimeError, TimeoutError) as e:
                raise RuntimeError(f"{child.name} did not start: {e}\n{child.tail()}") from None

    async def seed(self, members: int, *, concurrency: int = 4) -> None:
        """`members` users in one workspace (signup + invite_code, password PASSWORD) and one chat of them all:
        a group from 3 members, else a direct chat."""
        conn = HttpConnection(HOST, self.api_port)
        self.owner = await self._signup(conn, {"workspace": f"bench-{uuid.uuid4().hex[:8]}"})
        status, workspace = await conn.request("GET", "/api/workspace", token=self.owner["token"])
        if status != 200 or "invite_code" not in workspace:
            raise RuntimeError(f"GET /api/workspace answered {status}: {workspace!r}")
        invite = workspace["invite_code"]
        others: list[dict] = []
        gate = asyncio.Semaphore(concurrency)

        async def join(i: int) -> None:
            async with gate:
                c = HttpConnection(HOST, self.api_port)
                try:
                    others.append(await self._signup(c, {"invite_code": invite}))
                finally:
                    c.close()

        await asyncio.gather(*(join(i) for i in range(members - 1)))
        self.users = [self.owner, *others]
        kind = "group" if members >= 3 else "direct"
        body = {"type": kind, "members": [u["id"] for u in others]}
        if kind == "group":
            body["name"] = "bench"
        # A fresh connection: the first one sat idle through the signups, longer than the api's idle timeout.
        conn.close()
        conn = HttpConnection(HOST, self.api_port)
        try:
            status, chat = await conn.request("POST", "/api/chats", body, token=self.owner["token"], timeout=120)
        finally:
            conn.close()
        if status not in (200, 201):
            raise RuntimeError(f"POST /api/chats answered {status}: {chat!r}")
        self.chat_id = chat["id"]

    async def _signup(self, conn: HttpConnection, extra: dict) -> dict:
        body = {"fullname": "Bench User", "email": f"b{uuid.uuid4().hex[:12]}@example.com",
                "password": PASSWORD, **extra}
        status, reply = await conn.request("POST", "/api/signup", body, timeout=60)
        if status != 201:
            raise RuntimeError(f"POST /api/signup answered {status}: {reply!r}")
        return {"id": reply["user"]["id"], "token": reply["access_token"], "email": body["email"]}

    def stream_targets(self, count: int) -> list[tuple[str, dict]]:
        """`count` streams spread evenly over the chat's members: members × tabs."""
        return [("/events", {"Authorization": f"Bearer {self.users[i % len(self.users)]['token']}"})
                for i in range(count)]

    def connection(self) -> HttpConnection:
        return HttpConnection(HOST, self.api_port)

    async def send(self, msg_no: int, conn: HttpConnection | None = None, sender: dict | None = None) -> float:
        sent_at = now()
        sender = sender or self.owner
        status, body = await (conn or self.publisher).request(
            "POST", f"/api/chats/{self.chat_id}/messages", {"content": stamp(msg_no, sent_at)}, token=sender["token"])
        if status != 201:
            raise RuntimeError(f"POST /api/chats/{{id}}/messages answered {status}: {body!r}")
        return sent_at

    async def observe_events(self, on_stamp) -> Any:
        """A core NATS subscription beside the notify role's: on_stamp(msg_no, arrived_at) per stamped event."""
        from nats import connect
        from app.events import Subjects
        from bench.common import MARK

        nc = await connect(self.nats.url, name="fechatter-bench-observer")

        async def seen(msg) -> None:
            arrived_at = now()
            data = msg.data
            mark = data.find(MARK)
            if mark >= 0:
                on_stamp(int(data[mark + 3:data.find(b"~", mark + 3)]), arrived_at)

        await nc.subscribe(Subjects(self.subject_prefix).all, cb=seen)
        await nc.flush()
        return nc

    async def stop(self) -> None:
        self.publisher.close()
        for child in (self.notify, self.api):
            if child:
                await child.stop()
        await asyncio.gather(self.nats.stop(), self.mongo.stop())


@contextlib.asynccontextmanager
async def started(system, members: int, processes: int = 1) -> AsyncIterator[LoadClient]:
    """The system started (seeded with `members` users when it has users) and a started load client; both stopped after."""
    client = LoadClient(processes)
    try:
        await system.start()
        if hasattr(system, "seed"):
            began = now()
            await system.seed(members)
            print(f"  seeded {members} users and one chat in {now() - began:.1f}s", flush=True)
        await client.start()
        yield client
    finally:
        await client.close()
        await system.stop()


def workdir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"fechatter-bench-{prefix}-"))


def dump(obj: Any) -> str:
    return json.dumps(obj, default=str)
