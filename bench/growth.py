"""Reads as the database grows: every read route's p50/p95 at 2,000 and at 250,000 messages, and their ratio.

One run, two phases, on the embedded stack of `make run` (nats-server + nx-27017 on SQLite files,
`main.py --role=api` and `--role=notify` as processes, limits off):

1. Seed, through the api's own services in this process (bench.growth.Seeder, against the stack's
   MongoDB and NATS): one workspace of 3,000 users; one user ("Uma") in 300 chats (a 3,000-member
   public channel, 19 more channels, 60 groups, 220 direct chats); 140 chats Uma is not in (40
   public channels she could join, 100 direct chats of others); `--small` messages spread over
   all chats (a few big chats, many small ones, the big channel busy); Uma's read marks moved in
   two thirds of her chats. Then time every read route.
2. Grow to `--messages` with the same spread, move the read marks again, time the same routes.

Each route gets warm-up requests, then `--samples` requests; the routes take turns, one request
each per round, so a burst of load elsewhere on the machine falls on every route alike. HTTP on
one keep-alive connection per role (bench.common.HttpConnection); a stream open is a fresh
connection, timed from the request to its `retry:` frame. Printed: p50 and p95 at both sizes, the
ratio of the p95s, the budget of issue 12 and the seeding times; saved in bench/results/.

    .venv/bin/python -m bench.growth                   # 250,000 messages
    .venv/bin/python -m bench.growth --quick           # 20,000 messages: a smoke run
    .venv/bin/python -m bench.growth --messages 100000 --samples 100
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import random
import shutil
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable
from urllib.parse import urlencode

import msgspec
from argon2 import PasswordHasher
from pymongo import monitoring

from app.auth import Identity, PasswordHashing, load_issuer
from app.config import Config, load_config
from app.deps import Deps
from app.events import EventBus, connect_nats
from app.metrics import Metrics
from app.schemas.accounts import SignupIn
from app.schemas.chats import ChatCreateIn, MembersAddIn
from app.schemas.messages import MessageCreateIn, MessageListQuery
from app.services import ApiServices, build_api_services
from app.services.accounts import AccountService
from app.services.messages import MessageDraft
from app.store import Store, make_client
from bench.common import HttpConnection, cli, cpu_seconds, fmt, now, percentile, rss_bytes, saved
from bench.stack import HOST, PASSWORD, FechatterStack, workdir

# The word searched for: in about 1 message in 20, as a common word of a team's talk would be.
SEARCH_WORD = "release"
SEARCH_SHARE = 0.05
# Issue 12's budgets for the p95 of each route on this 2-core machine (ms), and for every ratio.
BUDGET_MS = {"chats": 150.0, "messages": 30.0, "members": 30.0, "search": 30.0, "stream": 30.0}
RATIO_BUDGET = 1.5
# How many requests of each kind the seeder has in flight: the store is one SQLite connection,
# so more only queue there.
SEED_CONCURRENCY = 8

FIRST = ("Ada Alan Amir Ana Anya Ari Asha Ben Bea Cai Carla Chen Dana Dev Dora Eli Emma Eun Finn Fay Gia Gus Hana "
         "Hugo Ida Ivan Jae Jo Kai Kim Lars Lea Lin Lou Mai Max Mia Nia Noor Ola Omar Pia Raj Rei Rosa Sam Sara "
         "Tao Tea Uma Val Vic Wen Xia Yara Yuki Zoe Zain Ines Jon").split()
LAST = ("Abe Baker Cruz Dahl Evans Faro Gray Hart Ito Jain Kato Lund Moss Nash Ortiz Park Quinn Reyes Sato "
        "Tran Ueda Vega Wolf Xu Young Zhou Bauer Costa Diaz Engel Frost Gomez Haas Ibsen Jung Khan Lowe "
        "Mori Nagy Olsen Pires Roth Silva Toth Urbano Voss Weiss Yilmaz Zorn Ahn").split()
COMMON = ("the to and a of I it is that you we for on in this be with can are have do not at so will just "
          "if but was what about my me our by or as up all one there get now think should it's go need "
          "know let's from yes no ok thanks when how more today see any an also some look they here out "
          "make new time good done then still could would like back work check sure team fix week").split()
SYLLABLES = "ka lo mi ne ra su ti ve zo ba de fi gu ho ja ku ly mo nu pa qe ri sa to ur vi wa xe yo ze".split()


def vocabulary(rng: random.Random, size: int = 4000) -> list[str]:
    """Words in Zipf rank order: the common English ones first, then made-up project jargon."""
    words = list(COMMON)
    seen = set(words) | {SEARCH_WORD}
    while len(words) < size:
        word = "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4)))
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words


class Talk:
    """Message texts: 3..30 words by Zipf frequency, SEARCH_WORD in SEARCH_SHARE of them."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.words = vocabulary(rng)
        self.weights = [1 / (rank + 1) for rank in range(len(self.words))]
        total, running = sum(self.weights), 0.0
        self.cumulative = []
        for weight in self.weights:
            running += weight / total
            self.cumulative.append(running)

    def message(self) -> str:
        n = self.rng.randint(3, 30)
        words = self.rng.choices(self.words, cum_weights=self.cumulative, k=n)
        if self.rng.random() < SEARCH_SHARE:
            words.insert(self.rng.randrange(n + 1), SEARCH_WORD)
        return " ".join(words).capitalize()


