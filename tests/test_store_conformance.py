"""Each command shape the app sends returns exactly what MongoDB returns, on a store holding other data beside it.

Runs on the session's MongoDB-wire server (nx-27017), or on a real MongoDB when FECHATTER_TEST_MONGO_URI is set,
with the app's own indexes (Store.ensure_indexes: on nx-27017 the index names change how a filter compiles).
Every expectation is computed by brute force from the fixture's documents, never copied from a server's answer.
"""

from __future__ import annotations

import datetime
import os
import uuid

import pytest
from pymongo import MongoClient, ReturnDocument
from pymongo.errors import DuplicateKeyError

from tests.support.plans import with_app_indexes

REAL_MONGO = bool(os.environ.get("FECHATTER_TEST_MONGO_URI"))
T0 = datetime.datetime(2024, 5, 1, tzinfo=datetime.timezone.utc)
WORDS = ["alpha", "bravo", "charlie", "delta", "echo"]


def embedded_bug(reason: str):
    """Wrong on the embedded server, right on MongoDB: fails here (strictly), passes there."""
    return pytest.mark.xfail(not REAL_MONGO, strict=True, raises=AssertionError, reason=f"nx-27017: {reason}")


@pytest.fixture(scope="module")
def client(mongo_uri):
    client = MongoClient(mongo_uri, tz_aware=True)
    yield client
    client.close()


