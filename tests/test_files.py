"""Files: GridFS upload with a size limit, bytes only for the uploader's workspace, attached to messages."""

import os
import re
import uuid
from urllib.parse import unquote

import pytest

from app.services.files import CHUNK_SIZE
from app.store import new_id
from tests.support.chats import count, create_chat, make_team

pytestmark = pytest.mark.gen_test(timeout=60)

MAX_BYTES = 2048


@pytest.fixture
def config_overrides():
    return {"limits": {"enabled": False}, "files": {"max_bytes": MAX_BYTES}}


def multipart(parts):
    """parts: [(field, filename, content_type, bytes)] -> (body, content type header)."""
    boundary = uuid.uuid4().hex
    body = b""
    for field, filename, ctype, data in parts:
        body += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\n"
                 f"Content-Type: {ctype}\r\n\r\n").encode() + data + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


async def upload(api, user, data, filename="notes.txt", ctype="text/plain", field="file"):
    body, header = multipart([(field, filename, ctype, data)])
    return await api.call("POST", "/api/files", raw=body, token=user["token"] if user else None,
                          headers={"Content-Type": header})


async def test_upload_and_read_within_the_workspace_only(api):
    t = await make_team(api)
    data = bytes(range(256)) * 4
    up = await upload(api, t.owner, data, filename="../../etc/report.bin", ctype="application/octet-stream")
    assert up.status == 201, up.body
    assert up.body["name"] == "report.bin" and up.body["size"] == len(data)
    assert up.body["content_type"] == "application/octet-stream" and up.body["url"].startswith(f"/api/files/{up.body['id']}?exp=")

    for user in (t.owner, t.outsider):  # anyone in the workspace, member of a chat or not
        got = await api.get(up.body["url"], token=user["token"])
        assert got.status == 200 and got.body == data
        assert got.headers["Content-Type"] == "application/octet-stream"
        assert got.headers["Content-Disposition"].startswith("attachment")
    hidden = await api.get(f"/api/files/{up.body['id']}", token=t.stranger["token"])  # unsigned: the token decides
    missing = await api.get("/api/files/000000000000000000000000", token=t.stranger["token"])
    def without_request_id(body):
        return {k: v for k, v in body["error"].items() if k != "request_id"}
    assert hidden.status == missing.status == 404 and without_request_id(hidden.body) == without_request_id(missing.body)
    assert (await api.get(f"/api/files/{up.body['id']}")).status == 401  # unsigned: test_file_links signs
    assert (await api.get("/api/files/%7B%24gt%7D", token=t.owner["token"])).status == 404

    page = await upload(api, t.owner, b"<script>alert(1)</script>", filename="x.html", ctype="text/html")
    served = await api.get(page.body["url"], token=t.owner["token"])
    assert served.headers["Content-Disposition"].startswith("attachment")  # never rendered on our origin
    assert "sandbox" in served.headers["Content-Security-Policy"]


async def test_upload_limits_and_bad_uploads(api, deps):
    t = await make_team(api)
    exactly = await upload(api, t.owner, b"x" * MAX_BYTES)
    assert exactly.status == 201
    too_big = await upload(api, t.owner, b"x" * (MAX_BYTES + 1))
    assert too_big.status == 413 and too_big.error_code == "payload_too_large"
    way_too_big = await upload(api, t.owner, b"x" * (MAX_BYTES * 20))
    assert way_too_big.status == 413
    wrong_field = await upload(api, t.owner, b"abc", field="attachment")
    assert wrong_field.status == 422 and "file" in wrong_field.body["error"]["fields"]
    json_body = await api.post("/api/files", {"file": "abc"}, token=t.owner["token"])
    assert json_body.status == 422
    assert (await upload(api, None, b"abc")).status == 401
    assert await count(deps.store.files, {}) == 1


async def test_messages_carry_files_of_the_workspace(api):
    t = await make_team(api)
    chat = await create_chat(api, t.owner, "direct", [t.member])
    mine = (await upload(api, t.owner, b"ours")).body
    theirs = (await upload(api, t.stranger, b"theirs")).body
    path = f"/api/chats/{chat['id']}/messages"
    sent = await api.post(path, {"content": "see attached", "files": [mine["id"]]}, token=t.owner["token"])
    assert sent.status == 201 and [f["id"] for f in sent.body["files"]] == [mine["id"]]
    foreign = await api.post(path, {"content": "leak", "files": [theirs["id"]]}, token=t.owner["token"])
    assert foreign.status == 422 and "files" in foreign.body["error"]["fields"]
    listed = (await api.get(path, token=t.member["token"])).body["messages"]
    assert [[f["id"] for f in m["files"]] for m in listed] == [[mine["id"]]]
    assert (await api.get(mine["url"], token=t.member["token"])).body == b"ours"


