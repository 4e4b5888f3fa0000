"""People (contract section 10): user payloads, profiles, avatars, password changes, the paged directory, user.updated."""

from __future__ import annotations

import io
import struct
import time
import uuid
import zlib
from urllib.parse import quote

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from app import events, images
from app.schemas.accounts import UsersQuery
from app.services import delivery
from roles.notify.window import ReplayWindow, WindowEntry
from tests.support.api import wait_for

pytestmark = [pytest.mark.gen_test(timeout=60), pytest.mark.usefixtures("cheap_passwords")]

USER_KEYS = {"id", "username", "fullname", "email", "avatar_url", "status_text", "status_emoji", "timezone",
             "is_bot", "deactivated"}


async def _team(api, *names: str):
    owner = await api.signup(fullname=names[0])
    code = owner["workspace"]["invite_code"]
    return [owner] + [await api.signup(invite_code=code, fullname=name) for name in names[1:]]


async def _chat(api, owner, *others, type_="direct", name=None) -> str:
    body = {"type": type_, "members": [o["id"] for o in others]}
    if name:
        body["name"] = name
    reply = await api.post("/api/chats", body, token=owner["token"])
    assert reply.status in (200, 201), reply.body
    return reply.body["id"]


def _multipart(data: bytes, filename: str = "me.png", ctype: str = "image/png") -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n"
            f"Content-Type: {ctype}\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


async def _put_avatar(api, user, data: bytes, **kw):
    body, header = _multipart(data, **kw)
    return await api.call("PUT", "/api/users/me/avatar", raw=body, token=user["token"], headers={"Content-Type": header})


def _picture(fmt: str, size=(300, 200), color=(200, 30, 60), **save) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format=fmt, **save)
    return out.getvalue()


