"""The replay window holds durable events only: typing and presence never push one out; a resume costs a page."""

import random

import pytest

from app import events
from app.services import delivery
from roles.notify import window as window_module
from roles.notify.window import ReplayWindow, WindowEntry
from tests.support.api import wait_for

pytestmark = pytest.mark.gen_test(timeout=60)

MAX_EVENTS = 20
MAX_EPHEMERAL = 5


@pytest.fixture
def config_overrides():
    # Typing unlimited here: the flood is the point. A window of 20 durable events, 5 ephemeral.
    return {"limits": {"enabled": False},
            "notify": {"replay_max_events": MAX_EVENTS, "replay_ephemeral_events": MAX_EPHEMERAL}}


def messages(client):
    return [f.data for f in client.of(events.MESSAGE_CREATED)]


async def consumed_all(world, notify_app):
    info = await world.bus.js.stream_info(world.bus.stream)
    await wait_for(lambda: notify_app.window.last_seq >= info.state.last_seq, message="notify caught up")


async def test_a_typing_flood_does_not_evict_a_missed_message(world, sse, notify_app):
    ws = await world.workspace()
    ada, bob, carl, dan = [await world.user(ws) for _ in range(4)]
    theirs = await world.chat(ada, bob)
    flooded = await world.chat(carl, dan)
    bob_stream = await sse(bob.token)
    before = await world.send(theirs, ada, "before")
    await bob_stream.wait_for(lambda c: messages(c) == [before])
    last_id = bob_stream.last_id
    bob_stream.close()

    missed = await world.send(theirs, ada, "missed")
    for _ in range(MAX_EVENTS * 3):  # three windows' worth of typing in someone else's chat
        await world.typing(flooded, carl)
    await consumed_all(world, notify_app)

    again = await sse(bob.token, last_event_id=last_id)
    await again.wait_count(1, events.MESSAGE_CREATED)
    live = await world.send(theirs, ada, "live")
    await again.wait_for(lambda c: messages(c)[-1:] == [live])
    assert not again.of(events.RESYNC)
    assert messages(again) == [missed, live]
    assert not again.of(events.TYPING)  # carl's typing was never bob's
    # The flood went to the ephemeral ring, bounded on its own.
    assert notify_app.window.ephemeral_count == MAX_EPHEMERAL


async def test_ephemeral_events_still_in_their_ring_replay_in_order(world, sse, notify_app):
    ada, bob, chat = await world.pair()
    bob_stream = await sse(bob.token)
    await world.send(chat, ada, "seen")
    await bob_stream.wait_count(1, events.MESSAGE_CREATED)
    last_id = bob_stream.last_id
    bob_stream.close()

    first = await world.send(chat, ada, "first missed")
    await world.typing(chat, ada)
    second = await world.send(chat, ada, "second missed")
    await consumed_all(world, notify_app)
    again = await sse(bob.token, last_event_id=last_id)
    await again.wait_count(2, events.MESSAGE_CREATED)
    replayed = [(f.event, f.data) for f in again.events if f.event != events.PRESENCE]
    assert replayed == [(events.MESSAGE_CREATED, first), (events.TYPING, {"chat_id": chat, "user_id": ada.id}),
                        (events.MESSAGE_CREATED, second)]
    ids = [f.id for f in again.events]
    assert ids == sorted(set(ids)) and ids[0] > last_id


def entry(seq, type_=events.MESSAGE_CREATED, chat="c1", frame=None):
    return WindowEntry(seq, float(seq), type_, frame if frame is not None else b"f%d" % seq, chat_id=chat)


def held(window):
    """The durable entries the window holds, oldest first."""
    return window._durable.entries[window._durable.head:]


def test_window_counts_durable_events_only():
    window = ReplayWindow(60, 3, max_ephemeral_events=2)
    window.start_at(0)
    window.append(entry(1))
    for seq in range(2, 50):
        window.append(entry(seq, events.TYPING))
    window.append(WindowEntry(50, 50.0, "", b""))  # unreadable or for nobody: no slot
    window.append(WindowEntry(51, 51.0, events.PRESENCE, b"p", subject="x", chat_ids=("c1",)))
    assert (len(window), window.ephemeral_count, window.floor, window.last_seq) == (1, 2, 0, 51)
    assert window.replay("u", {"c1"}, 0) == [b"f1", b"f49", b"p"]
    # Durable events evict only each other; the floor moves to the last durable event evicted.
    for seq in range(52, 56):
        window.append(entry(seq))
    assert len(window) == 3 and window.floor == 52 and not window.covers(51) and window.covers(52)
    assert window.replay("u", {"c1"}, 52) == [b"f53", b"f54", b"f55"]
    # Age evicts both kinds.
    window.trim(now=60 + 54.5)
    assert len(window) == 1 and window.ephemeral_count == 0 and window.floor == 54


def test_replay_stops_after_the_page_it_can_send():
    window = ReplayWindow(60, 10_000)
    window.start_at(0)
    for seq in range(1, 10_001):
        window.append(entry(seq, frame=b"x" * 100))
    page = window.replay("u", {"c1"}, 0, max_bytes=1_000)
    # One frame past the limit, so the caller knows there is more and sends a page of what fits.
    assert len(page) == 11
    assert len(window.replay("u", {"c1"}, 9_990)) == 10


