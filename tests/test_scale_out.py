"""Scale out: 2 api + 2 notify processes on one NATS and one MongoDB-wire server; --processes N workers."""

import asyncio
import signal
import time

import msgspec
import psutil
import pytest
from nats.js.errors import NoKeysError

from app import events
from tests.processes import RoleProcess
from tests.support.api import Api, wait_for
from tests.support.chats import create_chat
from tests.support.sse import SSEClient

pytestmark = pytest.mark.gen_test(timeout=120)

PRESENCE_TTL = 3  # seconds: how long a crashed notify process's users may still look online
PRESENCE_ENV = {"FECHATTER_NOTIFY_PRESENCE_TTL_SECONDS": str(PRESENCE_TTL)}


def contents(client: SSEClient) -> list[str]:
    return [frame.data["content"] for frame in client.of(events.MESSAGE_CREATED)]


async def send(api: Api, user, chat_id: str, content: str) -> dict:
    reply = await api.post(f"/api/chats/{chat_id}/messages", {"content": content}, token=user["token"])
    assert reply.status == 201, reply.body
    return reply.body


async def online_ids(notify: RoleProcess, user, query: str = "") -> set[str]:
    reply = await notify.api.get(f"/api/online-users{query}", token=user["token"])
    assert reply.status == 200, reply.body
    return {entry["id"] for entry in reply.body["users"]}


async def everywhere(notifies, user, query: str = "") -> list[set[str]]:
    return [await online_ids(notify, user, query) for notify in notifies]


async def connected_users(notify: RoleProcess) -> int:
    return (await notify.api.get("/api/sse/health")).body["connected_users"]


def statuses(client: SSEClient, user) -> list[str]:
    return [f.data["status"] for f in client.of(events.PRESENCE) if f.data["user_id"] == user["id"]]


def once_per_transition(sequence: list[str]) -> bool:
    return all(a != b for a, b in zip(sequence, sequence[1:])) and (not sequence or sequence[0] == "online")


async def test_two_api_and_two_notify_processes(role_process, sse_at, presence_kv):
    api1, api2 = await role_process("api", **PRESENCE_ENV), await role_process("api", **PRESENCE_ENV)
    n1, n2 = await role_process("notify", **PRESENCE_ENV), await role_process("notify", **PRESENCE_ENV)

    ada = await api1.api.signup(fullname="Ada")
    code = ada["workspace"]["invite_code"]
    bob = await api2.api.signup(invite_code=code, fullname="Bob")
    cy = await api1.api.signup(invite_code=code, fullname="Cy")
    chat = (await create_chat(api1.api, ada, "group", [bob, cy], name="scale"))["id"]

    # Users on different notify processes chat live, through different api processes.
    ada_s = await sse_at(n1.url, ada["token"], expect=200)
    bob_s = await sse_at(n2.url, bob["token"], expect=200)
    cy_s = await sse_at(n1.url, cy["token"], expect=200)
    await send(api1.api, ada, chat, "hello from api1")
    await send(api2.api, bob, chat, "hello from api2")
    for client in (ada_s, bob_s, cy_s):
        await client.wait_for(lambda c: contents(c) == ["hello from api1", "hello from api2"], message="live")

    # Both processes answer the same: who is online in the chat, the workspace, the caller's chats.
    team = {ada["id"], bob["id"], cy["id"]}
    for query in (f"?chat_id={chat}", f"?workspace_id={ada['workspace']['id']}", ""):
        await wait_for(lambda q=query: _all_equal(everywhere((n1, n2), ada, q), team), timeout=10,
                       message=f"online-users{query} agreeing on both processes")
    await wait_for(lambda: _all_equal(_gather(connected_users(n1), connected_users(n2)), 3), timeout=10,
                   message="connected_users agreeing")

    # Cy leaves n1 and resumes on n2 with nothing lost; meanwhile Cy stays online (never two onlines).
    cy_last = cy_s.last_id
    cy_s.close()
    missed = [(await send(api2.api if i % 2 else api1.api, ada, chat, f"missed {i}"))["content"] for i in range(20)]
    cy_again = await sse_at(n2.url, cy["token"], last_event_id=cy_last, expect=200)
    await cy_again.wait_for(lambda c: contents(c) == missed, timeout=15, message="the 20 missed, resumed on n2")
    assert not cy_again.of(events.RESYNC)
    live = await send(api1.api, bob, chat, "after the move")
    await cy_again.wait_for(lambda c: contents(c) == [*missed, live["content"]], message="live after resume")

    # Ada heard each of Bob's and Cy's presence changes once, however many processes were involved.
    await ada_s.wait_for(lambda c: statuses(c, bob) == ["online"], message="bob online once")
    await ada_s.wait_for(lambda c: once_per_transition(statuses(c, cy)) and statuses(c, cy)[-1:] == ["online"],
                         message="cy online")
    await wait_for(lambda: _all_equal(everywhere((n1, n2), ada, f"?chat_id={chat}"), team), timeout=10,
                   message="online-users agreeing after the move")

    # n2 (Bob and Cy) is killed: they go offline within the TTL, their clients resume on n1.
    bob_last, cy_last = bob_s.last_id, cy_again.last_id
    n2.process.send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    await n2.wait()
    await bob_s.wait_ended()
    await cy_again.wait_ended()
    while_down = [(await send(api2.api, ada, chat, f"while n2 is down {i}"))["content"] for i in range(10)]
    await ada_s.wait_for(lambda c: statuses(c, bob)[-1:] == ["offline"] and statuses(c, cy)[-1:] == ["offline"],
                         timeout=PRESENCE_TTL + 5, message="bob and cy offline")
    elapsed = time.monotonic() - killed_at
    assert elapsed <= PRESENCE_TTL + 1.5, f"offline {elapsed:.1f}s after the kill, TTL {PRESENCE_TTL}s"
    assert await online_ids(n1, ada, f"?chat_id={chat}") == {ada["id"]}
    assert await connected_users(n1) == 1

    bob_again = await sse_at(n1.url, bob["token"], last_event_id=bob_last, expect=200)
    cy_back = await sse_at(n1.url, cy["token"], last_event_id=cy_last, expect=200)
    assert contents(bob_s) == ["hello from api1", "hello from api2", *missed, live["content"]]
    await bob_again.wait_for(lambda c: contents(c) == while_down, timeout=15,
                             message="bob's missed messages on n1")
    await cy_back.wait_for(lambda c: contents(c) == while_down, timeout=15, message="cy's missed messages on n1")
    assert not bob_again.of(events.RESYNC) and not cy_back.of(events.RESYNC)
    await ada_s.wait_for(lambda c: statuses(c, bob) == ["online", "offline", "online"], message="bob back online")
    assert once_per_transition(statuses(ada_s, cy))
    assert await online_ids(n1, ada, f"?chat_id={chat}") == team


