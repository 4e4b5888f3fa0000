"""Bad input of every kind is a JSON 4xx that changes nothing: resume ids, JSON bodies, uploads, queries."""

import json

import pytest

from app import events
from app.store import new_id
from roles.api.files import content_disposition
from tests.support.chats import count, create_chat, make_team
from tests.test_files import upload

pytestmark = pytest.mark.gen_test(timeout=60)

# Digits of other scripts pass str.isdigit() and fail int(); the rest are no id of ours either.
NOT_IDS = ["²", "①", "٣", "１２", "۱", "9" * 25, "-1", "+1", "1 2", "1.0", "0x1f", "1e3", "\u00a0"]


def error_of(reply):
    assert reply.headers["Content-Type"].startswith("application/json"), reply.headers
    return reply.body["error"]


@pytest.mark.parametrize("in_query", [False, True])
async def test_resume_ids_that_are_not_ascii_digits_get_one_resync(world, sse, in_query):
    """An EventSource shows no error body and stops reconnecting on a 4xx, so an id that is none of
    ours is answered as an unknown one (contract section 9): one `resync` with the current cursor."""
    ada, bob, chat = await world.pair()
    await world.send(chat, ada, "before")
    for bad in NOT_IDS:
        client = await sse(bob.token, last_event_id=bad, resume_in_query=in_query, expect=200)
        await client.wait_count(1, events.RESYNC, timeout=15)
        assert client.events[0].data == {"reason": "unknown"}, bad
        client.close()


@pytest.mark.parametrize("raw", ["%FF", "%C2%B2", "%EF%BC%91", "%00", "1%0A2"])
async def test_undecodable_or_control_resume_ids_in_the_query_get_one_resync(world, sse, raw):
    ada, bob, chat = await world.pair()
    client = await sse(bob.token, path=f"/events?last_event_id={raw}", expect=200)
    await client.wait_count(1, events.RESYNC, timeout=15)
    assert client.events[0].data == {"reason": "unknown"}


async def test_a_good_resume_id_still_resumes_after_the_strict_parse(world, sse):
    ada, bob, chat = await world.pair()
    first = await sse(bob.token)
    await world.send(chat, ada, "one")
    await first.wait_count(1, events.MESSAGE_CREATED)
    resume_from = first.last_id
    first.close()
    missed = await world.send(chat, ada, "two")
    for in_query in (False, True):
        # Whitespace around the id is what a proxy may add; it is still the id.
        client = await sse(bob.token, last_event_id=f" {resume_from}", resume_in_query=in_query)
        await client.wait_count(1, events.MESSAGE_CREATED)
        assert [f.data for f in client.of(events.MESSAGE_CREATED)] == [missed] and not client.of(events.RESYNC)
        client.close()


MALFORMED = {
    "nesting bomb": b"[" * 2048,
    "object bomb": b'{"a":' * 2048,
    "not UTF-8": b'{"email": "\xff\xfe", "password": "x"}',
    "overlong UTF-8": b'{"email": "\xc0\xaf", "password": "x"}',
    "encoded surrogate": b'{"email": "\xed\xa0\x80", "password": "x"}',
    "lone surrogate escape": rb'{"email": "\ud800", "password": "x"}',
    "lone low surrogate": rb'{"email": "a\udc00", "password": "x"}',
    "raw NUL": b'{"email": "a\x00b", "password": "x"}',
    "BOM": b'\xef\xbb\xbf{"email": "a@b.co", "password": "x"}',
    "binary": bytes(range(256)),
    "truncated": b'{"email": "a@b.co", "pass',
}


@pytest.mark.parametrize("name", MALFORMED)
async def test_malformed_json_is_400_before_authentication(api, name):
    reply = await api.post("/api/signin", raw=MALFORMED[name])
    assert reply.status == 400, (name, reply.status, reply.body)
    assert error_of(reply)["code"] == "malformed_json"


async def test_well_formed_but_invalid_json_is_422_and_changes_nothing(api, deps):
    t = await make_team(api)
    chat = await create_chat(api, t.owner, "group", [t.member, t.outsider], name="bad input")
    path = f"/api/chats/{chat['id']}/messages"
    token = t.owner["token"]
    before = await count(deps.store.messages, {})
    for body in [
        b'{"content": 1e999}',  # no float holds it
        b"[]", b"1", b'"text"', b"null", b"true",  # not an object
        b'{"content": "x", "files": ' + b"[" * 200 + b"]" * 200 + b"}",  # deep inside a valid body
        b'{"content": "x", "files": [' + b'{"a":' * 300 + b"1" + b"}" * 300 + b"]}",
        b'{"content": "x", "reply_to": "\\u0000"}',
        b'{"content": "x", "idempotency_key": 18446744073709551616}',
    ]:
        reply = await api.post(path, raw=body, token=token)
        assert reply.status == 422, (body[:60], reply.status, reply.body)
        assert error_of(reply)["code"] == "validation_failed"
    # An int no int64 holds is refused by the schema, never an OverflowError from BSON.
    for seq in (2**70, -(2**70), 2**63):
        reply = await api.post(f"/api/chats/{chat['id']}/read", {"seq": seq}, token=token)
        assert reply.status == 422 and "seq" in error_of(reply)["fields"], (seq, reply.body)
    assert await count(deps.store.messages, {}) == before