@dataclass
class Person:
    id: str
    fullname: str
    identity: Identity
    token: str


@dataclass
class SeededChat:
    id: str
    kind: str  # "general", "channel", "group", "direct", "other"
    members: list[Person]
    weight: float
    seeded: int = 0  # messages written so far


@dataclass
class World:
    """What the seeder made that the timers and the next phase need."""

    owner: Person
    uma: Person
    people: list[Person]
    mine: list[SeededChat]  # Uma's 300 chats; mine[0] is the 3,000-member channel
    others: list[SeededChat]
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def chats(self) -> list[SeededChat]:
        return [*self.mine, *self.others]

    @property
    def general(self) -> SeededChat:
        return self.mine[0]


class OneHash(PasswordHashing):
    """argon2 once for all 3,000 users: hashing is not what is measured (every user has PASSWORD)."""

    def __init__(self) -> None:
        super().__init__()
        self.shared = PasswordHasher().hash(PASSWORD)

    async def hash(self, password: str) -> str:
        return self.shared


def _body(type_: type, **fields: Any) -> Any:
    # Decoded as the api decodes a request body, so the seeder sends only what the api accepts.
    return msgspec.convert(fields, type_)


def allocate(total: int, chats: list[SeededChat]) -> list[int]:
    """How many of `total` messages each chat holds: one each, the rest by weight (largest remainder)."""
    base = 1 if total >= len(chats) else 0
    rest = total - base * len(chats)
    weights = sum(c.weight for c in chats)
    exact = [rest * c.weight / weights for c in chats]
    counts = [base + int(x) for x in exact]
    short = total - sum(counts)
    for i in sorted(range(len(chats)), key=lambda i: exact[i] - int(exact[i]), reverse=True)[:short]:
        counts[i] += 1
    return counts