def test_membership_rebuild_reads_only_membership_changes():
    window = ReplayWindow(60, 100)
    window.start_at(0)
    window.append(entry(1, chat="c2"))
    window.append(WindowEntry(2, 2.0, events.MEMBER_JOINED, b"joined", chat_id="c2",
                              changes=(("u", "c2", True),)))
    window.append(entry(3, chat="c2"))
    for seq in range(4, 104):  # pushes the join (and its change) out of the window
        window.append(entry(seq, chat="c9"))
    # No membership change is held any more, nor the index of u's own entries the rebuild reads.
    assert window.floor == 3 and not any(e.changes for e in held(window)) and ("u", "u") not in window._by_key
    # Now a member of c2 with no change in the window: c2 was theirs all along.
    window.append(entry(104, chat="c2"))
    assert window.replay("u", {"c2"}, 3) == [b"f104"]


def test_an_evicted_entry_is_let_go_by_every_index():
    # 500 chats, each entry named by a chat and some by users: after the window turned over three
    # times, no ring of it holds an entry (and its frame) the window no longer covers.
    window = ReplayWindow(10**6, 1_000)
    window.start_at(0)
    for seq in range(1, 3_001):
        chat = f"c{seq % 500}"
        if seq % 7 == 0:
            window.append(WindowEntry(seq, float(seq), events.MEMBER_LEFT, b"l", chat_id=chat,
                                      recipients=(f"u{seq % 50}",), changes=((f"u{seq % 50}", chat, False),),
                                      changes_first=False))
        else:
            window.append(entry(seq, chat=chat))
    live = {id(e) for e in held(window)}
    assert len(live) == 1_000 and all(e.seq > window.floor for e in held(window))
    indexed = [e for ring in window._by_key.values() for e in ring.entries if e is not None]
    assert {id(e) for e in indexed} == live


@pytest.mark.parametrize("sort_at_most", [window_module.SORT_AT_MOST, 0], ids=["sorted", "merged"])
def test_replay_from_the_indexes_is_the_rule_over_every_held_entry(monkeypatch, sort_at_most):
    """The per-chat and per-user indexes change what a resume reads, never what it returns: the same
    frames as the one delivery rule walked over every held entry, for every user and resume point
    (candidates sorted at once, or merged lazily)."""
    monkeypatch.setattr(window_module, "SORT_AT_MOST", sort_at_most)
    rng = random.Random(7)
    users, chats = [f"u{i}" for i in range(12)], [f"c{i}" for i in range(30)]
    member = {chat: set(rng.sample(users, 3)) for chat in chats}
    window = ReplayWindow(10**6, 400, max_ephemeral_events=50)
    window.start_at(0)
    for seq in range(1, 1_201):
        chat, user, roll = rng.choice(chats), rng.choice(users), rng.random()
        if roll < 0.08 and user not in member[chat]:
            member[chat].add(user)
            e = WindowEntry(seq, float(seq), events.MEMBER_JOINED, b"j%d" % seq, chat_id=chat,
                            changes=((user, chat, True),))
        elif roll < 0.16 and member[chat]:
            gone = rng.choice(sorted(member[chat]))
            member[chat].discard(gone)
            e = WindowEntry(seq, float(seq), events.MEMBER_LEFT, b"l%d" % seq, chat_id=chat, recipients=(gone,),
                            changes=((gone, chat, False),), changes_first=False)
        elif roll < 0.22:
            mine = tuple(c for c in chats if user in member[c])
            e = WindowEntry(seq, float(seq), events.PRESENCE, b"p%d" % seq, subject=user, chat_ids=mine)
        elif roll < 0.28:
            e = WindowEntry(seq, float(seq), events.TYPING, b"t%d" % seq, chat_id=chat)
        else:
            e = entry(seq, chat=chat, frame=b"m%d" % seq)
        window.append(e)
    everything = sorted([*held(window), *window._ephemeral.entries[window._ephemeral.head:]], key=lambda e: e.seq)
    for user in users:
        current = {chat for chat in chats if user in member[chat]}
        for after in range(window.floor, window.last_seq + 1, 37):
            missed = [e for e in everything if e.seq > after]
            # The rule as it stood before the indexes: membership at `after`, then every missed entry.
            mine = set(current)
            for e in reversed(missed):
                for who, chat, member_after in e.changes:
                    if who == user:
                        (mine.discard if member_after else mine.add)(chat)
            expected = []
            for e in missed:
                changes = [(c, m) for who, c, m in e.changes if who == user]
                for chat, member_after in changes if e.changes_first else ():
                    (mine.add if member_after else mine.discard)(chat)
                if delivery.is_for(e, user, mine):
                    expected.append(e.frame)
                for chat, member_after in changes if not e.changes_first else ():
                    (mine.add if member_after else mine.discard)(chat)
            assert window.replay(user, current, after) == expected, (user, after)