async def test_nul_and_astral_text_round_trips_and_duplicate_keys_take_the_last(api):
    """NUL (as the \\u0000 escape) and characters beyond the BMP are text like any other: stored and
    served back exactly, by MongoDB and by the embedded server. A repeated key takes its last value,
    as every mainstream JSON parser does (only one parser ever reads the body, so no two disagree)."""
    t = await make_team(api)
    chat = await create_chat(api, t.owner, "group", [t.member, t.outsider], name="nul")
    path = f"/api/chats/{chat['id']}/messages"
    text = "a\u0000b \U0001f600 \u2028 end"  # json.dumps escapes U+1F600 as a surrogate pair
    sent = await api.post(path, raw=json.dumps({"content": text}).encode(), token=t.owner["token"])
    assert sent.status == 201 and sent.body["content"] == text, sent.body
    dup = await api.post(path, raw=b'{"content": "first", "content": "last"}', token=t.owner["token"])
    assert dup.status == 201 and dup.body["content"] == "last"
    listed = (await api.get(path, token=t.member["token"])).body["messages"]
    assert [m["content"] for m in listed] == [text, "last"]


async def test_an_upload_with_a_non_ascii_content_type_is_422_and_stores_nothing(api, deps):
    t = await make_team(api)
    for ctype in ["image/png中", "imagé/png", "image/", "/png", "image png", "text/plain; q=é",
                  "a" * 300 + "/b"]:
        reply = await upload(api, t.owner, b"\x89PNG", filename="a.png", ctype=ctype)
        assert reply.status == 422, (ctype, reply.status, reply.body)
        assert list(error_of(reply)["fields"]) == ["file"] and "type" in error_of(reply)["fields"]["file"]
    # A control character never gets past the multipart parser (a header value may not hold one).
    control = await upload(api, t.owner, b"\x89PNG", filename="a.png", ctype="image/png\x7f")
    assert control.status == 400 and error_of(control)["code"] == "bad_request"
    assert await count(deps.store.files, {}) == 0
    ok = await upload(api, t.owner, b"hello", ctype="Text/Plain; charset=utf-8")
    assert ok.status == 201 and ok.body["content_type"] == "text/plain"


async def test_a_file_stored_with_a_bad_content_type_downloads_as_bytes(api, deps):
    """Files stored before uploads were checked: every download was a 500 (the header cannot carry it)."""
    t = await make_team(api)
    file_id = new_id()
    metadata = {"workspace_id": t.owner["workspace"]["id"], "uploader_id": t.owner["id"], "name": "x.png",
                "content_type": "image/png中", "size": 4}
    await deps.store.file_bucket.upload_from_stream_with_id(file_id, "x.png", b"\x89PNG", metadata=metadata)
    got = await api.get(f"/api/files/{file_id}", token=t.member["token"])
    assert got.status == 200 and got.body == b"\x89PNG"
    assert got.headers["Content-Type"] == "application/octet-stream"
    assert got.headers["Content-Disposition"].startswith("attachment;")


async def test_non_ascii_filenames_are_kept_and_served_with_rfc_6266_encoding(api):
    t = await make_team(api)
    name = "résumé 中文 ½.txt"
    up = await upload(api, t.owner, b"cv", filename=name, ctype="text/plain")
    assert up.status == 201 and up.body["name"] == name
    got = await api.get(up.body["url"], token=t.owner["token"])
    assert got.headers["Content-Disposition"] == (
        "inline; filename=\"r_sum_ __ _.txt\"; filename*=UTF-8''r%C3%A9sum%C3%A9%20%E4%B8%AD%E6%96%87%20%C2%BD.txt"
    )
    long = await upload(api, t.owner, b"x", filename="ü" * 400 + ".txt", ctype="text/plain")
    assert long.status == 201 and len(long.body["name"]) == 255
    # Quotes and backslashes cannot break out of the quoted fallback.
    assert content_disposition("attachment", 'a"b\\c') == (
        "attachment; filename=\"a_b_c\"; filename*=UTF-8''a%22b%5Cc"
    )


BAD_INTS = ["1e3", "1e2", "50.0", "-1", "０", "٥", "²", "%2B5", "0x10", "", "9" * 5000, "1_0", "nan"]


async def test_query_ints_are_ascii_digits_and_bad_queries_are_422(api):
    t = await make_team(api)
    chat = await create_chat(api, t.owner, "group", [t.member, t.outsider], name="queries")
    token = t.owner["token"]
    paths = {
        "/api/users": "limit", "/api/channels/public": "limit", f"/api/chats/{chat['id']}/members": "limit",
        f"/api/chats/{chat['id']}/messages": "limit", "/api/search/messages?q=x": "limit",
    }
    for path, name in paths.items():
        join = "&" if "?" in path else "?"
        for value in BAD_INTS:
            reply = await api.get(f"{path}{join}{name}={value}", token=token)
            assert reply.status == 422, (path, value, reply.status, reply.body)
            assert name in error_of(reply)["fields"], (path, value)
        repeated = await api.get(f"{path}{join}{name}=5&{name}=6", token=token)
        assert repeated.status == 422 and name in error_of(repeated)["fields"]
        assert "more than once" in error_of(repeated)["fields"][name]
        for raw in ["%FF", "%C0%AF", "%ED%A0%80"]:  # not UTF-8, overlong, an encoded surrogate
            reply = await api.get(f"{path}{join}{name}={raw}", token=token)
            assert reply.status == 422, (path, raw, reply.body)
        assert (await api.get(f"{path}{join}{name}=5", token=token)).status == 200
    for name in ("before", "after"):
        path = f"/api/chats/{chat['id']}/messages?{name}="
        for value in ["1e3", "-5", "١", str(2**70)]:
            reply = await api.get(path + value, token=token)
            assert reply.status == 422 and name in error_of(reply)["fields"], (name, value, reply.body)
    for cursor in ["%FF", "x" * 20000, "ag", "j" + "W" * 40, "!!!!"]:
        reply = await api.get(f"/api/users?cursor={cursor}", token=token)
        assert reply.status == 422, (cursor[:20], reply.body)