def _png_declaring(width: int, height: int) -> bytes:
    """A few hundred bytes of PNG whose header claims width × height pixels: a decompression bomb."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024, 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _image(reply) -> Image.Image:
    assert reply.status == 200 and reply.headers["Content-Type"] == "image/png", (reply.status, reply.body[:200])
    picture = Image.open(io.BytesIO(reply.body))
    assert picture.format == "PNG"
    return picture


async def test_a_user_is_seen_within_the_workspace_only(api):
    ada, bob = await _team(api, "Ada Lovelace", "Bob Babbage")
    (eve,) = await _team(api, "Eve Outsider")
    got = await api.get(f"/api/users/{bob['id']}", token=ada["token"])
    assert got.status == 200 and set(got.body) == USER_KEYS, got.body
    assert got.body["fullname"] == "Bob Babbage" and got.body["is_bot"] is False and got.body["deactivated"] is False
    assert got.body["avatar_url"].startswith(f"/api/users/{bob['id']}/avatar?")
    me = await api.get("/api/users/me", token=bob["token"])
    assert USER_KEYS <= set(me.body) and me.body["avatar_url"] == got.body["avatar_url"]
    listed = await api.get("/api/users", token=ada["token"])
    assert all(set(user) == USER_KEYS for user in listed.body)
    # Another workspace's user is a 404, the same as one that does not exist.
    for path in (f"/api/users/{bob['id']}", f"/api/users/{uuid.uuid4().hex[:24]}", "/api/users/x%20y"):
        hidden = await api.get(path, token=eve["token"])
        assert hidden.status == 404 and hidden.error_code == "not_found", (path, hidden.body)


async def test_profile_changes_and_their_rules(api, deps):
    ada, bob = await _team(api, "Ada Lovelace", "Bob Babbage")
    (eve,) = await _team(api, "Eve Outsider")
    changed = await api.patch("/api/users/me", {"fullname": "  Ada King ", "username": "Countess.Ada",
                                                "status_text": "In a meeting", "status_emoji": "📅",
                                                "timezone": "Europe/London"}, token=ada["token"])
    assert changed.status == 200, changed.body
    assert (changed.body["fullname"], changed.body["username"]) == ("Ada King", "countess.ada")
    assert (changed.body["status_text"], changed.body["status_emoji"], changed.body["timezone"]) == (
        "In a meeting", "📅", "Europe/London")
    seen = await api.get(f"/api/users/{ada['id']}", token=bob["token"])
    assert seen.body["username"] == "countess.ada" and seen.body["status_text"] == "In a meeting"
    # The directory follows the new name (its key is kept with the name).
    found = await api.get("/api/users?q=ada%20k&limit=10", token=bob["token"])
    assert [u["id"] for u in found.body["users"]] == [ada["id"]]
    # Only what is given changes; "" clears.
    cleared = await api.patch("/api/users/me", {"status_text": ""}, token=ada["token"])
    assert cleared.body["status_text"] == "" and cleared.body["timezone"] == "Europe/London"

    taken = await api.patch("/api/users/me", {"username": "COUNTESS.ADA"}, token=bob["token"])
    assert taken.status == 409 and taken.error_code == "username_taken", taken.body
    # Usernames are per workspace: another one may hold the same.
    assert (await api.patch("/api/users/me", {"username": "countess.ada"}, token=eve["token"])).status == 200
    refusals = {
        "timezone": ({"timezone": "Mars/Olympus_Mons"}, "IANA"),
        "status_text": ({"status_text": "x" * 101}, "Status must be at most 100 characters"),
        "username": ({"username": "no spaces"}, "Username may only use letters, digits, '.', '_' and '-'"),
        "fullname": ({"fullname": "\u200b"}, "Name must contain a visible character"),
    }
    for field, (body, words) in refusals.items():
        reply = await api.patch("/api/users/me", body, token=bob["token"])
        assert reply.status == 422 and list(reply.body["error"]["fields"]) == [field], (body, reply.body)
        assert words in reply.body["error"]["fields"][field] and reply.body["error"]["message"] == \
            reply.body["error"]["fields"][field], reply.body
    everyone = await api.patch("/api/users/me", {"username": "Channel"}, token=bob["token"])
    assert everyone.status == 422 and "everyone" in everyone.body["error"]["fields"]["username"]
    unknown = await api.patch("/api/users/me", {"nickname": "b"}, token=bob["token"])
    assert unknown.status == 422 and unknown.body["error"]["fields"] == {
        "nickname": "This request takes no field named nickname"}
    stored = await deps.store.users.find_one({"_id": bob["id"]})
    assert stored["fullname"] == "Bob Babbage" and "status_text" not in stored  # nothing of the refusals landed


async def test_user_updated_reaches_who_shares_a_chat_once_and_nobody_else(api, sse):
    bob, cy, dan, ann = await _team(api, "Bob Babbage", "Cy Young", "Dan Nobody", "Ann Another")
    eve, fay = await _team(api, "Eve Outsider", "Fay Outsider")
    # Cy shares two chats with Bob (still one event), Ann one, Dan none (his only chat is with Cy).
    await _chat(api, bob, cy)
    await _chat(api, bob, cy, ann, type_="private_channel", name="plans")
    dan_cy = await _chat(api, dan, cy)
    eve_fay = await _chat(api, eve, fay)
    # Everyone joined the workspace's #general (a default channel): Dan leaves it, so he shares no chat with Bob.
    general = [c for c in (await api.get("/api/chats", token=dan["token"])).body if c.get("name") == "general"]
    for chat in general:
        assert (await api.delete(f"/api/chats/{chat['id']}/members/{dan['id']}", token=dan["token"])).status == 204
    users = {"bob": bob, "cy": cy, "dan": dan, "ann": ann, "eve": eve}
    streams = {name: await sse(user["token"], expect=200) for name, user in users.items()}
    bob_other_tab = await sse(bob["token"], expect=200)
    for stream in (*streams.values(), bob_other_tab):
        await stream.wait_cursor()

    changed = await api.patch("/api/users/me", {"status_text": "On holiday"}, token=bob["token"])
    assert changed.status == 200
    for stream in (streams["cy"], streams["ann"], streams["bob"], bob_other_tab):
        frames = await stream.wait_count(1, events.USER_UPDATED)
        assert frames[0].data["id"] == bob["id"] and frames[0].data["status_text"] == "On holiday"
        assert set(frames[0].data) == USER_KEYS  # the public payload: no hash, no workspace internals
    # A later event in each of their chats: once it is in, an earlier user.updated would have been too.
    for chat_id, sender, stream in ((dan_cy, cy, streams["dan"]), (eve_fay, fay, streams["eve"])):
        assert (await api.post(f"/api/chats/{chat_id}/messages", {"content": "marker"}, token=sender["token"])).status == 201
        await stream.wait_count(1, events.MESSAGE_CREATED)
        assert stream.of(events.USER_UPDATED) == []
    assert len(streams["cy"].of(events.USER_UPDATED)) == 1  # two shared chats, one event
    # Nothing changed: no event; the next change is the next event, in order.
    assert (await api.patch("/api/users/me", {"status_text": "On holiday"}, token=bob["token"])).status == 200
    assert (await api.patch("/api/users/me", {"fullname": "Robert Babbage"}, token=bob["token"])).status == 200
    frames = await streams["cy"].wait_count(2, events.USER_UPDATED)
    assert [f.data["fullname"] for f in frames] == ["Bob Babbage", "Robert Babbage"]


async def test_a_password_change_ends_every_other_session_on_both_roles(api, notify_api, sse):
    ada, bob = await _team(api, "Ada Lovelace", "Bob Babbage")
    await _chat(api, ada, bob)
    laptop = await api.post("/api/signin", {"email": ada["user"]["email"], "password": ada["password"]})
    assert laptop.status == 200
    tab = await sse(ada["token"], expect=200)
    laptop_tab = await sse(laptop.body["access_token"], expect=200)
    bob_tab = await sse(bob["token"], expect=200)
    for stream in (tab, laptop_tab, bob_tab):
        await stream.wait_cursor()

    short = await api.post("/api/users/me/password", {"current_password": ada["password"], "new_password": "short"},
                           token=ada["token"])
    assert short.status == 422 and short.body["error"]["fields"] == {
        "new_password": "New password must be at least 8 characters"}
    assert short.body["error"]["message"] == "New password must be at least 8 characters"
    wrong = await api.post("/api/users/me/password", {"current_password": "not it at all", "new_password": "a new long one"},
                           token=ada["token"])
    assert wrong.status == 422 and list(wrong.body["error"]["fields"]) == ["current_password"]
    assert (await api.get("/api/users/me", token=ada["token"])).status == 200  # refusals end nothing

    started = time.monotonic()
    done = await api.post("/api/users/me/password", {"current_password": ada["password"], "new_password": "a new long one",
                                                     "refresh_token": ada["refresh_token"]}, token=ada["token"])
    assert done.status == 204, done.body
    # Both of Ada's open streams end within a second; Bob's stays.
    await tab.wait_ended(timeout=1.0)
    await laptop_tab.wait_ended(timeout=max(0.05, 1.0 - (time.monotonic() - started)))
    assert time.monotonic() - started < 1.0
    assert not bob_tab.ended.is_set()
    # Every access token issued before now: 401 on the api and on notify.
    for token in (ada["token"], laptop.body["access_token"]):
        assert (await api.get("/api/users/me", token=token)).status == 401
        assert (await notify_api.get("/api/online-users", token=token)).status == 401
        assert (await sse(token)).status == 401
    # The laptop's refresh token is revoked; the one given with the change goes on working.
    assert (await api.post("/api/refresh", {"refresh_token": laptop.body["refresh_token"]})).status == 401
    kept = await api.post("/api/refresh", {"refresh_token": ada["refresh_token"]})
    assert kept.status == 200 and (await api.get("/api/users/me", token=kept.body["access_token"])).status == 200
    # The old password no longer signs in; the new one does.
    email = ada["user"]["email"]
    assert (await api.post("/api/signin", {"email": email, "password": ada["password"]})).status == 401
    assert (await api.post("/api/signin", {"email": email, "password": "a new long one"})).status == 200
    assert (await api.get("/api/users/me", token=bob["token"])).status == 200


async def test_avatars_are_reencoded_and_served_with_validators(api, deps):
    ada, bob = await _team(api, "Ada Lovelace", "Bob Babbage")
    (eve,) = await _team(api, "Eve Outsider")
    before = (await api.get("/api/users/me", token=ada["token"])).body["avatar_url"]
    marker = b"uploaded-bytes-never-served"
    info = PngInfo()
    info.add_text("comment", marker.decode())
    upload = _picture("PNG", size=(400, 300), pnginfo=info)
    assert marker in upload
    put = await _put_avatar(api, ada, upload)
    assert put.status == 200 and set(put.body) >= USER_KEYS, put.body
    url = put.body["avatar_url"]
    assert url != before and "sig=" in url
    for size in (256, 64):
        got = await api.get(f"{url}&size={size}", token=bob["token"])
        picture = _image(got)
        assert picture.size == (size, size) and marker not in got.body
        assert got.headers["ETag"] and "immutable" in got.headers["Cache-Control"]
        assert picture.convert("RGB").getpixel((size // 2, size // 2)) == (200, 30, 60)
        # An <img> sends no token: the signature in avatar_url is what lets it load.
        assert (await api.get(f"{url}&size={size}")).body == got.body
        cached = await api.get(f"{url}&size={size}", headers={"If-None-Match": got.headers["ETag"]})
        assert cached.status == 304 and not cached.body
    assert (await api.get(f"{url}&size=64")).headers["ETag"] != (await api.get(f"{url}&size=256")).headers["ETag"]
    plain = f"/api/users/{ada['id']}/avatar"
    assert (await api.get(plain)).status == 401
    assert (await api.get(url.replace("sig=", "sig=x"))).status == 401
    assert (await api.get(plain, token=eve["token"])).status == 404  # another workspace, by token: unseen
    assert (await api.get(f"{plain}?size=65", token=bob["token"])).status == 422
    # Formats: JPEG, GIF and WebP are taken too; a second picture replaces the first's documents.
    for fmt in ("JPEG", "GIF", "WEBP"):
        assert (await _put_avatar(api, ada, _picture(fmt), ctype=f"image/{fmt.lower()}")).status == 200, fmt
    assert await deps.store.avatars.count_documents({"user_id": ada["id"]}) == 2
    stale = await api.get(f"{url}&size=64")
    assert stale.status == 200 and "immutable" not in stale.headers["Cache-Control"]

    not_image = await _put_avatar(api, bob, b"%PDF-1.4 definitely not a picture", ctype="image/png")
    assert not_image.status == 422 and list(not_image.body["error"]["fields"]) == ["file"], not_image.body
    truncated = await _put_avatar(api, bob, upload[: len(upload) // 2])
    assert truncated.status == 422, truncated.body
    bmp = await _put_avatar(api, bob, _picture("BMP"), ctype="image/bmp")
    assert bmp.status == 422 and "PNG, JPEG, GIF or WebP" in bmp.body["error"]["message"]
    started = time.monotonic()
    bomb = _png_declaring(60_000, 60_000)
    assert len(bomb) < 1000
    refused = await _put_avatar(api, bob, bomb)
    assert refused.status == 422 and "megapixels" in refused.body["error"]["fields"]["file"], refused.body
    assert time.monotonic() - started < 2  # refused on the header, never decoded
    big = await _put_avatar(api, bob, b"\x89PNG" + b"\x00" * (5 * 1024 * 1024 + 10))
    assert big.status in (413, 422)
    assert await deps.store.avatars.count_documents({"user_id": bob["id"]}) == 0
    assert (await api.get("/api/users/me", token=bob["token"])).body["avatar_url"] == \
        (await api.get(f"/api/users/{bob['id']}", token=ada["token"])).body["avatar_url"]


@pytest.mark.filterwarnings("error::PIL.Image.DecompressionBombWarning")  # as app.images sets it (pytest resets it)
def test_the_image_module_refuses_a_bomb_by_its_header():
    with pytest.raises(images.ImageRefused, match="megapixels"):
        images.square_pngs(_png_declaring(images.MAX_PIXELS // 1000 + 1, 1001), (64,))
    out = images.square_pngs(_picture("PNG", size=(10, 30)), (64, 256))
    assert {size: Image.open(io.BytesIO(png)).size for size, png in out.items()} == {64: (64, 64), 256: (256, 256)}


async def test_initials_avatars_are_deterministic_per_user(api):
    ada, bob = await _team(api, "Ada Lovelace", "Bob Babbage")
    urls = {u["id"]: u["avatar_url"] for u in (await api.get("/api/users", token=ada["token"])).body}
    first = await api.get(f"{urls[bob['id']]}&size=64")
    second = await api.get(f"{urls[bob['id']]}&size=64")
    assert _image(first).size == (64, 64) and first.body == second.body
    assert first.headers["ETag"] == second.headers["ETag"] and "immutable" in first.headers["Cache-Control"]
    other = await api.get(f"{urls[ada['id']]}&size=64")
    corner = lambda reply: _image(reply).convert("RGB").getpixel((1, 1))  # noqa: E731
    assert corner(first) != corner(other)  # a colour of each one's own
    # A new name is a new initials picture, at a new URL.
    renamed = await api.patch("/api/users/me", {"fullname": "Zed Babbage"}, token=bob["token"])
    assert renamed.body["avatar_url"] != urls[bob["id"]]
    assert (await api.get(f"{renamed.body['avatar_url']}&size=64")).body != first.body


async def test_the_directory_pages_every_user_once_and_matches_prefixes(api, world):
    workspace = await world.workspace()
    people = [("Alan Turing", "turing"), ("Albert Hofmann", "bert"), ("Zed Alpha", "al.z"), ("Bob Alsop", "alb"),
              ("alice cooper", "cooper"), ("Ålvar Aalto", "aalto"), ("Carol Danvers", "carol")]
    people += [(f"Person {i:02d}", f"person{i:02d}") for i in range(12)]
    made = {name: await world.user(workspace, name, username=username) for name, username in people}
    other = await world.workspace()
    await world.user(other, "Alan Outsider", username="alan")  # another workspace: never listed
    viewer = made["Carol Danvers"]
    everyone = {u.id for u in made.values()} | {world.owners[workspace].id}

    async def pages(q: str | None, limit: int) -> list[str]:
        seen: list[str] = []
        cursor = None
        for _ in range(50):
            path = f"/api/users?limit={limit}" + (f"&q={quote(q)}" if q else "") + (f"&cursor={cursor}" if cursor else "")
            reply = await api.get(path, token=viewer.token)
            assert reply.status == 200 and len(reply.body["users"]) <= limit, reply.body
            seen += [u["id"] for u in reply.body["users"]]
            cursor = reply.body["next_cursor"]
            if cursor is None:
                return seen
        raise AssertionError("no end to the pages")

    for limit in (1, 2, 5, 200):
        listed = await pages(None, limit)
        assert len(listed) == len(set(listed)) and set(listed) == everyone, limit
        matched = await pages("al", limit)
        assert len(matched) == len(set(matched)), (limit, matched)
        # Fullname prefix (any case) or username prefix; "Zed Alpha" by @al.z, Bob Alsop by @alb.
        assert set(matched) == {made[n].id for n in ("Alan Turing", "Albert Hofmann", "Zed Alpha", "Bob Alsop",
                                                     "alice cooper")}, limit
    assert set(await pages("ÅL", 3)) == {made["Ålvar Aalto"].id}
    assert await pages("nobody", 3) == []
    # The old unpaged form: the array, by fullname.
    old = await api.get("/api/users?q=AL", token=viewer.token)
    assert isinstance(old.body, list) and [u["fullname"] for u in old.body] == sorted(u["fullname"] for u in old.body)
    assert len(old.body) == 5
    assert len((await api.get("/api/users", token=viewer.token)).body) == len(everyone)

    # A page costs two index ranges with q, one without, whatever the size of the workspace.
    async with world.counting() as (counted, commands):
        for q in (None, "al", "person"):
            await counted.services.people.users(viewer.identity, UsersQuery(limit=5, q=q))
            assert commands.issued() == [("find", "users")] * (1 if q is None else 2), q


async def test_reading_a_user_costs_one_command(world):
    workspace = await world.workspace()
    ada, bob = await world.user(workspace, "Ada"), await world.user(workspace, "Bob")
    async with world.counting() as (counted, commands):
        await counted.services.people.user(ada.identity, bob.id)
        assert commands.issued() == [("find", "users")]


async def test_a_validation_message_is_one_plain_line_per_field(api):
    signup = await api.post("/api/signup", {"fullname": "X", "email": "x@example.com", "password": "short",
                                            "workspace": "Plain words"})
    assert signup.status == 422
    error = {k: v for k, v in signup.body["error"].items() if k != "request_id"}
    assert error == {"code": "validation_failed", "message": "Password must be at least 8 characters",
                     "fields": {"password": "Password must be at least 8 characters"}}
    (ada,) = await _team(api, "Ada")
    paged = await api.get("/api/users?limit=0", token=ada["token"])
    assert paged.body["error"]["fields"] == {"limit": "Limit must be at least 1"}
    chat = await api.post("/api/chats", {"type": "public_channel", "members": []}, token=ada["token"])
    assert chat.status == 422 and chat.body["error"]["message"] == next(iter(chat.body["error"]["fields"].values()))
    assert chat.body["error"]["message"][0].isupper() and "invalid body" not in chat.body["error"]["message"]


def test_one_user_updated_is_for_the_members_of_their_chats_and_their_own_tabs_live_and_on_replay():
    entry = WindowEntry(2, time.time(), events.USER_UPDATED, b"u", subject="bob", chat_ids=("c1", "c2"),
                        recipients=("bob",))
    members = {"c1": {"bob", "cy"}, "c2": {"bob", "cy", "ann"}, "c3": {"dan"}}
    assert set(delivery.recipients(entry, lambda chat: members.get(chat, set()))) == {"bob", "cy", "ann"}
    window = ReplayWindow(300, 100)
    window.start_at(0)
    window.append(WindowEntry(1, time.time(), events.MESSAGE_CREATED, b"m", chat_id="c3"))
    window.append(entry)
    assert window.replay("cy", {"c1", "c2"}, 0) == [b"u"]  # once, though in two of the chats
    assert window.replay("bob", set(), 0) == [b"u"]
    assert window.replay("dan", {"c3"}, 0) == [b"m"]
