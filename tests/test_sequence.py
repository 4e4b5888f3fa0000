"""ChatSequence on a real store: seqs never repeat, a retry reuses its claimed seq, gaps are filled only when provably old."""

import asyncio
import datetime
import time

import pytest
from pymongo.errors import AutoReconnect

from app.errors import APIError
from app.events import encode_event, make_event
from app.outbox import Abandoned
from app.schemas.messages import message_out
from app.services.sequence import ChatSequence, claim_id
from app.store import new_id, utcnow
from tests.support.chats import outbox_empty, stream_events
from tests.support.api import wait_for

pytestmark = pytest.mark.gen_test(timeout=60)

GRACE = 30.0
WORKSPACE = "w1"


def _ago(seconds: float) -> datetime.datetime:
    return utcnow() - datetime.timedelta(seconds=seconds)


async def _chat(store, *, last_seq=0, last_message_at=None):
    chat_id = new_id()
    await store.chats.insert_one({
        "_id": chat_id, "workspace_id": WORKSPACE, "type": "group", "owner_id": "u1", "last_seq": last_seq,
        "last_message_at": last_message_at or utcnow(), "created_at": utcnow(), "updated_at": utcnow(),
    })
    return chat_id


async def _message(store, chat_id, seq, *, created_at=None, key=None, sender_id="u1"):
    doc = {"_id": new_id(), "chat_id": chat_id, "seq": seq, "sender_id": sender_id, "content": f"m{seq}",
           "files": [], "reply_to": None, "created_at": created_at or utcnow(), "edited_at": None, "deleted": False}
    if key is not None:
        doc["idempotency_key"] = key
    await store.messages.insert_one(doc)
    return doc


def _inserter(store, chat_id, *, key=None, fail_first=False):
    """An insert as MessageService brings it; `seqs` records the seq of every attempt."""
    seqs = []

    async def insert(seq):
        seqs.append(seq)
        if fail_first and len(seqs) == 1:
            raise AutoReconnect("simulated MongoDB hiccup during insert")
        return message_out(await _message(store, chat_id, seq, key=key))

    insert.seqs = seqs
    return insert


async def _seqs(store, chat_id, query=None):
    cursor = store.messages.find({"chat_id": chat_id, **(query or {})}, {"seq": 1})
    return sorted([doc["seq"] async for doc in cursor])


async def test_concurrent_takes_get_distinct_consecutive_seqs(deps):
    sequence = ChatSequence(deps.store, GRACE)
    chat_id = await _chat(deps.store)
    taken = await asyncio.gather(*(sequence.take(chat_id, WORKSPACE) for _ in range(50)))
    assert sorted(taken) == list(range(1, 51))
    assert (await deps.store.chats.find_one({"_id": chat_id}))["last_seq"] == 50


async def test_no_seq_is_taken_outside_the_chats_workspace(deps):
    sequence = ChatSequence(deps.store, GRACE)
    chat_id = await _chat(deps.store, last_seq=4)
    with pytest.raises(APIError) as raised:
        await sequence.take(chat_id, "another-workspace")
    assert raised.value.status_code == 404
    assert (await deps.store.chats.find_one({"_id": chat_id}))["last_seq"] == 4


async def test_a_retry_takes_over_a_failed_claim_and_reuses_its_seq(deps):
    sequence = ChatSequence(deps.store, GRACE)
    chat_id = await _chat(deps.store)
    insert = _inserter(deps.store, chat_id, key="k", fail_first=True)
    with pytest.raises(AutoReconnect):
        await sequence.send(chat_id, WORKSPACE, "u1", "k", insert)
    claim = await deps.store.send_claims.find_one({"_id": claim_id(chat_id, "u1", "k")})
    assert claim["state"] == "failed" and claim["seq"] == 1

    message, created = await sequence.send(chat_id, WORKSPACE, "u1", "k", insert)
    assert created and message.seq == 1 and insert.seqs == [1, 1]
    again, created_again = await sequence.send(chat_id, WORKSPACE, "u1", "k", insert)
    assert not created_again and again.id == message.id
    assert (await deps.store.chats.find_one({"_id": chat_id}))["last_seq"] == 1
    assert await _seqs(deps.store, chat_id) == [1]


async def test_a_retry_takes_over_a_claim_older_than_the_grace_period(deps):
    sequence = ChatSequence(deps.store, GRACE)
    chat_id = await _chat(deps.store, last_seq=1)
    # A process took seq 1 for this key and died before inserting; its claim is still "active".
    await deps.store.send_claims.insert_one({
        "_id": claim_id(chat_id, "u1", "k"), "chat_id": chat_id, "sender_id": "u1", "owner": "a-dead-process",
        "state": "active", "created_ts": time.time() - 2 * GRACE, "seq": 1,
    })
    message, created = await sequence.send(chat_id, WORKSPACE, "u1", "k", _inserter(deps.store, chat_id, key="k"))
    assert created and message.seq == 1
    claim = await deps.store.send_claims.find_one({"_id": claim_id(chat_id, "u1", "k")})
    assert claim["owner"] != "a-dead-process" and claim["state"] == "active"
    assert (await deps.store.chats.find_one({"_id": chat_id}))["last_seq"] == 1


