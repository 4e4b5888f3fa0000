"""Export and import: the owner's streamed NDJSON, only its workspace, and export -> import -> export equal (HTTP and CLI)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
from tornado.httpclient import HTTPRequest

from app.services.export import Exporter, Importer, ImportFailed
from app.store import Store, make_client
from tests.support.chats import create_chat, make_team
from tests.test_files import upload

pytestmark = [pytest.mark.gen_test(timeout=120), pytest.mark.usefixtures("cheap_passwords")]
ROOT = Path(__file__).resolve().parent.parent


async def send(api, who, chat_id, content, **extra):
    reply = await api.post(f"/api/chats/{chat_id}/messages", {"content": content, **extra}, token=who["token"])
    assert reply.status == 201, reply.body
    return reply.body


async def populated(api):
    """Two chats of one workspace with reactions, edits, a thread, a pin and a file; a stranger's chat beside."""
    t = await make_team(api)
    group = (await create_chat(api, t.owner, "group", [t.member, t.outsider]))["id"]
    channel = (await create_chat(api, t.member, "public_channel", [t.owner], name="exports"))["id"]
    up = await upload(api, t.owner, b"quarterly numbers\n", filename="q3.txt")
    assert up.status == 201, up.body
    sent = []
    for i in range(30):
        who = (t.owner, t.member, t.outsider)[i % 3]
        sent.append(await send(api, who, group, f"group line {i} @{t.member['user']['username']}"
                                if "username" in t.member["user"] else f"group line {i}"))
    with_file = await send(api, t.owner, channel, "the file", files=[up.body["id"]])
    root = await send(api, t.member, channel, "a thread root")
    await send(api, t.owner, channel, "a reply", reply_to=root["id"])
    for i, message in enumerate(sent[:8]):
        for who in (t.owner, t.member)[: 1 + i % 2]:
            r = await api.call("PUT", f"/api/chats/{group}/messages/{message['id']}/reactions/{'+1' if i % 2 else 'tada'}",
                               token=who["token"])
            assert r.status == 204, r.body
    for n in range(2):
        edited = await api.patch(f"/api/chats/{group}/messages/{sent[0]['id']}", {"content": f"edited {n}"},
                                 token=t.owner["token"])
        assert edited.status == 200, edited.body
    assert (await api.call("PUT", f"/api/chats/{channel}/pins/{root['id']}", token=t.member["token"])).status == 204
    stranger_chat = (await create_chat(api, t.stranger, "public_channel", [], name="elsewhere"))["id"]
    await send(api, t.stranger, stranger_chat, "a stranger's secret line")
    return t, {"group": group, "channel": channel, "root": root, "file": up.body, "with_file": with_file,
               "first": sent[0], "stranger_chat": stranger_chat}


async def exported(api, who):
    """The raw answer (Api.call would parse any *json* type as one document)."""
    response = await api.client.fetch(HTTPRequest(
        api.base_url + "/api/workspace/export", headers={"Authorization": f"Bearer {who['token']}"},
        request_timeout=60), raise_error=False)
    body = response.body.decode()
    return SimpleNamespace(status=response.code, headers=response.headers,
                           body=json.loads(body) if response.code != 200 else body)


async def lines_of(store, workspace_id):
    return "".join([part async for part in Exporter(store, batch=7).lines(workspace_id)])


@pytest.fixture
def second_store(io_loop, config):
    """An empty database on the same server, dropped afterwards."""
    name = f"t_import_{uuid.uuid4().hex[:10]}"
    client = make_client(config.mongo.uri, config.mongo.timeout_ms)
    store = Store(client, name)
    io_loop.run_sync(store.ensure_indexes)
    yield store

    async def drop():
        await client.drop_database(name)
        await client.close()

    io_loop.run_sync(drop, timeout=60)


