"""Offline grace: a user whose last stream closes is announced offline only if no stream reopens anywhere in time."""

import asyncio
import time
from dataclasses import dataclass, field

import pytest

from app import events
from app.services.presence import Presence, lease_deadline
from tests.support.api import wait_for

pytestmark = pytest.mark.gen_test(timeout=60)

GRACE = 1.5
TTL = 3


@dataclass
class User:
    user_id: str
    workspace_id: str
    chats: set[str] = field(default_factory=set)


class Local:
    """A notify process's registry as presence sees it: which users hold streams here."""

    def __init__(self):
        self.users: dict[str, User] = {}

    @property
    def stream_count(self) -> int:
        return len(self.users)

    def online(self, user_id: str) -> bool:
        return user_id in self.users

    def chats_of(self, user_id: str):
        user = self.users.get(user_id)
        return set(user.chats) if user else None

    def online_here(self):
        return list(self.users.values())

    def members_here(self, chat_ids):
        wanted = set(chat_ids)
        return {u.user_id for u in self.users.values() if u.chats & wanted}


class Process:
    """One notify process's presence on the test's NATS."""

    def __init__(self, deps, grace: float = GRACE):
        self.local = Local()
        self.presence = Presence(deps.bus, deps.store, self.local, TTL, grace_seconds=grace)
        self.stopped = False

    def open(self, user: User) -> None:
        self.local.users[user.user_id] = user
        self.presence.changed(user)

    def close(self, user: User) -> None:
        self.local.users.pop(user.user_id)
        self.presence.changed(user)

    async def shutdown(self) -> None:
        self.stopped = True
        await self.presence.flush(2)
        await self.presence.stop(2)


@pytest.fixture
def announcements(io_loop, deps, config):
    """Every presence event published on the test's stream, as (user_id, status, monotonic time)."""
    heard: list[tuple[str, str, float]] = []

    async def on_message(msg):
        event = events.decode_event(msg.data)
        heard.append((event.data["user_id"], event.data["status"], time.monotonic()))

    sub = io_loop.run_sync(lambda: deps.bus.nc.subscribe(
        f"{config.nats.subject_prefix}.user.*.{events.PRESENCE}", cb=on_message))
    yield heard
    io_loop.run_sync(sub.unsubscribe)


@pytest.fixture
def processes(io_loop, deps):
    started: list[Process] = []

    async def start(grace: float = GRACE) -> Process:
        process = Process(deps, grace)
        started.append(process)
        await process.presence.start()
        return process

    yield start

    async def stop_all():
        for process in started:
            if not process.stopped:
                await process.presence.stop(2)

    io_loop.run_sync(stop_all)


def of(heard, user: User) -> list[str]:
    return [status for user_id, status, _ in heard if user_id == user.user_id]


async def test_reconnect_elsewhere_within_grace_never_flickers(processes, announcements):
    a, b = await processes(), await processes()
    ada, bob = User("u-ada", "ws-1", {"c-1", "c-2"}), User("u-bob", "ws-1", {"c-1"})
    cy = User("u-cy", "ws-2", {"c-9"})  # another workspace, on the other process throughout
    a.open(ada)
    a.open(bob)
    b.open(cy)
    await wait_for(lambda: of(announcements, ada) == ["online"] and of(announcements, bob) == ["online"]
                   and of(announcements, cy) == ["online"], message="three online")
    await wait_for(lambda: b.presence.is_online(ada.user_id), message="b mirrors ada")

    # Ada's tab moves from a to b; Bob simply leaves.
    a.close(ada)
    a.close(bob)
    left_at = time.monotonic()
    await asyncio.sleep(0.3)  # a reconnect's real delay, not synchronisation
    b.open(ada)
    await wait_for(lambda: of(announcements, bob) == ["online", "offline"], timeout=GRACE + 5,
                   message="bob offline after the grace")
    bob_offline_at = next(t for u, s, t in announcements if u == bob.user_id and s == "offline")
    assert bob_offline_at - left_at >= GRACE * 0.9, "offline announced before the grace lapsed"
    assert bob_offline_at - left_at <= GRACE + 1.5, "offline announced long after the grace"
    # Through the whole move Ada was online to both processes and was never announced offline.
    assert a.presence.is_online(ada.user_id) and b.presence.is_online(ada.user_id)
    assert not a.presence.is_online(bob.user_id) and not b.presence.is_online(bob.user_id)
    # The lease a wrote is gone: b's stream replaced it.
    await wait_for(lambda: [lease_deadline(p) for p in b.presence.users[ada.user_id].p] == [None],
                   message="ada's record names b alone")
    await asyncio.sleep(GRACE + 0.5)  # past any lease a could have left: nothing more may be announced
    assert of(announcements, ada) == ["online"] and of(announcements, cy) == ["online"]


async def test_grace_outlives_the_process_that_started_it(processes, announcements):
    a, b = await processes(), await processes()
    ada, bob = User("u-ada", "ws-1", {"c-1"}), User("u-bob", "ws-1", {"c-1"})
    a.open(ada)
    a.open(bob)
    await wait_for(lambda: len(announcements) == 2, message="both online")
    await wait_for(lambda: b.presence.is_online(bob.user_id), message="b mirrors them")

    # SIGTERM of a: its streams end, it writes leases and is gone well before they lapse.
    a.close(ada)
    a.close(bob)
    closed_at = time.monotonic()
    await a.shutdown()
    assert time.monotonic() - closed_at < GRACE, "shutdown waited the grace"
    # Ada's tab reconnects to b; Bob's never comes back.
    b.open(ada)
    # b, the one process left, announces Bob offline when a's lease lapses; Ada stays online.
    await wait_for(lambda: of(announcements, bob) == ["online", "offline"], timeout=GRACE + 5,
                   message="bob offline announced by b")
    offline_at = next(t for u, s, t in announcements if u == bob.user_id and s == "offline")
    assert offline_at - closed_at >= GRACE * 0.9
    assert of(announcements, ada) == ["online"]
    assert b.presence.online_users() == {ada.user_id}


async def test_zero_grace_is_offline_at_once(processes, announcements):
    a = await processes(grace=0)
    ada = User("u-ada", "ws-1", {"c-1"})
    a.open(ada)
    await wait_for(lambda: of(announcements, ada) == ["online"], message="online")
    a.close(ada)
    closed_at = time.monotonic()
    await wait_for(lambda: of(announcements, ada) == ["online", "offline"], message="offline")
    assert time.monotonic() - closed_at < 1.0