def _data():
    """Two workspaces; chats of each type; members, messages, claims, outbox entries and tokens of all of them."""
    users = [{"_id": f"u{i:02d}", "workspace_id": "w1" if i < 20 else "w2", "fullname": f"{'ZYXWVUTSRQ'[i % 10]} {i}",
              "email": f"u{i}@example.com"} for i in range(30)]  # fmt: skip
    chats, members, messages = [], [], []
    for c in range(8):
        workspace = "w1" if c < 6 else "w2"
        people = [u["_id"] for u in users if u["workspace_id"] == workspace][c % 3:: 1 + c % 3][:12]
        chats.append({"_id": f"c{c}", "workspace_id": workspace, "type": ["direct", "group", "public_channel",
                      "private_channel"][c % 4], "last_seq": 30 + c, "deleted_floor": 0, "deleted_seqs": [],
                      "deleted_total": 0, "member_count": len(people)})  # fmt: skip
        for j, user_id in enumerate(people):
            members.append({"_id": f"m{c}-{user_id}", "chat_id": f"c{c}", "user_id": user_id, "workspace_id": workspace,
                            "role": "owner" if j == 0 else "member", "last_read_seq": (j * 7) % (30 + c),
                            "joined_at": T0 + datetime.timedelta(minutes=j)})  # fmt: skip
        for seq in range(1, 31 + c):
            doc = {"_id": f"c{c}-{seq}", "chat_id": f"c{c}", "seq": seq, "ord": seq, "sender_id": people[seq % len(people)],
                   "content": f"{WORDS[seq % 5]} number {seq}", "deleted": seq % 9 == 0,
                   "created_at": T0 + datetime.timedelta(seconds=seq * 10 + c), "version": f"v{seq}"}  # fmt: skip
            if seq % 4 == 0:
                doc["idempotency_key"] = f"k{seq}"
            messages.append(doc)
    outbox = [{"_id": f"e{i}", "state": "pending" if i % 3 else "committed", "owner": "p1", "n": (i * 5) % 7,
               "created_at": T0 + datetime.timedelta(seconds=i // 4), "type": "message.created", "chat_id": f"c{i % 8}"}
              for i in range(40)]  # fmt: skip
    tokens = [{"_id": f"t{i}", "user_id": f"u{i % 5:02d}", "family_id": f"f{i % 3}", "created_at": T0,
               "expires_at": T0 + datetime.timedelta(days=30)} for i in range(15)]  # fmt: skip
    return {"users": users, "chats": chats, "members": members, "messages": messages, "outbox": outbox,
            "refresh_tokens": tokens}


@pytest.fixture
def data():
    return _data()


@pytest.fixture
def db(client, mongo_uri, data):
    """A database of its own with the app's indexes and the fixture's documents; dropped afterwards."""
    name = f"conf_{uuid.uuid4().hex[:10]}"
    with_app_indexes(mongo_uri, name)
    database = client[name]
    for collection, docs in data.items():
        database[collection].insert_many(docs)
    yield database
    client.drop_database(name)


def ids(cursor) -> list:
    return [doc["_id"] for doc in cursor]


# -- members: who belongs where ---------------------------------------------------------------------


def test_a_users_memberships_by_eq(db, data):
    for user in ("u03", "u07", "u22", "nobody"):
        got = {d["chat_id"] for d in db.members.find({"user_id": {"$eq": user}}, {"chat_id": 1, "_id": 0})}
        assert got == {m["chat_id"] for m in data["members"] if m["user_id"] == user}, user


def test_a_users_chat_ids_by_distinct(db, data):
    # What search starts from: the values alone, no documents (and never every chat: a filter it could not
    # translate would make the embedded server answer for the whole collection).
    for user in ("u03", "u07", "u22", "nobody"):
        got = db.members.distinct("chat_id", {"user_id": {"$eq": user}})
        assert sorted(got) == sorted({m["chat_id"] for m in data["members"] if m["user_id"] == user}), user


def test_a_workspaces_chats_by_recent_activity_paged_by_skip(db):
    name = f"activity_{uuid.uuid4().hex[:8]}"
    chats = [{"_id": f"a{i:02d}", "workspace_id": "w1" if i % 3 else "w2",
              "last_message_at": T0 + datetime.timedelta(seconds=(i * 37) % 50)} for i in range(50)]
    db[name].insert_many(chats)
    db[name].create_index([("workspace_id", 1), ("last_message_at", -1)])
    want = [c["_id"] for c in sorted((c for c in chats if c["workspace_id"] == "w1"),
                                     key=lambda c: c["last_message_at"], reverse=True)]
    got = []
    for skip, limit in ((0, 4), (4, 16), (20, 64)):
        got += ids(db[name].find({"workspace_id": {"$eq": "w1"}}, sort=[("last_message_at", -1)], skip=skip,
                                 limit=limit))
    assert got == want


def test_one_membership_by_chat_and_user(db, data):
    for chat, user in (("c1", "u01"), ("c1", "u02"), ("c6", "u21"), ("c0", "u21"), ("c9", "u01")):
        want = next((m for m in data["members"] if m["chat_id"] == chat and m["user_id"] == user), None)
        got = db.members.find_one({"chat_id": {"$eq": chat}, "user_id": {"$eq": user}})
        assert got == want, (chat, user)


def test_members_of_a_chat_in_user_order_paged(db, data):
    # The paged members read: (chat_id $eq, user_id $gt cursor) in user_id order, 5 at a time.
    for chat in ("c0", "c2", "c7"):
        want = sorted(m["user_id"] for m in data["members"] if m["chat_id"] == chat)
        got, cursor = [], ""
        while True:
            page = [d["user_id"] for d in db.members.find({"chat_id": {"$eq": chat}, "user_id": {"$gt": cursor}})
                    .sort("user_id", 1).limit(5)]
            got += page
            if len(page) < 5:
                break
            cursor = page[-1]
        assert got == want, chat


def test_members_among_per_chat_and_per_user(db, data):
    users = ["u00", "u01", "u04", "u09", "u21", "u99"]
    for chat in ("c0", "c1", "c6"):
        got = {d["user_id"] for d in db.members.find({"chat_id": {"$eq": chat}, "user_id": {"$in": users}})}
        assert got == {m["user_id"] for m in data["members"] if m["chat_id"] == chat and m["user_id"] in users}
    chats = ["c1", "c3", "c6"]
    for user in users:
        got = db.members.find_one({"user_id": {"$eq": user}, "chat_id": {"$in": chats}}, {"_id": 1})
        assert (got is not None) == any(m["user_id"] == user and m["chat_id"] in chats for m in data["members"])


def test_read_mark_moves_only_forward_and_only_for_that_member(db, data):
    target = next(m for m in data["members"] if m["chat_id"] == "c2" and m["last_read_seq"] > 3)
    query = {"chat_id": {"$eq": "c2"}, "user_id": {"$eq": target["user_id"]}, "last_read_seq": {"$lt": 2}}
    assert db.members.update_one(query, {"$set": {"last_read_seq": 2}}).matched_count == 0  # never backwards
    query["last_read_seq"] = {"$lt": 30}
    result = db.members.update_one(query, {"$set": {"last_read_seq": 30, "read_ord": 29}})
    assert (result.matched_count, result.modified_count) == (1, 1)
    assert db.members.update_one({"_id": target["_id"]}, {"$max": {"last_read_seq": 12}}).modified_count == 0
    after = {d["_id"]: d for d in db.members.find({})}
    for m in data["members"]:
        want = {**m, "last_read_seq": 30, "read_ord": 29} if m["_id"] == target["_id"] else m
        assert after[m["_id"]] == want


def test_membership_is_unique_per_chat_and_user(db):
    with pytest.raises(DuplicateKeyError):
        db.members.insert_one({"_id": "dup", "chat_id": "c1", "user_id": "u01"})
    db.members.insert_one({"_id": "new", "chat_id": "c1", "user_id": "u99"})


def test_delete_of_a_chats_members_leaves_the_others(db, data):
    assert db.members.delete_many({"chat_id": {"$eq": "c3"}}).deleted_count == sum(
        m["chat_id"] == "c3" for m in data["members"])
    assert sorted(ids(db.members.find({}))) == sorted(m["_id"] for m in data["members"] if m["chat_id"] != "c3")


# -- users ------------------------------------------------------------------------------------------


def test_user_names_by_id_list_within_a_workspace(db, data):
    wanted = ["u01", "u05", "u21", "u25", "u77"]
    got = {d["_id"]: d["fullname"] for d in db.users.find({"_id": {"$in": wanted}, "workspace_id": {"$eq": "w1"}},
                                                          {"fullname": 1})}
    assert got == {u["_id"]: u["fullname"] for u in data["users"] if u["_id"] in wanted and u["workspace_id"] == "w1"}


def test_users_of_a_workspace_in_name_order(db, data):
    got = ids(db.users.find({"workspace_id": {"$eq": "w2"}}).sort([("fullname", 1), ("_id", 1)]))
    assert got == [u["_id"] for u in sorted(data["users"], key=lambda u: (u["fullname"], u["_id"]))
                   if u["workspace_id"] == "w2"]


def test_signin_lookup_by_email(db, data):
    assert db.users.find_one({"email": {"$eq": "u7@example.com"}})["_id"] == "u07"
    assert db.users.find_one({"email": {"$eq": "U7@example.com"}}) is None


# -- messages ---------------------------------------------------------------------------------------


def _messages(data, chat):
    return sorted((m for m in data["messages"] if m["chat_id"] == chat), key=lambda m: m["seq"])


def test_message_pages_by_seq(db, data):
    for chat in ("c1", "c5", "c7"):
        history = _messages(data, chat)
        page = ids(db.messages.find({"chat_id": {"$eq": chat}, "seq": {"$gte": 5, "$lte": 14}}).sort("seq", 1))
        assert page == [m["_id"] for m in history if 5 <= m["seq"] <= 14]
        newest = ids(db.messages.find({"chat_id": {"$eq": chat}, "seq": {"$lt": 20}}).sort("seq", -1).limit(6))
        assert newest == [m["_id"] for m in reversed(history) if m["seq"] < 20][:6]
        latest = ids(db.messages.find({"chat_id": {"$eq": chat}}).sort("seq", -1).limit(3))
        assert latest == [m["_id"] for m in reversed(history)][:3]
        assert db.messages.find_one({"chat_id": {"$eq": chat}}, sort=[("seq", -1)]) == history[-1]


def test_a_message_by_seq_and_by_id_within_its_chat(db, data):
    assert db.messages.find_one({"chat_id": {"$eq": "c4"}, "seq": {"$eq": 17}})["_id"] == "c4-17"
    assert db.messages.find_one({"chat_id": {"$eq": "c4"}, "seq": {"$eq": 99}}) is None
    assert db.messages.find_one({"_id": "c4-17", "chat_id": {"$eq": "c4"}})["seq"] == 17
    assert db.messages.find_one({"_id": "c4-17", "chat_id": {"$eq": "c3"}}) is None  # another chat's message


def test_idempotency_lookup(db, data):
    for chat, sender, key in (("c0", None, "k4"), ("c2", None, "k8"), ("c2", "nobody", "k8")):
        sender = sender or next(m["sender_id"] for m in data["messages"]
                                if m["chat_id"] == chat and m.get("idempotency_key") == key)
        want = [m["_id"] for m in data["messages"]
                if m["chat_id"] == chat and m["sender_id"] == sender and m.get("idempotency_key") == key]
        got = ids(db.messages.find({"chat_id": {"$eq": chat}, "sender_id": {"$eq": sender},
                                    "idempotency_key": {"$eq": key}}))
        assert sorted(got) == sorted(want)


def test_messages_without_a_key_never_clash_and_a_key_is_unique_per_sender(db, data):
    # The partial unique index (idempotency_key $exists): nx-27017 drops the partial filter, yet missing
    # keys stay distinct (NULLs in a SQLite UNIQUE index), so the result is MongoDB's.
    db.messages.insert_many([{"_id": f"x{i}", "chat_id": "c0", "seq": 100 + i, "sender_id": "u00"} for i in range(3)])
    first = next(m for m in data["messages"] if m.get("idempotency_key"))
    with pytest.raises(DuplicateKeyError):
        db.messages.insert_one({"_id": "y", "chat_id": first["chat_id"], "seq": 500, "sender_id": first["sender_id"],
                                "idempotency_key": first["idempotency_key"]})
    with pytest.raises(DuplicateKeyError):
        db.messages.insert_one({"_id": "z", "chat_id": "c0", "seq": 1, "sender_id": "u00"})  # (chat_id, seq)


def test_count_command_of_a_range(db, data):
    for chat, mark in (("c1", 10), ("c6", 0), ("c7", 36)):
        n = db.command("count", "messages", query={"chat_id": {"$eq": chat}, "seq": {"$gt": mark}})["n"]
        assert n == sum(m["chat_id"] == chat and m["seq"] > mark for m in data["messages"])
        n = db.command("count", "messages", query={"chat_id": {"$eq": chat}, "seq": {"$gt": mark, "$lte": mark + 9},
                                                   "deleted": {"$eq": True}})["n"]
        assert n == sum(m["chat_id"] == chat and mark < m["seq"] <= mark + 9 and m["deleted"] for m in data["messages"])


def test_bounded_search_in_one_chat(db, data):
    # Per chat, newest first, within a window of seqs; a case-insensitive regex written inline (no $options).
    got = ids(db.messages.find({"chat_id": {"$eq": "c3"}, "seq": {"$gte": 8}, "content": {"$regex": "(?i)CHARLIE"}})
              .sort("seq", -1).limit(4))
    want = [m["_id"] for m in reversed(_messages(data, "c3")) if m["seq"] >= 8 and "charlie" in m["content"]][:4]
    assert got == want


def test_edit_replaces_only_the_version_it_read(db, data):
    old = next(m for m in data["messages"] if m["_id"] == "c2-5")
    edited = {**old, "content": "edited", "version": "v-new"}
    assert db.messages.replace_one({"_id": old["_id"], "version": {"$eq": "v-stale"}}, edited).matched_count == 0
    assert db.messages.replace_one({"_id": old["_id"], "version": {"$eq": old["version"]}}, edited).modified_count == 1
    assert db.messages.find_one({"_id": "c2-5"}) == edited
    assert db.messages.count_documents({}) == len(data["messages"])


def test_eq_null_matches_a_missing_field(db):
    # A document written before a field existed has none; `{"version": None}` (plain) matches it on both.
    db.messages.insert_one({"_id": "old", "chat_id": "c0", "seq": 900, "sender_id": "u00"})
    assert db.messages.find_one({"_id": "old", "version": None}) is not None
    assert db.messages.find_one({"_id": "old", "version": {"$eq": None}}) is not None


def test_delete_of_a_chats_messages_leaves_the_others(db, data):
    assert db.messages.delete_many({"chat_id": {"$eq": "c5"}}).deleted_count == len(_messages(data, "c5"))
    assert db.command("count", "messages", query={"chat_id": {"$eq": "c4"}})["n"] == len(_messages(data, "c4"))


# -- chats: seqs and counters -----------------------------------------------------------------------


def test_taking_a_seq_is_an_atomic_increment_of_that_chat_only(db, data):
    taken = db.chats.find_one_and_update({"_id": "c3", "workspace_id": {"$eq": "w1"}},
                                         {"$inc": {"last_seq": 1, "msg_count": 1}},
                                         projection={"last_seq": 1, "msg_count": 1}, return_document=ReturnDocument.AFTER)
    assert taken == {"_id": "c3", "last_seq": 34, "msg_count": 1}
    assert db.chats.find_one_and_update({"_id": "c3", "workspace_id": {"$eq": "w2"}}, {"$inc": {"last_seq": 1}}) is None
    assert {d["_id"]: d["last_seq"] for d in db.chats.find({})} == {
        c["_id"]: c["last_seq"] + (c["_id"] == "c3") for c in data["chats"]}


def test_deleted_seqs_kept_as_a_bounded_array_of_ints(db):
    for seq in (7, 3, 9, 3):
        db.chats.find_one_and_update({"_id": "c1", "deleted_floor": {"$lt": seq}},
                                     {"$addToSet": {"deleted_seqs": seq}, "$inc": {"deleted_total": 1}})
    doc = db.chats.find_one({"_id": "c1"})
    assert sorted(doc["deleted_seqs"]) == [3, 7, 9] and doc["deleted_total"] == 4
    result = db.chats.update_one({"_id": "c1", "deleted_floor": {"$eq": 0}},
                                 {"$set": {"deleted_floor": 7}, "$pull": {"deleted_seqs": {"$lte": 7}}})
    assert result.modified_count == 1
    doc = db.chats.find_one({"_id": "c1"})
    assert (doc["deleted_seqs"], doc["deleted_floor"]) == ([9], 7)
    assert db.chats.find_one({"_id": "c2"})["deleted_seqs"] == []


def test_last_message_kept_on_the_chat_by_a_conditional_update(db):
    payload = {"id": "c4-40", "seq": 40, "content": 'a "quoted" text', "files": [], "created_at": "2024-05-01T00:00:00.000Z"}
    assert db.chats.update_one({"_id": "c4", "last_seq": {"$lte": 40}},
                               {"$set": {"last_message": payload, "last_message_id": "c4-40"}}).modified_count == 1
    assert db.chats.update_one({"_id": "c4", "last_message_id": {"$eq": "other"}},
                               {"$set": {"last_message.content": ""}}).matched_count == 0
    assert db.chats.update_one({"_id": "c4", "last_message_id": {"$eq": "c4-40"}},
                               {"$set": {"last_message.content": "edited"}}).modified_count == 1
    assert db.chats.find_one({"_id": "c4"})["last_message"] == {**payload, "content": "edited"}


def test_chats_by_id_list_and_public_channels_of_a_workspace(db, data):
    got = sorted(ids(db.chats.find({"_id": {"$in": ["c0", "c2", "c6", "c9"]}})))
    assert got == ["c0", "c2", "c6"]
    got = sorted(ids(db.chats.find({"workspace_id": {"$eq": "w1"}, "type": {"$eq": "public_channel"}})))
    assert got == sorted(c["_id"] for c in data["chats"] if c["workspace_id"] == "w1" and c["type"] == "public_channel")


def test_member_count_moves_with_joins_and_leaves(db, data):
    for delta in (1, 1, -1):
        db.chats.update_one({"_id": "c2"}, {"$inc": {"member_count": delta}})
    assert db.chats.find_one({"_id": "c2"})["member_count"] == data["chats"][2]["member_count"] + 1


# -- accounts, limits, outbox -----------------------------------------------------------------------


def test_a_refresh_token_is_used_once(db, data):
    query = {"_id": "t4", "used": {"$exists": False}}
    first = db.refresh_tokens.find_one_and_update(query, {"$set": {"used": 1}, "$currentDate": {"used_at": True}})
    assert first is not None and first["user_id"] == "u04" and "used" not in first
    assert db.refresh_tokens.find_one_and_update(query, {"$set": {"used": 1}}) is None
    # Reuse revokes that user's tokens and nobody else's.
    assert db.refresh_tokens.delete_many({"user_id": {"$eq": "u04"}}).deleted_count == 3
    assert sorted(ids(db.refresh_tokens.find({}))) == sorted(t["_id"] for t in data["refresh_tokens"] if t["user_id"] != "u04")
    assert db.refresh_tokens.delete_one({"_id": "t1", "user_id": {"$eq": "u02"}}).deleted_count == 0
    assert db.refresh_tokens.delete_one({"_id": "t1", "user_id": {"$eq": "u01"}}).deleted_count == 1


def test_rate_limit_window_counts(db):
    # RateLimiter._count: an increment of an existing window, else an update_one upsert that creates it;
    # RateLimiter.purge_once: a range of the expires_ts index.
    update = {"$inc": {"n": 1}, "$set": {"expires_ts": 2_000_000_060}}
    assert db.rate_limits.find_one_and_update({"_id": "w@0"}, update) is None
    assert db.rate_limits.update_one({"_id": "w@0"}, update, upsert=True).upserted_id == "w@0"
    seen = [db.rate_limits.find_one_and_update({"_id": "w@0"}, update, projection={"n": 1},
                                               return_document=ReturnDocument.AFTER)["n"] for _ in range(2)]
    assert seen == [2, 3]
    assert db.rate_limits.update_one({"_id": "w@0"}, update, upsert=True).upserted_id is None
    assert db.rate_limits.find_one({"_id": "w@0"}) == {"_id": "w@0", "n": 4, "expires_ts": 2_000_000_060}
    db.rate_limits.insert_many([{"_id": f"w@{i}", "n": 1, "expires_ts": 2_000_000_000 + i} for i in range(1, 60)])
    assert db.rate_limits.delete_many({"expires_ts": {"$lt": 2_000_000_030}}).deleted_count == 29
    assert sorted(d["expires_ts"] for d in db.rate_limits.find({})) == [2_000_000_000 + i for i in range(30, 61)]


@embedded_bug("findAndModify with upsert ignores $setOnInsert (update_one honours it)")
def test_find_one_and_update_upsert_applies_set_on_insert(db):
    expires = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0) + datetime.timedelta(hours=1)
    doc = db.rate_limits.find_one_and_update({"_id": "x@0"}, {"$inc": {"n": 1}, "$setOnInsert": {"expires_at": expires}},
                                             upsert=True, return_document=ReturnDocument.AFTER)
    assert doc == {"_id": "x@0", "n": 1, "expires_at": expires}


def test_outbox_drain_order_and_settling(db, data):
    got = [(d["created_at"], d["n"]) for d in db.outbox.find({}).sort([("created_at", 1), ("n", 1)]).limit(25)]
    assert got == sorted((e["created_at"], e["n"]) for e in data["outbox"])[:25]
    pending = next(e for e in data["outbox"] if e["state"] == "pending")
    committed = next(e for e in data["outbox"] if e["state"] == "committed")
    assert db.outbox.delete_one({"_id": committed["_id"], "state": {"$eq": "pending"}}).deleted_count == 0
    assert db.outbox.delete_one({"_id": pending["_id"], "state": {"$eq": "pending"}}).deleted_count == 1
    assert db.outbox.delete_many({"_id": {"$in": ["e4", "e5", "e999"]}}).deleted_count == 2
    entry = {**committed, "state": "committed"}
    db.outbox.replace_one({"_id": "e-new"}, {**entry, "_id": "e-new"}, upsert=True)
    assert db.outbox.find_one({"_id": "e-new"})["state"] == "committed"


def test_outbox_checks(db, data):
    # Check.filter(): the document exists / has field == value / field >= value.
    assert db.messages.find_one({"_id": "c1-3", "version": {"$eq": "v3"}}, {"_id": 1}) == {"_id": "c1-3"}
    assert db.messages.find_one({"_id": "c1-3", "version": {"$eq": "v4"}}, {"_id": 1}) is None
    member = data["members"][5]
    assert db.members.find_one({"_id": member["_id"], "last_read_seq": {"$gte": member["last_read_seq"]}})
    assert db.members.find_one({"_id": member["_id"], "last_read_seq": {"$gte": member["last_read_seq"] + 1}}) is None


def test_files_only_within_their_workspace(db):
    from gridfs import GridFSBucket

    bucket = GridFSBucket(db, bucket_name="files")
    for i, workspace in enumerate(("w1", "w2", "w1")):
        bucket.upload_from_stream_with_id(f"f{i}", f"n{i}.txt", b"x" * (100 + i), metadata={"workspace_id": workspace})
    assert db["files.files"].find_one({"_id": "f1", "metadata.workspace_id": {"$eq": "w1"}}) is None
    assert db["files.files"].find_one({"_id": "f2", "metadata.workspace_id": {"$eq": "w1"}})["length"] == 102
    got = ids(db["files.files"].find({"_id": {"$in": ["f0", "f1", "f2"]}, "metadata.workspace_id": {"$eq": "w1"}}))
    assert sorted(got) == ["f0", "f2"]
    assert bucket.open_download_stream("f2").read() == b"x" * 102


# -- mentions, usernames and settings (issue 14) ----------------------------------------------------


def test_mention_seqs_are_arrays_of_ints_added_once_and_pulled(db, data):
    c1 = [m for m in data["members"] if m["chat_id"] == "c1"]
    db.members.update_many({"chat_id": {"$eq": "c1"}}, {"$set": {"mention_seqs": [], "mention_n": 0}})
    targets = [m["_id"] for m in c1[:4]]

    def mention(seq):
        db.members.update_many({"_id": {"$in": targets}, "last_read_seq": {"$lt": seq}, "mention_n": {"$lt": 200}},
                               {"$addToSet": {"mention_seqs": seq}, "$inc": {"mention_n": 1}})

    def seqs():
        return {d["_id"]: sorted(d["mention_seqs"]) for d in db.members.find({"chat_id": {"$eq": "c1"}})}

    for seq in (12, 12, 25, 18):  # 12 twice: a retried send adds it once
        mention(seq)
    behind = {m["_id"]: m["last_read_seq"] for m in c1}
    assert seqs() == {mid: sorted({s for s in (12, 25, 18) if mid in targets and behind[mid] < s}) for mid in behind}
    # An edit removes one mention; members not named keep theirs.
    db.members.update_many({"_id": {"$in": targets[:2]}}, {"$pull": {"mention_seqs": 18}})
    want = {mid: sorted({s for s in (12, 25, 18) if mid in targets and behind[mid] < s
                         and not (s == 18 and mid in targets[:2])}) for mid in behind}
    assert seqs() == want
    # A read mark's move: $set beside two $pulls by range, on one member only.
    reader = targets[0]
    assert db.members.update_one(
        {"_id": reader, "last_read_seq": {"$lt": 20}},
        {"$set": {"last_read_seq": 20, "read_ord": 20, "own_n": 0, "mention_n": 0},
         "$pull": {"own_seqs": {"$lte": 20}, "mention_seqs": {"$lte": 20}}}).modified_count == 1
    want[reader] = [s for s in want[reader] if s > 20]
    assert seqs() == want
    # Members of other chats never got the field at all.
    assert all("mention_seqs" not in d for d in db.members.find({"chat_id": {"$eq": "c2"}}))


def test_channel_mentions_kept_on_the_chat_as_two_bounded_arrays(db):
    db.chats.update_one({"_id": "c2"}, {"$set": {"mention_all_seqs": [], "mention_all_ids": []}})
    after = None
    for seq in (4, 9, 9, 13, 21):
        after = db.chats.find_one_and_update(
            {"_id": "c2"}, {"$addToSet": {"mention_all_seqs": seq, "mention_all_ids": f"c2-{seq:03d}"}},
            projection={"mention_all_seqs": 1, "mention_all_ids": 1, "_id": 0}, return_document=ReturnDocument.AFTER)
    assert after == {"mention_all_seqs": [4, 9, 13, 21], "mention_all_ids": ["c2-004", "c2-009", "c2-013", "c2-021"]}
    # The oldest go in one update: a range of ints, a list of ids.
    db.chats.update_one({"_id": "c2"}, {"$pull": {"mention_all_seqs": {"$lte": 9},
                                                  "mention_all_ids": {"$in": ["c2-004", "c2-009"]}}})
    # A delete pulls one of each.
    db.chats.update_one({"_id": "c2"}, {"$pull": {"mention_all_seqs": 21, "mention_all_ids": "c2-021"}})
    doc = db.chats.find_one({"_id": "c2"})
    assert (doc["mention_all_seqs"], doc["mention_all_ids"]) == ([13], ["c2-013"])
    assert "mention_all_seqs" not in db.chats.find_one({"_id": "c3"})


def test_usernames_are_unique_per_workspace_and_read_by_point_or_stem(db, data):
    names = {"u01": "ada", "u02": "ada2", "u03": "adam", "u04": "bob", "u21": "ada"}  # u21 is of w2
    for user_id, name in names.items():
        assert db.users.update_one({"_id": user_id, "username": {"$exists": False}},
                                   {"$set": {"username": name}}).modified_count == 1
    with pytest.raises(DuplicateKeyError):
        db.users.update_one({"_id": "u05"}, {"$set": {"username": "ada"}})
    with pytest.raises(DuplicateKeyError):
        db.users.insert_one({"_id": "new", "workspace_id": "w1", "username": "bob", "email": "new@example.com"})
    assert "username" not in db.users.find_one({"_id": "u05"})
    # Users without one (most of w1) never clash with each other.
    db.users.insert_one({"_id": "new2", "workspace_id": "w1", "email": "new2@example.com"})
    found = db.users.find_one({"workspace_id": {"$eq": "w1"}, "username": {"$eq": "ada"}}, {"_id": 1})
    assert found == {"_id": "u01"}
    assert db.users.find_one({"workspace_id": {"$eq": "w2"}, "username": {"$eq": "bob"}}) is None
    stem = {d["username"] for d in db.users.find(
        {"workspace_id": {"$eq": "w1"}, "username": {"$gte": "ada", "$lt": "ada\x7f"}}, {"username": 1, "_id": 0})}
    assert stem == {"ada", "ada2", "adam"}


def test_mention_documents_paged_newest_first_and_deleted_by_chat_member_or_id(db):
    docs = [{"_id": f"{u}:c{m % 4}-{m:03d}", "user_id": u, "chat_id": f"c{m % 4}", "message_id": f"c{m % 4}-{m:03d}",
             "created_at": T0} for u in ("u01", "u02", "u03") for m in range(0, 40, 1 + "u01 u02 u03".split().index(u))]
    db.mentions.insert_many(docs)

    def page(user, before=None, limit=7):
        query = {"user_id": {"$eq": user}}
        if before is not None:
            query["message_id"] = {"$lt": before}
        return [d["message_id"] for d in db.mentions.find(query, {"message_id": 1, "_id": 0})
                .sort("message_id", -1).limit(limit)]

    for user in ("u01", "u02", "nobody"):
        mine = sorted((d["message_id"] for d in docs if d["user_id"] == user), reverse=True)
        assert page(user) == mine[:7]
        assert page(user, before="c2-010") == [m for m in mine if m < "c2-010"][:7]
    db.mentions.delete_many({"chat_id": {"$eq": "c1"}, "user_id": {"$eq": "u02"}})
    db.mentions.delete_many({"chat_id": {"$eq": "c3"}})
    db.mentions.delete_many({"_id": {"$in": ["u01:c0-000", "u03:c0-000", "nobody:c0-000"]}})
    left = sorted(d["_id"] for d in db.mentions.find({}))
    assert left == sorted(d["_id"] for d in docs if d["chat_id"] != "c3" and not (
        d["chat_id"] == "c1" and d["user_id"] == "u02") and d["_id"] not in ("u01:c0-000", "u03:c0-000"))


def test_settings_change_by_compare_and_set_of_their_version(db):
    member = {"_id": "m5-u05"}
    assert db.members.find_one(member) is not None
    first = db.members.update_one({**member, "settings_version": {"$exists": False}},
                                  {"$set": {"notify": "mentions", "muted": True, "settings_version": "e1"}})
    assert first.matched_count == 1
    stale = db.members.update_one({**member, "settings_version": {"$exists": False}},
                                  {"$set": {"notify": "none", "muted": False, "settings_version": "e2"}})
    assert stale.matched_count == 0
    doc = db.members.find_one(member)
    # The embedded server keeps a $set bool as 1: the service reads it through bool().
    assert (doc["notify"], bool(doc["muted"]), doc["settings_version"]) == ("mentions", True, "e1")
    third = db.members.update_one({**member, "settings_version": {"$eq": "e1"}},
                                  {"$set": {"notify": "all", "muted": False, "settings_version": "e3"}})
    assert third.matched_count == 1
    doc = db.members.find_one(member)
    assert (doc["notify"], bool(doc["muted"])) == ("all", False)


# -- the shape that was wrong -----------------------------------------------------------------------


@embedded_bug("an aggregate $match applies the keys beside $or only to the last $or branch (`A OR B AND x`)")
def test_aggregate_match_of_or_with_other_conditions(db, data):
    # The unread aggregate GET /api/chats ran before issue 12: others' non-deleted messages above each read
    # mark, for several chats at once. nx-27017 joins the $or without parentheses, so `sender_id` and
    # `deleted` constrained only the last chat: own and deleted messages were counted in the others.
    me, marks = "u01", {"c1": 3, "c4": 10}
    pipeline = [
        {"$match": {"$or": [{"chat_id": chat, "seq": {"$gt": mark}} for chat, mark in marks.items()],
                    "sender_id": {"$ne": me}, "deleted": {"$ne": True}}},
        {"$group": {"_id": "$chat_id", "n": {"$sum": 1}}},
    ]
    got = {d["_id"]: d["n"] for d in db.messages.aggregate(pipeline)}
    want = {chat: sum(m["chat_id"] == chat and m["seq"] > mark and m["sender_id"] != me and not m["deleted"]
                      for m in data["messages"]) for chat, mark in marks.items()}
    assert got == want