@pytest.mark.parametrize("config_overrides", [{"limits": {"enabled": False}, "files": {"max_bytes": 4 * CHUNK_SIZE}}])
async def test_an_upload_round_trips_bytes_in_the_gridfs_layout(api, deps):
    t = await make_team(api)
    store = deps.store
    payloads = {  # one byte, exactly one chunk, and several chunks with a short last one
        "one.bin": b"\x00",
        "chunk.bin": os.urandom(CHUNK_SIZE),
        "three.bin": os.urandom(3 * CHUNK_SIZE + 999),
    }
    uploaded = {}
    for name, data in payloads.items():
        up = await upload(api, t.owner, data, filename=name, ctype="application/octet-stream")
        assert up.status == 201 and up.body["size"] == len(data), up.body
        uploaded[name] = up.body
    theirs = (await upload(api, t.stranger, b"another workspace's file")).body
    for name, data in payloads.items():
        got = await api.get(uploaded[name]["url"], token=t.member["token"])
        assert got.status == 200 and got.body == data, name
        # What GridFS readers expect: the spec's files document and chunks (files_id, n) of chunkSize bytes.
        doc = await store.files.find_one({"_id": uploaded[name]["id"]})
        assert doc["length"] == len(data) and doc["chunkSize"] == CHUNK_SIZE and doc["filename"] == name
        assert doc["uploadDate"] is not None
        assert doc["metadata"] == {"workspace_id": t.owner["workspace"]["id"], "uploader_id": t.owner["id"],
                                   "name": name, "content_type": "application/octet-stream", "size": len(data)}
        stream = await store.file_bucket.open_download_stream(uploaded[name]["id"])
        assert await stream.read() == data
        chunks = await store.file_chunks.find({"files_id": uploaded[name]["id"]}).sort("n", 1).to_list()
        assert [c["n"] for c in chunks] == list(range(-(-len(data) // CHUNK_SIZE)))
        assert b"".join(c["data"] for c in chunks) == data
    assert (await api.get(theirs["url"], token=t.stranger["token"])).body == b"another workspace's file"
    assert (await api.get(f"/api/files/{theirs['id']}", token=t.owner["token"])).status == 404  # unsigned


async def test_a_file_stored_by_pymongos_gridfs_uploader_still_downloads(api, deps):
    """Files written before the service wrote GridFS itself: pymongo's uploader, same metadata."""
    t = await make_team(api)
    data = bytes(range(256)) * 7
    file_id = new_id()
    metadata = {"workspace_id": t.owner["workspace"]["id"], "uploader_id": t.owner["id"], "name": "old.txt",
                "content_type": "text/plain", "size": len(data)}
    await deps.store.file_bucket.upload_from_stream_with_id(file_id, "old.txt", data, metadata=metadata,
                                                            chunk_size_bytes=500)
    new = (await upload(api, t.owner, b"written by the service")).body
    got = await api.get(f"/api/files/{file_id}", token=t.member["token"])
    assert got.status == 200 and got.body == data and got.headers["Content-Type"].startswith("text/plain")
    assert (await api.get(f"/api/files/{file_id}", token=t.stranger["token"])).status == 404
    assert (await api.get(new["url"], token=t.member["token"])).body == b"written by the service"
    chat = await create_chat(api, t.owner, "direct", [t.member])
    sent = await api.post(f"/api/chats/{chat['id']}/messages", {"content": "both", "files": [file_id, new["id"]]},
                          token=t.owner["token"])
    assert sent.status == 201 and [f["id"] for f in sent.body["files"]] == [file_id, new["id"]]


async def test_first_uploads_at_once_share_one_quota_total(deps):
    """Uploads racing an account's first one all count on the total it starts; none is refused below the quota."""
    import asyncio

    from app.auth import Identity
    from app.services.files import UPLOAD_BYTES_FIELD, FileService

    await deps.store.users.insert_many([{"_id": f"u{i}", "workspace_id": "w"} for i in range(3)])
    files = FileService(deps.store, MAX_BYTES)
    # Five pooled connections first, so the five first commands really reach the store together.
    await asyncio.gather(*(deps.store.users.find_one({"_id": "warm"}) for _ in range(5)))
    for i, quota in enumerate((3000, 2400, 1000)):
        user = Identity(user_id=f"u{i}", workspace_id="w", expires_at=0)
        results = await asyncio.gather(*(files._reserve(user, 600, quota) for _ in range(5)), return_exceptions=True)
        taken = [r for r in results if r == 600]
        assert len(taken) == quota // 600, (quota, results)
        assert all(getattr(r, "code", None) == "upload_quota_exceeded" for r in results if r != 600)
        total = (await deps.store.users.find_one({"_id": f"u{i}"}))[UPLOAD_BYTES_FIELD]
        assert total == 600 * len(taken)


# RFC 6266 with RFC 5987's ext-value: one quoted ASCII fallback and the UTF-8 name in attr-chars only.
DISPOSITION = re.compile(r"(inline|attachment); filename=\"([ !#-\[\]-~]*)\"; filename\*=UTF-8''([A-Za-z0-9!#$&+^`|~._-]|%[0-9A-F]{2})*")


def disposition_names(header: str) -> tuple[str, str]:
    """(filename, the decoded filename*) of a Content-Disposition header, which must be one well-formed line."""
    match = DISPOSITION.fullmatch(header)
    assert match, header
    fallback = match.group(2)
    assert fallback == fallback.strip() and "%" not in fallback and fallback, header
    return fallback, unquote(header.split("''", 1)[1], errors="strict")


async def upload_part(api, user, disposition: bytes, data=b"x"):
    """An upload whose part's Content-Disposition is exactly these bytes (an RFC 2231 filename*, say)."""
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: ".encode() + disposition
            + b"\r\nContent-Type: text/plain\r\n\r\n" + data + f"\r\n--{boundary}--\r\n".encode())
    return await api.call("POST", "/api/files", raw=body, token=user["token"],
                          headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})


async def test_upload_names_that_show_nothing_are_stored_as_file(api, deps):
    """The check every other name passes (app.schemas.common.VISIBLE): a file name made only of invisible
    characters, controls, separators or dots is stored as `file` (sanitized, as an empty name was)."""
    t = await make_team(api)
    quoted = ["\u200b\u200b", "\u3164", "\u2800", "\ufeff", "\u202e\u2066", "\U000e0041\U000e0042",
              "\u115f\u1160\u180e", "   ", "..", "\u2800.\u200b", "dir/\u200b", "\u034f\ufe0f"]
    # Controls cannot be in a quoted multipart name (Tornado refuses the part), but can be percent-encoded.
    encoded = ["%01%02", "%0D%0A", "%7F%C2%85", "%E2%80%A8%E2%80%A9", "%00"]
    replies = [await upload(api, t.owner, b"x", filename=name) for name in quoted]
    replies += [await upload_part(api, t.owner, f"form-data; name=\"file\"; filename*=UTF-8''{name}".encode())
                for name in encoded]
    for name, reply in zip(quoted + encoded, replies):
        assert reply.status == 201, (name, reply.body)
        assert reply.body["name"] == "file", (name, reply.body)
        got = await api.get(reply.body["url"], token=t.member["token"])
        assert disposition_names(got.headers["Content-Disposition"]) == ("file", "file"), name
    # Visible names keep their visible part: invisible characters and controls inside go, separators are spaces.
    kept = {"\u200breport\u200b.pdf": "report.pdf", "\u202etxt.exe": "txt.exe", "a\u2028b.txt": "a b.txt",
            "\u3164x": "\u3164x", ".env": ".env", "r\u00e9sum\u00e9.txt": "r\u00e9sum\u00e9.txt"}
    for sent, stored in kept.items():
        reply = await upload(api, t.owner, b"x", filename=sent)
        assert reply.status == 201 and reply.body["name"] == stored, (sent, reply.body)
    assert await count(deps.store.files, {"metadata.name": "file"}) == len(quoted) + len(encoded)


async def test_content_disposition_holds_any_stored_name_in_one_header(api, deps):
    """Names with quotes, backslashes, CR/LF, `%`, `;` and non-ASCII (stored before uploads were cleaned,
    or sent encoded): one header line, an ASCII fallback without quotes, and the exact name in filename*."""
    t = await make_team(api)
    names = ['a"b\\c.txt', "evil\r\nSet-Cookie: x=1.txt", "\u4e2d\u6587 r\u00e9sum\u00e9.pdf", "100%25 it's;a=b.txt",
             "\U0001f600.png", 'x"; filename="y.exe', "tab\there", ""]
    for name in names:
        file_id = new_id()
        metadata = {"workspace_id": t.owner["workspace"]["id"], "uploader_id": t.owner["id"], "name": name,
                    "content_type": "text/plain", "size": 2}
        await deps.store.file_bucket.upload_from_stream_with_id(file_id, name or "x", b"ok", metadata=metadata)
        got = await api.get(f"/api/files/{file_id}", token=t.member["token"])
        assert got.status == 200 and got.body == b"ok", (name, got.status)
        assert got.headers.get_list("Content-Disposition") and len(got.headers.get_list("Content-Disposition")) == 1
        assert "Set-Cookie" not in got.headers, name
        fallback, exact = disposition_names(got.headers["Content-Disposition"])
        assert exact == (name or "file"), (name, got.headers["Content-Disposition"])
        assert fallback.strip() and all(" " <= ch <= "~" for ch in fallback), fallback
    # Uploaded today, a quote and non-ASCII survive the round trip to filename*.
    up = await upload(api, t.owner, b"x", filename='say \\"hi\\" \u4e2d.txt')
    assert up.status == 201 and up.body["name"] == 'say "hi" \u4e2d.txt', up.body
    got = await api.get(up.body["url"], token=t.owner["token"])
    assert disposition_names(got.headers["Content-Disposition"]) == ('say _hi_ _.txt', 'say "hi" \u4e2d.txt')


@pytest.mark.parametrize("config_overrides", [{"limits": {"enabled": False}, "files": {"max_bytes": 11 * CHUNK_SIZE}}])
async def test_a_download_reads_its_chunks_a_batch_at_a_time(api, deps, config):
    """Eleven chunks are three range reads of DOWNLOAD_BATCH_BYTES (four chunks), whatever else is stored
    (another file of as many chunks here), yielded in order chunk by chunk; a missing chunk is an error, never
    a short or shifted file."""
    import contextlib

    from gridfs.errors import CorruptGridFile

    from app.auth import Identity
    from app.services.files import DOWNLOAD_BATCH_BYTES, FileService
    from app.store import Store, make_client
    from tests.support.world import StoreCommands

    assert DOWNLOAD_BATCH_BYTES == 4 * CHUNK_SIZE
    t = await make_team(api)
    data, other = os.urandom(10 * CHUNK_SIZE + 123), os.urandom(10 * CHUNK_SIZE + 7)
    up = (await upload(api, t.owner, data, filename="big.bin", ctype="application/octet-stream")).body
    assert (await upload(api, t.owner, other, filename="other.bin", ctype="application/octet-stream")).status == 201
    got = await api.get(up["url"], token=t.member["token"])
    assert got.status == 200 and got.body == data and got.headers["Content-Length"] == str(len(data))

    commands = StoreCommands()
    client = make_client(config.mongo.uri, config.mongo.timeout_ms, event_listeners=[commands])
    try:
        files = FileService(Store(client, config.mongo.database), config.files.max_bytes)
        reader = Identity(user_id=t.member["id"], workspace_id=t.member["workspace"]["id"], expires_at=0)

        async def chunks_of(file_id):
            _, length, chunks = await files.open(reader, file_id)
            async with contextlib.aclosing(chunks):
                return length, [chunk async for chunk in chunks]

        length, chunks = await chunks_of(up["id"])
        assert length == len(data) and b"".join(chunks) == data
        assert [len(chunk) for chunk in chunks] == [CHUNK_SIZE] * 10 + [123]
        assert commands.issued() == [("find", "files.files")] + [("find", "files.chunks")] * 3
        # One chunk short (nx-27017 deletes every chunk of a file, whatever `n` a delete names: written so).
        holed = new_id()
        await deps.store.file_chunks.insert_many([{"files_id": holed, "n": n, "data": data[n * CHUNK_SIZE:][:CHUNK_SIZE]}
                                                  for n in range(11) if n != 9])
        await deps.store.files.insert_one({"_id": holed, "length": len(data), "chunkSize": CHUNK_SIZE,
                                           "metadata": {"workspace_id": t.owner["workspace"]["id"], "name": "holed",
                                                        "uploader_id": t.owner["id"], "content_type": "text/plain",
                                                        "size": len(data)}})
        with pytest.raises(CorruptGridFile, match="chunks 8..10 are not all stored"):
            await chunks_of(holed)
    finally:
        await client.close()