async def test_processes_share_one_port_and_stop_on_sigterm(role_process, sse_at, presence_kv, deps, config):
    api = await role_process("api", **PRESENCE_ENV)
    notify = await role_process("notify", "--processes=2", **PRESENCE_ENV)
    supervisor = psutil.Process(notify.process.pid)
    workers = await wait_for(lambda: len(supervisor.children()) == 2 and supervisor.children(), timeout=10,
                             message="two workers")
    kv = await presence_kv()

    async def heartbeats() -> dict[int, dict]:
        beats = {}
        try:
            keys = await kv.keys()
        except NoKeysError:
            return beats
        for key in keys:
            if key.startswith("p."):
                try:
                    entry = await kv.get(key)
                except Exception:  # noqa: BLE001 - expired in between
                    continue
                beat = msgspec.json.decode(entry.value)
                beats[beat["pid"]] = beat
        return beats

    await wait_for(lambda: _pids(heartbeats(), {w.pid for w in workers}), timeout=10, message="both heartbeats")

    owner = await api.api.signup(fullname="Owner")
    code = owner["workspace"]["invite_code"]
    users = [owner] + [await api.api.signup(invite_code=code, fullname=f"U{i}") for i in range(5)]
    chat = (await create_chat(api.api, owner, "group", users[1:], name="ports"))["id"]
    clients = [await sse_at(notify.url, user["token"], expect=200) for user in users for _ in range(4)]

    async def both_serve() -> bool:
        beats = await heartbeats()
        counts = [beats.get(w.pid, {}).get("streams", 0) for w in workers]
        return sum(counts) == len(clients) and all(counts)

    # The kernel spreads the 24 connections over both workers (SO_REUSEPORT); each reports its share.
    await wait_for(both_serve, timeout=15, message="both workers holding streams")
    sent = await send(api.api, owner, chat, "to every worker")
    for client in clients:
        await client.wait_for(lambda c: contents(c) == [sent["content"]], message="delivered by either worker")
    # Whichever worker answers, it sees the users of the other one too.
    for _ in range(6):
        assert await connected_users(notify) == len(users)

    notify.process.send_signal(signal.SIGTERM)
    assert await notify.wait(30) == 0
    for client in clients:
        await client.wait_ended()
    assert not [w.pid for w in workers if w.is_running() and w.status() != psutil.STATUS_ZOMBIE]
    # A clean stop removes the heartbeats at once rather than waiting for them to expire.
    assert await heartbeats() == {}


async def _all_equal(values, expected) -> bool:
    got = await values
    return all(value == expected for value in got)


async def _gather(*awaitables):
    return await asyncio.gather(*awaitables)


async def _pids(beats, pids) -> bool:
    return set((await beats).keys()) == pids