async def test_export_streams_the_owners_workspace_only(api, deps):
    t, w = await populated(api)
    reply = await exported(api, t.owner)
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("application/x-ndjson")
    assert reply.headers["Content-Disposition"].startswith("attachment")
    text = reply.body
    rows = [json.loads(line) for line in text.splitlines()]
    types = [r["type"] for r in rows]
    order = ["workspace", "user", "chat", "membership", "message"]
    assert types == sorted(types, key=order.index) and set(types) == set(order)
    assert rows[0]["id"] == t.owner["workspace"]["id"]
    users = {r["id"] for r in rows if r["type"] == "user"}
    assert users == {t.owner["id"], t.member["id"], t.outsider["id"]}
    assert "password_hash" not in text and "bot_token_hash" not in text and "refresh" not in text
    assert t.stranger["id"] not in text and "a stranger's secret line" not in text
    assert w["stranger_chat"] not in text
    messages = {r["id"]: r for r in rows if r["type"] == "message"}
    assert len([m for m in messages.values() if m["chat_id"] == w["group"]]) >= 30
    first = messages[w["first"]["id"]]
    assert first["content"] == "edited 1" and [h["content"] for h in first["history"]][-1] == "edited 0"
    assert {(r["emoji"], r["user_id"]) for r in first["reactions"]} == {("tada", t.owner["id"])}
    assert messages[w["root"]["id"]]["pin"]["user_id"] == t.member["id"]
    assert messages[w["root"]["id"]]["reply_count"] == 1
    with_file = messages[w["with_file"]["id"]]
    assert with_file["files"] == [w["file"]["id"]]
    assert with_file["file_info"][w["file"]["id"]]["name"] == "q3.txt"
    # The stream equals the service's lines, whatever its batch size.
    assert text == await lines_of(deps.store, t.owner["workspace"]["id"])


async def test_export_refused_to_others_and_without_a_token(api):
    t, _ = await populated(api)
    for who in (t.member, t.outsider):
        reply = await exported(api, who)
        assert reply.status == 403 and reply.body["error"]["code"] == "forbidden"
    assert (await api.get("/api/workspace/export")).status == 401
    documented = (await api.get("/api/openapi.json")).body["paths"]["/api/workspace/export"]["get"]
    assert "application/x-ndjson" in json.dumps(documented)


async def test_round_trip_export_import_export_is_equal(api, deps, second_store, tmp_path):
    t, w = await populated(api)
    workspace_id = t.owner["workspace"]["id"]
    before = await lines_of(deps.store, workspace_id)
    importer = Importer(second_store, batch=11)
    counts = await importer.load(before.splitlines(keepends=True))
    await importer.rebuild()
    assert counts["user"] == 3 and counts["message"] == before.count('"type":"message"')
    after = await lines_of(second_store, workspace_id)
    assert after == before
    # Derived state: the reactions a page shows, the mention docs and the chat's counter came back.
    mark = await second_store.message_marks.find_one({"_id": w["first"]["id"]})
    assert mark["reactions"] == [f"tada {t.owner['id']}"]
    chat = await second_store.chats.find_one({"_id": w["group"]})
    assert chat["last_seq"] == (await deps.store.chats.find_one({"_id": w["group"]}))["last_seq"]
    # A second import into the now filled database is refused and changes nothing.
    with pytest.raises(ImportFailed, match="not empty"):
        await Importer(second_store).load(before.splitlines(keepends=True))
    assert await second_store.messages.count_documents({}) == counts["message"]


async def _cli(config, database, *args):
    env = {**os.environ, "FECHATTER_MONGO_URI": config.mongo.uri, "FECHATTER_MONGO_DATABASE": database,
           "FECHATTER_LOG_LEVEL": "warning"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "main.py"), *args, cwd=str(ROOT), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 90)
    return proc.returncode, err.decode()


async def test_cli_export_import_export(api, deps, config, second_store, tmp_path):
    t, _ = await populated(api)
    workspace_id = t.owner["workspace"]["id"]
    first = tmp_path / "first.ndjson"
    rc, err = await _cli(config, config.mongo.database, "export", "--workspace", workspace_id, "--out", str(first))
    assert rc == 0, err
    assert first.read_text() == await lines_of(deps.store, workspace_id)
    rc, err = await _cli(config, second_store.db.name, "import", "--in", str(first))
    assert rc == 0, err
    assert await lines_of(second_store, workspace_id) == first.read_text()
    rc, err = await _cli(config, second_store.db.name, "import", "--in", str(first))
    assert rc == 1 and "not empty" in err
    rc, err = await _cli(config, config.mongo.database, "export", "--workspace", "nope", "--out", str(first) + ".x")
    assert rc == 1 and "no workspace" in err