async def test_a_young_claim_of_a_live_holder_is_not_taken_over(deps):
    sequence = ChatSequence(deps.store, 0.3)
    chat_id = await _chat(deps.store)
    await deps.store.send_claims.insert_one({
        "_id": claim_id(chat_id, "u1", "k"), "chat_id": chat_id, "sender_id": "u1", "owner": "a-live-process",
        "state": "active", "created_ts": time.time() + 60,
    })
    insert = _inserter(deps.store, chat_id, key="k")
    with pytest.raises(APIError) as raised:
        await sequence.send(chat_id, WORKSPACE, "u1", "k", insert)
    assert raised.value.status_code == 409 and raised.value.code == "send_in_progress"
    assert insert.seqs == []
    assert (await deps.store.send_claims.find_one({"_id": claim_id(chat_id, "u1", "k")}))["owner"] == "a-live-process"


async def test_a_send_whose_seq_was_filled_meanwhile_takes_the_next(deps):
    sequence = ChatSequence(deps.store, GRACE)
    chat_id = await _chat(deps.store)
    assert await sequence.fill_gap(chat_id, 1)  # gap repair got to seq 1 before the slow sender's insert
    message, created = await sequence.send(chat_id, WORKSPACE, "u1", None, _inserter(deps.store, chat_id))
    assert created and message.seq == 2
    assert await _seqs(deps.store, chat_id, {"gap": True}) == [1]


async def test_fill_gap_puts_a_tombstone_only_where_no_message_is(deps):
    sequence = ChatSequence(deps.store, GRACE)
    chat_id = await _chat(deps.store, last_seq=2)
    kept = await _message(deps.store, chat_id, 1)
    assert await sequence.fill_gap(chat_id, 1) is False
    assert (await deps.store.messages.find_one({"chat_id": chat_id, "seq": 1}))["_id"] == kept["_id"]

    assert await sequence.fill_gap(chat_id, 2) is True
    tombstone = await deps.store.messages.find_one({"chat_id": chat_id, "seq": 2})
    assert tombstone["deleted"] is True and tombstone["gap"] is True
    assert tombstone["content"] == "" and tombstone["sender_id"] is None and tombstone["files"] == []


async def test_a_page_fills_only_gaps_proven_older_than_the_grace_period(deps):
    sequence = ChatSequence(deps.store, GRACE)
    # The chat's last $inc is recent, so only an old message after a gap proves the gap old.
    chat_id = await _chat(deps.store, last_seq=5, last_message_at=utcnow())
    docs = [await _message(deps.store, chat_id, 1, created_at=_ago(3 * GRACE)),
            await _message(deps.store, chat_id, 3, created_at=_ago(2 * GRACE)),
            await _message(deps.store, chat_id, 5)]
    chat = await deps.store.chats.find_one({"_id": chat_id})
    assert await sequence.repair_gaps(chat, docs, 1, 5) is True
    # 2 is older than message 3; 4 may still be a send in flight (only the young message 5 follows it).
    assert await _seqs(deps.store, chat_id, {"gap": True}) == [2]
    assert await _seqs(deps.store, chat_id) == [1, 2, 3, 5]


async def test_a_page_after_an_old_last_inc_fills_every_gap(deps):
    sequence = ChatSequence(deps.store, GRACE)
    chat_id = await _chat(deps.store, last_seq=3, last_message_at=_ago(2 * GRACE))
    docs = [await _message(deps.store, chat_id, 2, created_at=_ago(2 * GRACE))]
    chat = await deps.store.chats.find_one({"_id": chat_id})
    assert await sequence.repair_gaps(chat, docs, 1, 3) is True
    assert await _seqs(deps.store, chat_id, {"gap": True}) == [1, 3]
    assert await sequence.repair_gaps(chat, await deps.store.messages.find({"chat_id": chat_id}).to_list(), 1, 3) \
        is False


async def test_the_outbox_hook_fills_the_seq_of_an_abandoned_send(deps):
    sequence = ChatSequence(deps.store, GRACE)
    chat_id = await _chat(deps.store, last_seq=2)
    await _message(deps.store, chat_id, 1)
    # The send landed after all: the outbox must check again.
    assert await sequence.on_abandoned(Abandoned("e1", "message.created", chat_id, {"seq": 1})) is True
    # The send died between its $inc and its insert: the seq is filled and the event never can be true.
    assert await sequence.on_abandoned(Abandoned("e2", "message.created", chat_id, {"seq": 2})) is False
    assert await _seqs(deps.store, chat_id, {"gap": True}) == [2]
    # Not a send: nothing to give back.
    assert await sequence.on_abandoned(Abandoned("e3", "chat.updated", chat_id, {"seq": 3})) is False
    assert await _seqs(deps.store, chat_id) == [1, 2]


async def test_the_outbox_drainer_fills_the_seq_of_an_abandoned_entry_stored_as_before(app, deps):
    """An entry of a send that died, as every version stored it (`seq` at the top): dropped, its seq filled."""
    chat_id = await _chat(deps.store, last_seq=1)
    event = make_event("message.created", {"id": "m1", "chat_id": chat_id, "seq": 1}, chat_id=chat_id,
                       workspace_id=WORKSPACE)
    await deps.store.outbox.insert_one({
        "_id": event.id, "state": "pending", "owner": "a-dead-process", "n": 1, "created_at": _ago(2 * GRACE),
        "type": event.type, "chat_id": chat_id, "subject": deps.bus.subjects.for_event(event),
        "payload": encode_event(event).decode(), "check_collection": "messages", "check_id": "m1",
        "check_op": "exists", "seq": 1,
    })
    await wait_for(lambda: outbox_empty(deps.store), message="the abandoned entry settled")
    assert await _seqs(deps.store, chat_id, {"gap": True}) == [1]
    assert await stream_events(deps.bus) == []