class Seeder:
    """Users, chats, memberships and messages written by the api's own services, as its handlers call them."""

    def __init__(self, deps: Deps, services: ApiServices, rng: random.Random):
        self.deps = deps
        self.services = services
        self.rng = rng
        self.talk = Talk(rng)
        self.gate = asyncio.Semaphore(SEED_CONCURRENCY)

    async def _limited(self, coroutine: Awaitable[Any]) -> Any:
        async with self.gate:
            return await coroutine

    # -- people ------------------------------------------------------------------------------

    async def _signup(self, fullname: str, **where: str) -> tuple[Person, Any]:
        auth = await self.services.accounts.signup(
            _body(SignupIn, fullname=fullname, email=f"{fullname.replace(' ', '.').lower()}.{self.rng.randrange(10**9)}"
                  "@example.com", password=PASSWORD, **where),
            "127.0.0.1",
        )
        identity = self.deps.verifier.verify(auth.access_token)
        return Person(auth.user.id, fullname, identity, auth.access_token), auth

    async def people(self, count: int) -> tuple[Person, list[Person]]:
        names = [f"{first} {last}" for last in LAST for first in FIRST]
        self.rng.shuffle(names)
        names = [names[i % len(names)] for i in range(count)]  # repeats past 3,000: fullnames are not unique
        owner, auth = await self._signup(names[0], workspace=f"growth-{self.rng.randrange(10**9)}")
        invite = auth.workspace.invite_code
        rest = await asyncio.gather(*(self._limited(self._signup(name, invite_code=invite)) for name in names[1:]))
        return owner, [owner, *(person for person, _ in rest)]

    # -- chats -------------------------------------------------------------------------------

    async def _chat(self, owner: Person, kind: str, members: list[Person], weight: float,
                    type_: str, name: str | None = None) -> SeededChat:
        fields: dict[str, Any] = {"type": type_, "members": [p.id for p in members if p.id != owner.id][:1000]}
        if name is not None:
            fields["name"] = name
        chat, _ = await self.services.chats.create(owner.identity, _body(ChatCreateIn, **fields))
        return SeededChat(chat.id, kind, [owner, *(p for p in members if p.id != owner.id)], weight)

    async def _add_members(self, chat: SeededChat, owner: Person, batch: int = 1000) -> None:
        """Members past the first 1,000 of a create, through add_members in batches, as a client would."""
        added = [p.id for p in chat.members[1001:]]
        for i in range(0, len(added), batch):
            await self.services.chats.add_members(
                owner.identity, chat.id, _body(MembersAddIn, user_ids=added[i:i + batch]))

    async def chats(self, owner: Person, uma: Person,
                    people: list[Person]) -> tuple[list[SeededChat], list[SeededChat]]:
        rng = self.rng
        others = [p for p in people if p.id != uma.id]
        general = await self._chat(owner, "general", people, 60.0, "public_channel", "general")
        await self._add_members(general, owner)
        jobs: list[Awaitable[SeededChat]] = []
        # Uma's other channels: 3 big and busy, the rest quieter; 20..400 members each.
        for i in range(19):
            size = rng.randint(20, 400)
            creator = rng.choice(others)
            members = [uma, *rng.sample(others, size - 1)]
            weight = (30.0, 20.0, 12.0)[i] if i < 3 else 4.0 / (i - 1)
            jobs.append(self._chat(creator, "channel", members, weight,
                                   "public_channel" if i % 2 else "private_channel", f"team-{i:02d}"))
        # 60 groups of 3..8 and 220 direct chats, with a long tail of weights.
        for i in range(60):
            jobs.append(self._chat(uma, "group", [uma, *rng.sample(others, rng.randint(2, 7))],
                                   2.0 / (1 + i / 6), "group"))
        partners = rng.sample(others, 220)
        for i, partner in enumerate(partners):
            creator, other = (uma, partner) if i % 2 else (partner, uma)
            jobs.append(self._chat(creator, "direct", [creator, other], 1.5 / (1 + i / 10), "direct"))
        # Chats Uma is not in: what any real database holds beside hers.
        rest = [p for p in others if p.id != owner.id]
        for i in range(40):
            creator = rng.choice(rest)
            jobs.append(self._chat(creator, "other", [creator, *rng.sample(rest, rng.randint(4, 60))],
                                   1.0, "public_channel", f"open-{i:02d}"))
        pairs = rng.sample(rest, 200)
        for i in range(100):
            jobs.append(self._chat(pairs[2 * i], "other", [pairs[2 * i], pairs[2 * i + 1]], 0.5, "direct"))
        made = await asyncio.gather(*(self._limited(job) for job in jobs))
        mine = [general, *(c for c in made if c.kind != "other")]
        return mine, [c for c in made if c.kind == "other"]

    # -- messages ----------------------------------------------------------------------------

    def _sender(self, chat: SeededChat, uma: Person) -> Person:
        # Uma writes a tenth of what is said in her chats; the rest comes from the others.
        if chat.kind != "other" and self.rng.random() < 0.1:
            return uma
        return self.rng.choice(chat.members)

    async def messages(self, world: World, total: int, via_send: bool = False) -> int:
        """Grow the database to `total` messages, spread by chat weight; returns how many were written.

        The one place that writes messages, chats interleaved as a real history interleaves them:
        MessageService.append_many (the documents and counters exactly as a send writes them, n seqs
        per $inc, no events), or with `via_send` MessageService.send, what POST
        /api/chats/{id}/messages calls (~300 messages/s here). Both date a message when it is written:
        the chat's last_message_at is always the store's "now" ($currentDate), and a history dated in
        the past would disagree with it as no lived database does.
        """
        chats = world.chats
        wanted = allocate(total, chats)
        turns = [i for i, (chat, n) in enumerate(zip(chats, wanted)) for _ in range(max(0, n - chat.seeded))]
        self.rng.shuffle(turns)
        # Rounds of the shuffled history: each chat gets its share of a round as one batch.
        step = 2000 if via_send else min(25_000, max(2_000, len(turns) // 10))
        written = 0
        for start in range(0, len(turns), step):
            chunk = turns[start:start + step]
            if via_send:
                await asyncio.gather(*(self._limited(self._send(world, chats[i])) for i in chunk))
            else:
                per_chat: dict[int, int] = {}
                for i in chunk:
                    per_chat[i] = per_chat.get(i, 0) + 1
                await asyncio.gather(*(self._limited(self._append(world, chats[i], n)) for i, n in per_chat.items()))
            for i in chunk:
                chats[i].seeded += 1
            written += len(chunk)
        return written

    async def _send(self, world: World, chat: SeededChat) -> None:
        sender = self._sender(chat, world.uma)
        await self.services.messages.send(sender.identity, chat.id, _body(MessageCreateIn, content=self.talk.message()))

    async def _append(self, world: World, chat: SeededChat, n: int) -> None:
        drafts = [MessageDraft(sender_id=self._sender(chat, world.uma).id, content=self.talk.message())
                  for _ in range(n)]
        for i in range(0, len(drafts), 1000):  # one insert_many of at most 1,000 documents
            await self.services.messages.append_many(
                {"_id": chat.id, "workspace_id": world.owner.identity.workspace_id}, drafts[i:i + 1000])

    async def read_marks(self, world: World) -> None:
        """Uma has read a third of her chats to the end and a third to half-way; a third she has not opened."""
        store = self.services.messages.store
        last = {doc["_id"]: doc.get("last_seq", 0) async for doc in store.chats.find(
            {"_id": {"$in": [c.id for c in world.mine]}}, {"last_seq": 1})}
        jobs = []
        for i, chat in enumerate(world.mine):
            seq = last.get(chat.id, 0) if i % 3 == 0 else last.get(chat.id, 0) // 2 if i % 3 == 1 else 0
            if seq > 0:
                jobs.append(self._limited(self.services.messages.read(world.uma.identity, chat.id, seq)))
        await asyncio.gather(*jobs)


# -- timing ---------------------------------------------------------------------------------


@dataclass
class Route:
    name: str
    budget: str | None  # the key of BUDGET_MS this route answers to, if any
    run: Callable[[], Awaitable[tuple[int, int, int | None]]]  # one request: (status, bytes, rows)
    samples: list[float] = dataclasses.field(default_factory=list)
    status: int = 0
    size: int = 0
    items: int | None = None
    note: str = ""


def _size(body: Any) -> int:
    return len(body) if isinstance(body, (bytes, str)) else len(json.dumps(body))


def _items(body: Any) -> int | None:
    """How many rows an answer holds: a list's length, or that of a page's first list."""
    if isinstance(body, list):
        return len(body)
    if isinstance(body, dict):
        return next((len(v) for v in body.values() if isinstance(v, list)), None)
    return None


async def stream_open(port: int, token: str, timeout: float = 10) -> tuple[int, int, None]:
    """GET /events on a fresh connection until the `retry:` frame; (status, bytes read). Closes the stream."""
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        writer.write((f"GET /events HTTP/1.1\r\nHost: {HOST}:{port}\r\nAccept: text/event-stream\r\n"
                      f"Authorization: Bearer {token}\r\n\r\n").encode())
        data = b""
        while b"retry:" not in data:
            chunk = await asyncio.wait_for(reader.read(65536), timeout)
            if not chunk:
                break
            data += chunk
        return int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else 0, len(data), None
    finally:
        writer.close()


class Timer:
    """The read routes as Uma's browser calls them, on one keep-alive connection to the api."""

    def __init__(self, stack: FechatterStack, world: World, store: Store):
        self.stack, self.world, self.store = stack, world, store
        self.api = HttpConnection(HOST, stack.api_port)

    async def get(self, path: str, **query: Any) -> tuple[int, Any]:
        url = f"{path}?{urlencode(query)}" if query else path
        return await self.api.request("GET", url, token=self.world.uma.token, timeout=60)

    def http(self, path: str, **query: Any) -> Callable[[], Awaitable[tuple[int, int, int | None]]]:
        async def run() -> tuple[int, int, int | None]:
            status, body = await self.get(path, **query)
            return status, _size(body), _items(body)
        return run

    async def deep_cursor(self, path: str, pages: int) -> str | None:
        """The cursor `pages` pages into a paged listing, or None when the route does not page."""
        cursor = None
        for _ in range(pages):
            status, body = await self.get(path, limit=100, **({"cursor": cursor} if cursor else {}))
            if status != 200 or not isinstance(body, dict) or not body.get("next_cursor"):
                return cursor
            cursor = body["next_cursor"]
        return cursor

    async def routes(self) -> list[Route]:
        general = self.world.general.id
        chat = await self.store.chats.find_one({"_id": general}, {"last_seq": 1})
        deep = max(2, chat["last_seq"] // 2)
        members = f"/api/chats/{general}/members"
        members_deep = await self.deep_cursor(members, 15)
        users_deep = await self.deep_cursor("/api/users", 15)
        token = self.world.uma.token
        n = f"{len(self.world.general.members):,}"
        routes = [
            # The control: one find_one by _id, whatever the database holds. What it gains between the
            # sizes is the machine's and the processes' state, not any query's growth.
            Route("GET /api/users/me (control)", None, self.http("/api/users/me")),
            Route(f"GET /api/chats ({len(self.world.mine)} chats)", "chats", self.http("/api/chats")),
            Route("messages, latest page", "messages", self.http(f"/api/chats/{general}/messages", limit=50)),
            Route("messages, before= half-way", "messages",
                  self.http(f"/api/chats/{general}/messages", limit=50, before=deep)),
            Route(f"members?limit=100 ({n})", "members", self.http(members, limit=100)),
            Route("members, page 16", "members",
                  self.http(members, limit=100, cursor=members_deep) if members_deep else self.http(members, limit=100),
                  note="" if members_deep else "no next_cursor: first page"),
            Route(f"users?limit=100 ({n})", None, self.http("/api/users", limit=100)),
            Route("users, page 16", None,
                  self.http("/api/users", limit=100, cursor=users_deep) if users_deep
                  else self.http("/api/users", limit=100),
                  note="" if users_deep else "no next_cursor: first page"),
            Route("channels/public", None, self.http("/api/channels/public", limit=100)),
            Route(f"search '{SEARCH_WORD}', all chats", "search", self.http("/api/search/messages", q=SEARCH_WORD)),
            Route(f"search '{SEARCH_WORD}', one chat", "search",
                  self.http("/api/search/messages", q=SEARCH_WORD, chat_id=general)),
            Route(f"GET /api/chats/{{id}} ({n})", None, self.http(f"/api/chats/{general}")),
            Route(f"stream open ({len(self.world.mine)} chats)", "stream",
                  lambda: stream_open(self.stack.notify_port, token)),
        ]
        return routes

    async def measure(self, samples: int, warmup: int) -> list[Route]:
        routes = await self.routes()
        for _ in range(max(1, warmup)):  # in turns too: the caches of every route warm alike
            for route in routes:
                if route.status in (0, 200):
                    # Not timed; a route that fails is left out: it would only stall the others.
                    route.status, route.size, route.items = await route.run()
        for _ in range(samples):
            for route in routes:
                if route.status != 200:
                    continue
                began = now()
                status, _, _ = await route.run()
                elapsed = now() - began
                if status != 200:
                    route.status = status
                    continue
                route.samples.append(elapsed)
        return routes

    def close(self) -> None:
        self.api.close()


def summary(route: Route) -> dict[str, Any]:
    values = sorted(route.samples)
    return {"status": route.status, "n": len(values), "bytes": route.size, "rows": route.items, "note": route.note,
            "p50_ms": percentile(values, 50) * 1000, "p95_ms": percentile(values, 95) * 1000,
            "max_ms": values[-1] * 1000 if values else float("nan")}


def print_results(sizes: tuple[int, int], small: dict[str, dict], large: dict[str, dict],
                  budgets: dict[str, str | None]) -> list[str]:
    """The table; returns the routes that missed a budget."""
    a, b = (f"{n:,}" for n in sizes)
    print(f"\n== reads at {a} and at {b} messages (ms; ratio = p95 at {b} / p95 at {a})")
    print(f"{'route':32} {'p50 ' + a:>11} {'p95 ' + a:>11} {'p50 ' + b:>11} {'p95 ' + b:>11} "
          f"{'ratio':>6} {'KB':>6} {'rows':>5} {'budget':>7}  verdict")
    missed = []
    for name, at_small in small.items():
        at_large = large[name]
        r = at_large["p95_ms"] / at_small["p95_ms"] if at_small["n"] and at_large["n"] else float("nan")
        budget = BUDGET_MS.get(budgets[name] or "")
        fails = []
        if not (r <= RATIO_BUDGET):
            fails.append("ratio")
        if budget is not None and not (at_large["p95_ms"] <= budget):
            fails.append("p95")
        if at_small["status"] != 200 or at_large["status"] != 200:
            fails = [f"status {at_small['status']}/{at_large['status']}"]
        if fails:
            missed.append(name)
        note = f"  ({at_large['note']})" if at_large["note"] else ""
        print(f"{name:32} {fmt(at_small['p50_ms']):>11} {fmt(at_small['p95_ms']):>11} {fmt(at_large['p50_ms']):>11} "
              f"{fmt(at_large['p95_ms']):>11} {fmt(r):>6} {at_large['bytes'] / 1000:>6.1f} "
              f"{'' if at_large['rows'] is None else at_large['rows']:>5} "
              f"{fmt(budget) if budget else '':>7}  {'over: ' + ', '.join(fails) if fails else 'ok'}{note}")
    control = next((name for name in small if "(control)" in name), None)
    if control and small[control]["n"] and large[control]["n"]:
        moved = large[control]["p95_ms"] / small[control]["p95_ms"]
        if not (1 / RATIO_BUDGET <= moved <= RATIO_BUDGET):
            # A find by _id does not grow with the database: when it moves this much, the machine did.
            print(f"the control moved x{moved:.2f} between the sizes: the machine's load changed, so this run's "
                  "ratios measure that, not the routes; run again on a quieter machine", flush=True)
    return missed


# -- the run --------------------------------------------------------------------------------


async def settle(pids: dict[str, int], idle: float = 0.05, window: float = 1.0, timeout: float = 120) -> None:
    """Until every process uses under `idle` of a core over `window` (the drains and consumers caught up)."""
    deadline = now() + timeout
    while now() < deadline:
        before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        await asyncio.sleep(window)  # the measuring window, not a wait for some event
        busy = {name: (cpu_seconds(pid) - before[name]) / window for name, pid in pids.items()}
        if max(busy.values()) < idle:
            return
    print(f"  (still busy after {timeout:.0f}s: {busy})", flush=True)


def footprint(stack: FechatterStack, pids: dict[str, int]) -> dict[str, float]:
    """RSS of each process and the size of the store's files, in MB."""
    sizes = sum(f.stat().st_size for f in (stack.workdir / "mongo").rglob("*") if f.is_file())
    return {"store_files_MB": sizes / 1e6, **{f"{name}_rss_MB": rss_bytes(pid) / 1e6 for name, pid in pids.items()}}


class CommandCounter(monitoring.CommandListener):
    """Counts the store commands a client sends."""

    def __init__(self) -> None:
        self.count = 0

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.count += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


async def page_costs(deps: Deps, services: ApiServices, world: World) -> dict[str, int]:
    """Store commands of Uma's latest page of 50 in the big channel, plain, then with reactions and replies.

    Through the api's own MessageService on a client of its own whose commands are counted; between the two,
    every message of the page gets reactions from several people and ten of them get thread replies.
    """
    counter = CommandCounter()
    mongo = deps.config.mongo
    client = make_client(mongo.uri, mongo.timeout_ms, event_listeners=[counter])
    try:
        counted = build_api_services(dataclasses.replace(deps, store=Store(client, mongo.database)))
        chat, uma = world.general, world.uma

        async def cost() -> tuple[int, int]:
            before = counter.count
            page = await counted.messages.list(uma.identity, chat.id, MessageListQuery(limit=50))
            return counter.count - before, len(page.messages)

        plain, rows = await cost()
        page = await services.messages.list(uma.identity, chat.id, MessageListQuery(limit=50))
        people = [p for p in chat.members[:6]]
        for n, message in enumerate(page.messages):
            for person, emoji in zip(people[: 1 + n % len(people)], ("thumbsup", "tada", "eyes", "heart", "rocket", "100")):
                await services.reactions.add(person.identity, chat.id, message.id, emoji)
        for message in page.messages[:10]:
            for person in people[:2]:
                await services.messages.send(person.identity, chat.id, MessageCreateIn(
                    content="reply in the thread", reply_to=message.id))
        marked, marked_rows = await cost()
        return {"plain_page_commands": plain, "plain_page_rows": rows,
                "marked_page_commands": marked, "marked_page_rows": marked_rows}
    finally:
        await client.close()


def seeder_config(stack: FechatterStack) -> Config:
    """The api role's configuration, as FechatterStack gives it to its processes (same keys, limits off)."""
    return load_config(env={}, overrides={
        "data_dir": str(stack.workdir / "data"),
        "mongo": {"uri": stack.mongo.uri},
        "nats": {"url": stack.nats.url},
        "limits": {"enabled": False},
        "auth": {"private_key_file": str(stack.workdir / "bench-ed25519-private.pem"),
                 "public_key_file": str(stack.workdir / "bench-ed25519-public.pem"),
                 "access_token_ttl_seconds": 7200},
    })


async def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.quick:
        args.messages = min(args.messages, 20_000)
    if args.small >= args.messages:
        raise SystemExit("--small must be below --messages")
    directory = workdir("growth")
    stack = FechatterStack(directory)
    rng = random.Random(args.seed)
    results: dict[str, Any] = {}
    nc = client = None
    try:
        await stack.start()
        config = seeder_config(stack)
        client = make_client(stack.mongo.uri, config.mongo.timeout_ms)
        store = Store(client, config.mongo.database)
        nc = await connect_nats(stack.nats.url, name="fechatter-bench-growth")
        issuer = load_issuer(config, development=False)
        deps = Deps(config=config, store=store, bus=EventBus(nc, config.nats), metrics=Metrics(),
                    verifier=issuer, issuer=issuer)
        services = build_api_services(deps)
        services = dataclasses.replace(services, accounts=AccountService(
            store, issuer, OneHash(), config.auth, config.limits, services.limiter))
        await services.outbox.drain_once()  # as a running api after its first drain: publish on the request path
        await services.outbox.start()
        seeder = Seeder(deps, services, rng)
        pids = {"api": stack.api.pid, "notify": stack.notify.pid, "mongo": stack.mongo.pid}

        began = now()
        owner, people = await seeder.people(args.users)
        uma = people[1]
        seeded_people = now() - began
        print(f"  {len(people):,} users in {seeded_people:.1f}s", flush=True)
        began = now()
        mine, others = await seeder.chats(owner, uma, people)
        world = World(owner, uma, people, mine, others)
        world.timings = {"users_s": seeded_people, "chats_s": now() - began}
        print(f"  {len(mine)} chats of Uma's, {len(others)} of others, general of {len(world.general.members):,}"
              f" members, in {world.timings['chats_s']:.1f}s", flush=True)

        phases: dict[int, dict[str, dict]] = {}
        state: dict[int, dict[str, float]] = {}
        budgets: dict[str, str | None] = {}
        for size in (args.small, args.messages):
            began = now()
            written = await seeder.messages(world, size, via_send=args.send)
            await seeder.read_marks(world)
            took = now() - began
            world.timings[f"messages_to_{size}_s"] = took
            print(f"  {written:,} messages (now {size:,}) in {took:.1f}s ({written / took:,.0f}/s)", flush=True)
            while await services.outbox.drain_once():
                pass
            await settle(pids)
            timer = Timer(stack, world, store)
            try:
                status, listing = await timer.get("/api/chats")
                if status != 200 or len(listing) != len(world.mine):
                    print(f"  GET /api/chats answered {status} with "
                          f"{len(listing) if isinstance(listing, list) else listing!r}", flush=True)
                routes = await timer.measure(args.samples, args.warmup)
            finally:
                timer.close()
            phases[size] = {route.name: summary(route) for route in routes}
            state[size] = footprint(stack, pids)
            budgets = {route.name: route.budget for route in routes}
            print(f"  measured {len(routes)} routes at {size:,} messages", flush=True)

        missed = print_results((args.small, args.messages), phases[args.small], phases[args.messages], budgets)
        costs = await page_costs(deps, services, world)
        print(f"a page of 50 in the big channel: {costs['plain_page_commands']} store commands plain, "
              f"{costs['marked_page_commands']} with reactions on every message and replies in 10 threads")
        if costs["plain_page_commands"] != costs["marked_page_commands"]:
            missed.append("page with reactions and replies")
        for size, numbers in state.items():
            print(f"at {size:,} messages: " + ", ".join(f"{k} {v:,.0f}" for k, v in numbers.items()))
        print("seeding: " + ", ".join(f"{k} {v:.1f}" for k, v in world.timings.items()))
        print("every route within its budgets" if not missed else f"{len(missed)} route(s) over: {', '.join(missed)}")
        results = {"small": phases[args.small], "large": phases[args.messages], "timings": world.timings,
                   "footprint": state, "missed": missed, "page_costs": costs, "users": len(people), "chats_of_uma": len(mine),
                   "other_chats": len(others)}
        await services.outbox.stop()
    finally:
        if nc is not None:
            await nc.close()
        if client is not None:
            await client.close()
        await stack.stop()
        shutil.rmtree(directory, ignore_errors=True)
    return saved("growth", args, results)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--messages", type=int, default=250_000, help="messages in the database at the end")
    parser.add_argument("--small", type=int, default=2_000, help="messages at the first measurement")
    parser.add_argument("--quick", action="store_true", help="a smoke run: at most 20,000 messages")
    parser.add_argument("--users", type=int, default=3_000, help="users of the workspace (and of its big channel)")
    parser.add_argument("--samples", type=int, default=60, help="timed requests per route and size")
    parser.add_argument("--warmup", type=int, default=10, help="untimed rounds of every route first")
    parser.add_argument("--seed", type=int, default=12, help="the random seed of the history")
    parser.add_argument("--send", action="store_true",
                        help="write every message through MessageService.send, as POST .../messages does (slow)")


if __name__ == "__main__":
    cli(__doc__, add_arguments, run)
