"""Files in messages (contract 13): file objects in payloads, signed URLs without a token, thumbnails at upload."""

import io
import struct
import zlib
from urllib.parse import parse_qs, urlsplit

import pytest
from PIL import Image

from tests.support.chats import create_chat, make_team
from tests.test_files import upload

pytestmark = pytest.mark.gen_test(timeout=60)


@pytest.fixture
def config_overrides():
    return {"limits": {"enabled": False}, "files": {"max_bytes": 2 * 1024 * 1024}}


def png(width, height, color=(200, 30, 30)):
    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, format="PNG")
    return out.getvalue()


def bomb_png(side=20000):
    """A PNG header declaring side×side pixels (400 MP) with a few bytes of data: refused before decoding."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def with_query(url, **changes):
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()} | changes
    return parts.path + "?" + "&".join(f"{k}={v}" for k, v in query.items())


async def test_a_signed_url_works_without_a_token_only_for_its_file_until_it_expires(api, app):
    t = await make_team(api)
    one = (await upload(api, t.owner, b"first file", filename="a.bin", ctype="application/octet-stream")).body
    two = (await upload(api, t.owner, b"second file", filename="b.bin", ctype="application/octet-stream")).body
    assert one["thumbnail_url"] is None and "sig=" in one["url"] and "exp=" in one["url"]
    got = await api.get(one["url"])
    assert got.status == 200 and got.body == b"first file"
    assert got.headers["Content-Disposition"].startswith("attachment")
    assert got.headers["X-Content-Type-Options"] == "nosniff"

    sig = parse_qs(urlsplit(one["url"]).query)["sig"][0]
    exp = int(parse_qs(urlsplit(one["url"]).query)["exp"][0])
    other_file = with_query(one["url"]).replace(one["id"], two["id"])
    changed_exp = with_query(one["url"], exp=exp + 1)
    tampered = with_query(one["url"], sig=("A" if sig[0] != "A" else "B") + sig[1:])
    links = app.settings["services"].files.links
    expired = links.url(one["id"], "file", exp=int(links.clock()) - 1)
    as_thumb = with_query(one["url"]).replace(one["id"], one["id"] + "/thumbnail")
    for url in (other_file, changed_exp, tampered, expired, as_thumb):
        assert (await api.get(url)).status == 401, url
    # Without a valid signature the token still works, and only within the workspace.
    assert (await api.get(tampered, token=t.member["token"])).body == b"first file"
    assert (await api.get(tampered, token=t.stranger["token"])).status == 404
    # Bucketed expiry: the same file listed twice gets the same (cacheable) URL.
    assert links.url(one["id"]) == links.url(one["id"]) and exp - links.clock() > links.ttl / 2


@pytest.mark.parametrize("claimed", ["image/png", "image/gif"])
async def test_a_thumbnail_is_at_most_400px_wide_and_png_or_jpeg(api, claimed):
    t = await make_team(api)
    up = await upload(api, t.owner, png(1200, 300), filename="wide.gif", ctype=claimed)
    assert up.status == 201, up.body
    thumb = await api.get(up.body["thumbnail_url"])
    assert thumb.status == 200 and thumb.headers["Content-Type"] in ("image/png", "image/jpeg")
    image = Image.open(io.BytesIO(thumb.body))
    assert image.format in ("PNG", "JPEG") and image.size == (400, 100)
    assert thumb.headers["Content-Disposition"].startswith("inline")
    full = await api.get(up.body["url"])
    assert full.status == 200 and full.headers["Content-Disposition"].startswith("inline")
    assert (await api.get(f"/api/files/{up.body['id']}/thumbnail", token=t.member["token"])).status == 200
    assert (await api.get(f"/api/files/{up.body['id']}/thumbnail")).status == 401
    # A photo stays a JPEG, a small picture is not enlarged; a file that is no image has no thumbnail.
    out = io.BytesIO()
    Image.new("RGB", (120, 80), (1, 2, 3)).save(out, format="JPEG")
    photo = (await upload(api, t.owner, out.getvalue(), filename="p.jpg", ctype="image/jpeg")).body
    small = Image.open(io.BytesIO((await api.get(photo["thumbnail_url"])).body))
    assert small.format == "JPEG" and small.size == (120, 80)
    fake = (await upload(api, t.owner, b"not a picture", filename="x.png", ctype="image/png")).body
    assert fake["thumbnail_url"] is None
    assert (await api.get(f"/api/files/{fake['id']}/thumbnail", token=t.owner["token"])).status == 404


async def test_a_decompression_bomb_is_stored_without_a_thumbnail(api):
    t = await make_team(api)
    up = await upload(api, t.owner, bomb_png(), filename="bomb.png", ctype="image/png")
    assert up.status == 201 and up.body["thumbnail_url"] is None


async def test_message_payloads_carry_file_objects_in_listings_and_events(api, world):
    t = await make_team(api)
    chat = await create_chat(api, t.owner, "group", [t.member, t.outsider], name="pics")
    other = await create_chat(api, t.owner, "group", [t.member, t.outsider], name="words")
    pic = (await upload(api, t.owner, png(800, 600), filename="cat.png", ctype="image/png")).body
    doc = (await upload(api, t.owner, b"minutes", filename="notes.txt")).body
    path = f"/api/chats/{chat['id']}/messages"
    sent = await api.post(path, {"content": "look", "files": [pic["id"], doc["id"]]}, token=t.owner["token"])
    assert sent.status == 201, sent.body
    await api.post(f"/api/chats/{other['id']}/messages", {"content": "plain"}, token=t.owner["token"])
    files = sent.body["files"]
    assert [(f["id"], f["name"], f["size"], f["content_type"]) for f in files] == [
        (pic["id"], "cat.png", pic["size"], "image/png"), (doc["id"], "notes.txt", 7, "text/plain")]
    assert files[0]["thumbnail_url"] and files[1]["thumbnail_url"] is None
    listed = (await api.get(path, token=t.member["token"])).body["messages"]
    mine = [m for m in listed if m["id"] == sent.body["id"]][0]
    assert mine["files"] == files  # bucketed expiry: the same URLs on every read
    assert (await api.get(mine["files"][0]["thumbnail_url"])).status == 200
    # The event carries the same file objects (fails unless some message.created has exactly these).
    assert await world.published("message.created", chat["id"], id=sent.body["id"], files=files)


async def test_a_page_with_files_costs_what_a_plain_page_costs(world):
    import msgspec

    from app.schemas.messages import MessageCreateIn, MessageListQuery

    ws = await world.workspace()
    ada, bob, cy = [await world.user(ws, name) for name in ("Ada", "Bob", "Cy")]
    with_files, plain = await world.chat(ada, bob, cy), await world.chat(ada, bob, cy)
    pic = await world.services.files.upload(ada.identity, "p.png", "image/png", png(50, 40))
    doc = await world.services.files.upload(bob.identity, "n.txt", "text/plain", b"notes")
    for i in range(20):
        await world.send(plain, ada, f"plain {i}")
        body = msgspec.convert({"content": f"files {i}", "files": [pic.id, doc.id][: 1 + i % 2]}, MessageCreateIn)
        await world.services.messages.send(ada.identity, with_files, body)
    async with world.counting() as (counted, commands):
        costs = {}
        for chat in (with_files, plain):
            commands.issued()
            page = await counted.services.messages.list(ada.identity, chat, MessageListQuery(limit=20))
            costs[chat] = len(commands.issued())
            assert len(page.messages) == 20
            names = {tuple(f.name for f in m.files) for m in page.messages}
            assert names == ({("p.png",), ("p.png", "n.txt")} if chat == with_files else {()})
    assert costs[with_files] == costs[plain]
