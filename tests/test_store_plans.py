"""Each query shape the store issues is an index read: SQLite's plan on the embedded server, explain() on MongoDB."""

from __future__ import annotations

import datetime
import os
import uuid

import pytest
from pymongo import MongoClient

from tests.support.plans import PlanProbe, TracedWireServer, with_app_indexes

REAL_MONGO = os.environ.get("FECHATTER_TEST_MONGO_URI")


def embedded_gap(reason: str):
    """A shape the embedded server serves with a scan: expected to fail there, and to pass on MongoDB."""
    return pytest.mark.xfail(not REAL_MONGO, strict=True, raises=AssertionError, reason=f"nx-27017: {reason}")


@pytest.fixture(scope="module")
def probe():
    server = None if REAL_MONGO else TracedWireServer().start()
    client = MongoClient(REAL_MONGO or server.uri, tz_aware=True)
    try:
        yield PlanProbe(client, server)
    finally:
        client.close()
        if server is not None:
            server.stop()


@pytest.fixture(scope="module")
def db(probe):
    """The app's own indexes (Store.ensure_indexes) on a few chats' worth of documents."""
    name = f"plans_{uuid.uuid4().hex[:8]}"
    with_app_indexes(probe.server.uri if probe.server else REAL_MONGO, name)
    database = probe.client[name]
    start = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
    database.chats.insert_many([{"_id": f"c{i}", "workspace_id": "w1", "type": "group", "last_seq": 100} for i in range(5)])
    database.members.insert_many(
        [{"_id": f"m{c}{u}", "chat_id": f"c{c}", "user_id": f"u{u}", "last_read_seq": 0} for c in range(5) for u in range(20)]
    )
    database.messages.insert_many(
        [
            {"_id": f"c{c}-{s}", "chat_id": f"c{c}", "seq": s, "sender_id": f"u{s % 20}", "content": f"word{s % 7} text",
             "created_at": start + datetime.timedelta(seconds=s)}
            for c in range(5) for s in range(1, 101)
        ]  # fmt: skip
    )
    yield database
    probe.client.drop_database(name)


def test_a_message_page_with_eq_is_a_range_of_the_chat_seq_index(probe, db):
    command = {"find": "messages", "filter": {"chat_id": {"$eq": "c1"}, "seq": {"$gte": 10, "$lte": 59}},
               "sort": {"seq": -1}, "limit": 50}  # fmt: skip
    probe.plan(db, command).assert_indexed()
    assert [d["seq"] for d in db.messages.find(command["filter"]).sort("seq", -1).limit(50)] == list(range(59, 9, -1))


@embedded_gap("plain equality on a field no index name ends in is an array-containment OR -> SCAN")
def test_a_message_page_with_plain_equality_scans_the_collection(probe, db):
    # neosqlite reads {chat_id: X} as "X or an array containing X" (an OR EXISTS(json_each)) unless some
    # index *name* ends in "_chat_id"; idx_messages_chat_id_seq does not, so SQLite scans every message.
    command = {"find": "messages", "filter": {"chat_id": "c1", "seq": {"$gte": 10, "$lte": 59}}, "sort": {"seq": 1}, "limit": 50}
    probe.plan(db, command).assert_indexed()


def test_chats_by_id_in_list_is_an_id_index_search(probe, db):
    # $in on _id compiles to `_id IN (...)` on the _id column's index; $in on any other field is a json_each scan.
    probe.plan(db, {"find": "chats", "filter": {"_id": {"$in": ["c0", "c2", "c4"]}}}).assert_indexed()


def test_a_conditional_update_by_id_is_an_id_index_search(probe, db):
    command = {"update": "chats", "updates": [{"q": {"_id": "c3", "last_seq": {"$lt": 1000}}, "u": {"$set": {"touched": 1}}}]}
    probe.plan(db, command).assert_indexed()


@embedded_gap("updates always compile plain equality to the array-containment OR -> SCAN")
def test_an_update_by_plain_equality_scans_even_with_a_named_index(probe, db):
    # Updates, deletes, count and aggregate $match use neosqlite's other translator, which always adds the
    # array-containment OR to a plain equality, whatever the index names: write {"$eq": v} there.
    command = {"update": "members", "updates": [{"q": {"chat_id": "c4", "user_id": "u19"}, "u": {"$max": {"last_read_seq": 3}}}]}
    probe.plan(db, command).assert_indexed()


def test_an_update_by_eq_is_a_search_of_the_compound_index(probe, db):
    command = {"update": "members",
               "updates": [{"q": {"chat_id": {"$eq": "c4"}, "user_id": {"$eq": "u19"}}, "u": {"$max": {"last_read_seq": 3}}}]}  # fmt: skip
    probe.plan(db, command).assert_indexed()


def test_a_count_command_with_eq_is_an_index_range(probe, db):
    command = {"count": "messages", "query": {"chat_id": {"$eq": "c2"}, "seq": {"$gt": 90}}}
    probe.plan(db, command).assert_indexed()
    assert db.command(command)["n"] == 10


@embedded_gap("a $group aggregate copies the whole collection into a temporary table")
def test_count_documents_copies_the_collection(probe, db):
    # pymongo's count_documents is an aggregate ($match, $group); nx-27017 copies the whole collection into a
    # temporary table and groups in Python: seconds at 50,000 messages. Use the count command, or a capped find.
    command = {"aggregate": "messages", "pipeline": [{"$match": {"chat_id": {"$eq": "c2"}}}, {"$group": {"_id": 1, "n": {"$sum": 1}}}],
               "cursor": {}}  # fmt: skip
    probe.plan(db, command).assert_indexed()


def test_members_among_reads_one_chat_range_or_one_user_range(probe, db):
    # membership.members_among: the other list is a per-row filter inside the compound index's range.
    users = [f"u{u}" for u in range(0, 20, 3)]
    probe.plan(db, {"find": "members", "filter": {"chat_id": {"$eq": "c2"}, "user_id": {"$in": users}},
                    "projection": {"user_id": 1, "_id": 0}}).assert_indexed()
    probe.plan(db, {"find": "members", "filter": {"user_id": {"$eq": "u7"}, "chat_id": {"$in": ["c1", "c3"]}},
                    "projection": {"_id": 1}, "limit": 1}).assert_indexed()


def test_the_outbox_drain_walks_its_index_in_order(probe, db):
    # No filter and a limit: SQLite walks idx_outbox_created_at_n and stops after `limit` entries.
    db.outbox.insert_many([{"_id": f"e{i}", "state": "pending", "n": i, "created_at": datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)}
                           for i in range(30)])  # fmt: skip
    probe.plan(db, {"find": "outbox", "filter": {}, "sort": {"created_at": 1, "n": 1}, "limit": 500}).assert_indexed()


@embedded_gap("a range on a datetime field compiles to datetime(COALESCE(...)): no index serves it")
def test_a_datetime_range_scans(probe, db):
    since = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
    probe.plan(db, {"find": "outbox", "filter": {"created_at": {"$gte": since}}, "sort": {"created_at": 1, "n": 1},
                    "limit": 10}).assert_indexed()  # fmt: skip
