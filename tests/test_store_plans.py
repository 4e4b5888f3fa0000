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


# -- mentions, usernames, settings (issue 14) ----------------------------------------------------------


@pytest.fixture(scope="module")
def mention_db(db):
    """Users with usernames in three workspaces and the mention documents of many users beside the caller's."""
    db.users.insert_many([{"_id": f"pu{i}", "workspace_id": f"w{i % 3}", "username": f"name{i // 3}",
                           "email": f"p{i}@example.com", "fullname": f"P {i}"} for i in range(300)])  # fmt: skip
    db.mentions.insert_many([{"_id": f"u{u}:c{m % 5}-{m}", "user_id": f"u{u}", "chat_id": f"c{m % 5}",
                              "message_id": f"c{m % 5}-{m:03d}"} for u in range(20) for m in range(60)])  # fmt: skip
    return db


def test_a_mentioned_name_is_a_point_read_of_the_username_index(probe, mention_db):
    command = {"find": "users", "filter": {"workspace_id": {"$eq": "w1"}, "username": {"$eq": "name7"}},
               "projection": {"_id": 1}, "limit": 1}  # fmt: skip
    probe.plan(mention_db, command).assert_indexed()
    assert [d["_id"] for d in mention_db.users.find(command["filter"])] == ["pu22"]


def test_the_names_sharing_a_derived_usernames_stem_are_a_range_of_its_index(probe, mention_db):
    command = {"find": "users", "filter": {"workspace_id": {"$eq": "w2"}, "username": {"$gte": "name1", "$lt": "name1\x7f"}},
               "projection": {"username": 1, "_id": 0}, "limit": 2000}  # fmt: skip
    probe.plan(mention_db, command).assert_indexed()
    got = sorted(d["username"] for d in mention_db.users.find(command["filter"], command["projection"]))
    assert got == sorted(f"name{i // 3}" for i in range(300) if i % 3 == 2 and f"name{i // 3}".startswith("name1"))


def test_mention_counters_are_updated_by_membership_id(probe, mention_db):
    ids = ["m13", "m17", "m19"]
    probe.plan(mention_db, {"update": "members", "updates": [
        {"q": {"_id": {"$in": ids}, "last_read_seq": {"$lt": 40}, "mention_n": {"$lt": 200}},
         "u": {"$addToSet": {"mention_seqs": 40}, "$inc": {"mention_n": 1}}, "multi": True}]}).assert_indexed()
    probe.plan(mention_db, {"update": "members", "updates": [
        {"q": {"_id": {"$in": ids}}, "u": {"$pull": {"mention_seqs": 40}}, "multi": True}]}).assert_indexed()
    # A settings change: compare-and-set on the membership's settings version.
    probe.plan(mention_db, {"update": "members", "updates": [
        {"q": {"_id": "m24", "settings_version": {"$exists": False}},
         "u": {"$set": {"notify": "none", "muted": True, "settings_version": "e1"}}}]}).assert_indexed()
    probe.plan(mention_db, {"update": "members", "updates": [
        {"q": {"_id": "m24", "settings_version": {"$eq": "e1"}},
         "u": {"$set": {"notify": "all", "muted": False, "settings_version": "e2"}}}]}).assert_indexed()


def test_a_users_mentions_are_a_range_of_their_index_newest_first(probe, mention_db):
    for filter_ in ({"user_id": {"$eq": "u4"}}, {"user_id": {"$eq": "u4"}, "message_id": {"$lt": "c2-030"}}):
        command = {"find": "mentions", "filter": filter_, "sort": {"message_id": -1}, "limit": 21,
                   "projection": {"message_id": 1, "chat_id": 1, "_id": 0}}
        probe.plan(mention_db, command).assert_indexed()
    got = [d["message_id"] for d in mention_db.mentions.find(filter_).sort("message_id", -1).limit(21)]
    want = sorted((f"c{m % 5}-{m:03d}" for m in range(60) if f"c{m % 5}-{m:03d}" < "c2-030"), reverse=True)[:21]
    assert got == want
    # The candidates are then read by _id.
    probe.plan(mention_db, {"find": "messages", "filter": {"_id": {"$in": ["c1-5", "c2-9", "c4-77"]}}}).assert_indexed()


def test_mentions_are_deleted_by_chat_by_member_and_by_id(probe, mention_db):
    for query in ({"chat_id": {"$eq": "c3"}}, {"chat_id": {"$eq": "c3"}, "user_id": {"$eq": "u5"}},
                  {"_id": {"$in": ["u1:c0-0", "u2:c0-0"]}}):
        probe.plan(mention_db, {"delete": "mentions", "deletes": [{"q": query, "limit": 0}]}).assert_indexed()


def test_a_channel_mention_is_kept_on_the_chat_by_id(probe, mention_db):
    probe.plan(mention_db, {"findAndModify": "chats", "query": {"_id": "c2"},
                            "update": {"$addToSet": {"mention_all_seqs": 41, "mention_all_ids": "c2-41"}},
                            "fields": {"mention_all_seqs": 1, "mention_all_ids": 1, "_id": 0}, "new": True}
               ).assert_indexed()


def test_a_workspaces_bots_are_a_search_of_their_index_not_a_read_of_its_people(probe, db):
    db.users.insert_many([{"_id": f"p{i}", "workspace_id": "w1", "email": f"p{i}@x.io", "is_bot": False}
                          for i in range(300)] + [{"_id": f"b{i}", "workspace_id": "w1", "email": f"b{i}@x.io",
                                                   "is_bot": True} for i in range(3)])
    command = {"find": "users", "filter": {"workspace_id": {"$eq": "w1"}, "is_bot": {"$eq": True}}}
    plan = probe.plan(db, command)
    plan.assert_indexed()
    if probe.embedded:  # by both fields: an index on workspace_id alone would read all 300 people
        assert "(<expr>=? AND <expr>=?)" in str(plan), str(plan)
    assert sorted(d["_id"] for d in db.users.find(command["filter"])) == ["b0", "b1", "b2"]
