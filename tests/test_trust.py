"""What a request cannot make the server say: the demo page's notify URL, names that show nothing."""

from __future__ import annotations

import re

import pytest

from app.config import load_config
from roles.api import notify_url_for_pages
from tests.support.chats import create_chat, make_team

pytestmark = pytest.mark.gen_test

INVISIBLE_NAMES = ["\u200b", "\u200b\u200c\u200d", "\u2060\ufeff", " \u200b\t", "\u202e\u2066\u2069", "\u3164",
                   "\U000e0041\U000e0042", "\u00ad\u034f", "\u2800"]
_META = re.compile(rb'<meta name="fechatter-notify-url" content="([^"]*)">')


def notify_meta(body: bytes) -> str:
    match = _META.search(body)
    assert match, body[:500]
    return match.group(1).decode()


@pytest.mark.parametrize("host", ["evil.example", "evil.example:6688", "[::1]:1", "127.0.0.1:6688"])
async def test_index_never_puts_the_request_host_in_the_notify_url(api, config, host):
    reply = await api.get("/", headers={"Host": host})
    assert reply.status == 200
    assert reply.headers["Cache-Control"] == "no-store"
    assert b"evil.example" not in reply.body
    assert notify_meta(reply.body) == f"http://{config.api.host}:{config.notify.port}" == notify_url_for_pages(config)


@pytest.fixture
def config_overrides():
    return {"limits": {"enabled": False}}


@pytest.mark.parametrize("config_overrides", [{"api": {"public_notify_url": "https://chat.example.com/"}}])
async def test_index_uses_the_configured_public_notify_url(api, config):
    reply = await api.get("/", headers={"Host": "evil.example"})
    assert notify_meta(reply.body) == "https://chat.example.com"
    assert reply.headers["Cache-Control"] == "no-store"


def test_notify_url_from_config_alone():
    def url(**api_and_notify):
        overrides = {"api": {k[4:]: v for k, v in api_and_notify.items() if k.startswith("api_")},
                     "notify": {k[7:]: v for k, v in api_and_notify.items() if k.startswith("notify_")}}
        return notify_url_for_pages(load_config(env={}, overrides=overrides))

    # `make run`: api 127.0.0.1:6688, notify 127.0.0.1:6687.
    assert url() == "http://127.0.0.1:6687"
    assert url(notify_host="0.0.0.0", api_host="10.0.0.5", notify_port=7000) == "http://10.0.0.5:7000"
    assert url(notify_host="::1") == "http://[::1]:6687"
    # Both on any address: nothing in config names the host; the page uses its own location.
    assert url(notify_host="0.0.0.0", api_host="::") == ""
    assert url(notify_host="0.0.0.0", api_public_notify_url="https://n.example/") == "https://n.example"


@pytest.mark.parametrize("name", INVISIBLE_NAMES, ids=[f"U+{ord(n[0]):04X}x{len(n)}" for n in INVISIBLE_NAMES])
async def test_names_made_only_of_invisible_characters_are_refused(api, name):
    signup = {"email": "ghost@example.com", "password": "long enough pw"}
    for body, field in [({**signup, "fullname": name, "workspace": "Ghosts"}, "fullname"),
                        ({**signup, "fullname": "Ghost", "workspace": name}, "workspace")]:
        reply = await api.post("/api/signup", body)
        assert reply.status == 422 and field in reply.body["error"]["fields"], (body, reply.body)
        assert "visible character" in reply.body["error"]["message"], reply.body
    assert (await api.post("/api/signin", {"email": "ghost@example.com", "password": "long enough pw"})).status == 401

    t = await make_team(api)
    owner = t.owner["token"]
    for kind, extra in [("public_channel", {}), ("private_channel", {}), ("group", {"members": [t.member["id"]]})]:
        reply = await api.post("/api/chats", {"type": kind, "name": name, **extra}, token=owner)
        assert reply.status == 422 and "name" in reply.body["error"]["fields"], (kind, reply.body)
    channel = await create_chat(api, t.owner, "public_channel", [], name="Visible")
    renamed = await api.patch(f"/api/chats/{channel['id']}", {"name": name}, token=owner)
    assert renamed.status == 422 and "name" in renamed.body["error"]["fields"], renamed.body
    message = await api.post(f"/api/chats/{channel['id']}/messages", {"content": name}, token=owner)
    assert message.status == 422 and "content" in message.body["error"]["fields"], message.body
    unchanged = await api.get(f"/api/chats/{channel['id']}", token=owner)
    assert unchanged.body["name"] == "Visible"
    listed = (await api.get("/api/chats", token=owner)).body
    # Nothing named by the refused requests: the owner's chats are the channel and the workspace's #general.
    assert sorted(c["name"] for c in (listed["items"] if isinstance(listed, dict) else listed)) == ["Visible", "general"]
    # A description may be anything, and a name with one visible character among invisible ones is a name.
    described = await api.patch(f"/api/chats/{channel['id']}", {"description": name}, token=owner)
    assert described.status == 200 and described.body["description"] == name, described.body
    mixed = await api.post("/api/chats", {"type": "public_channel", "name": f"{name}x"}, token=owner)
    assert mixed.status == 201, mixed.body


@pytest.mark.parametrize("email", ["ali\u200bce@example.com", "alice@exam\u202eple.com", "alice\u2060@example.com",
                                   "\ufeffalice@example.com", "alice@example.com\u00ad", "ali\u3164ce@example.com"])
async def test_an_email_with_an_invisible_character_is_refused(api, email):
    """It would show as someone else's address in every list of users: a look-alike account."""
    reply = await api.post("/api/signup", {"fullname": "Alice", "email": email, "password": "long enough pw",
                                           "workspace": "Look-alikes"})
    assert reply.status == 422 and "email" in reply.body["error"]["fields"], reply.body
    assert "email address" in reply.body["error"]["fields"]["email"] and "regex" not in reply.body["error"]["message"]
    ok = await api.post("/api/signup", {"fullname": "Jos\u00e9", "email": "jos\u00e9@ex\u00e4mple.com",
                                        "password": "long enough pw", "workspace": "Unicode"})
    assert ok.status == 201, ok.body
