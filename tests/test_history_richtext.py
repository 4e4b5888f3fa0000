"""Rich text wired (content_html stored at every write, on every payload) and edit history (versions, the route)."""

from __future__ import annotations

import html.parser

import msgspec
import pytest

from app import events
from app.richtext import ALLOWED, LINK_REL, Renderer
from app.schemas.messages import MentionsQuery, MessageListQuery, SearchQuery
from app.services.rich_backfill import backfill_rich_text
from tests.support.api import wait_for
from tests.support.chats import create_chat, events_of, make_team

pytestmark = [pytest.mark.gen_test(timeout=60), pytest.mark.usefixtures("cheap_passwords")]

HOSTILE = {
    "script": "<script>alert(1)</script> hi",
    "img": '<img src=x onerror="alert(1)">',
    "javascript link": "[click](javascript:alert(1))",
    "javascript autolink": "<javascript:alert(1)>",
    "raw anchor": '<a href="javascript:alert(1)">x</a>',
    "entity script": "&lt;script&gt;alert(1)&lt;/script&gt; &#60;b&#62;",
    "data link": "[x](data:text/html;base64,PHNjcmlwdD4=)",
    "attribute break": '[x](https://ok.io "a\\" onmouseover=\\"alert(1)")',
    "iframe": "<iframe src=https://evil.io></iframe>",
}


class Tags(html.parser.HTMLParser):
    """Every tag and attribute of a fragment, as a browser's parser sees them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def tags_of(fragment: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = Tags()
    parser.feed(fragment)
    parser.close()
    return parser.tags


def assert_safe(fragment: str) -> None:
    for tag, attrs in tags_of(fragment):
        assert tag in ALLOWED and set(attrs) <= ALLOWED[tag], (tag, attrs, fragment)
        href = (attrs.get("href") or "").strip().lower()
        assert not href or href.startswith(("http://", "https://", "mailto:")), fragment
        if tag == "a":
            assert attrs.get("rel") == LINK_REL, fragment


async def send(api, who, chat_id, content):
    reply = await api.post(f"/api/chats/{chat_id}/messages", {"content": content}, token=who["token"])
    assert reply.status == 201, reply.body
    return reply.body


async def test_content_html_is_rendered_stored_and_on_every_payload(api, deps):
    t = await make_team(api)
    group = (await create_chat(api, t.owner, "group", [t.member, t.outsider]))["id"]
    beside = (await create_chat(api, t.member, "group", [t.owner, t.outsider]))["id"]
    await send(api, t.outsider, beside, "**beside** walrus")
    sent = await send(api, t.owner, group, "**bold** walrus `code` https://example.com\n\n```py\nx = 1 < 2\n```")
    assert sent["content_html"] == (
        '<p><strong>bold</strong> walrus <code>code</code> <a href="https://example.com" rel="noopener nofollow" '
        'target="_blank">https://example.com</a></p>\n<pre><code class="language-py">x = 1 &lt; 2\n</code></pre>\n')
    stored = await deps.store.messages.find_one({"_id": sent["id"]})
    assert stored["content_html"] == sent["content_html"]  # rendered once, at the write

    listed = (await api.get(f"/api/chats/{group}/messages", token=t.member["token"])).body["messages"]
    assert [m["content_html"] for m in listed if m["id"] == sent["id"]] == [sent["content_html"]]
    found = (await api.get("/api/search/messages?q=walrus", token=t.member["token"])).body["messages"]
    assert {m["id"]: m["content_html"] for m in found} == {
        sent["id"]: sent["content_html"], (await _only(api, t.member, beside))["id"]: "<p><strong>beside</strong> walrus</p>\n"}

    edited = await api.patch(f"/api/chats/{group}/messages/{sent['id']}", {"content": "_now_ <b>plain</b>"},
                             token=t.owner["token"])
    assert edited.status == 200 and edited.body["content_html"] == "<p><em>now</em> &lt;b&gt;plain&lt;/b&gt;</p>\n"
    created = await wait_for(lambda: _first(events_of(deps.bus, events.MESSAGE_CREATED, group)), message="created")
    assert created.data["content_html"] == sent["content_html"]
    updated = await wait_for(lambda: _first(events_of(deps.bus, events.MESSAGE_UPDATED, group)), message="updated")
    assert updated.data["content_html"] == edited.body["content_html"]


async def _only(api, who, chat_id):
    [message] = (await api.get(f"/api/chats/{chat_id}/messages", token=who["token"])).body["messages"]
    return message


async def _first(found):
    found = await found
    return found[0] if found else None


async def test_mentions_of_members_are_spans_and_others_stay_text(world):
    ws = await world.workspace()
    ada, bob, cy = [await world.user(ws, name, username=name.lower()) for name in ("Ada", "Bob", "Cy")]
    chat = await world.chat(ada, bob, type="private_channel")
    sent = await world.send(chat, ada, "hi @bob and @cy and @here, `@bob` stays code")
    assert sent["content_html"] == (
        f'<p>hi <span class="mention" data-user-id="{bob.id}">@bob</span> and @cy and '
        '<span class="mention" data-mention="here">@here</span>, <code>@bob</code> stays code</p>\n')
    assert sent["mentions"] == [bob.id]  # cy is no member: no span, no mention
    mentioned = await world.services.mentions.list(bob.identity, MentionsQuery())
    assert [m.content_html for m in mentioned.messages] == [sent["content_html"]]
    edited = await world.edit(chat, ada, sent["id"], "bye @Bob.")
    assert edited["content_html"] == f'<p>bye <span class="mention" data-user-id="{bob.id}">@Bob</span>.</p>\n'


async def test_content_html_never_carries_raw_html_from_content(world):
    ws = await world.workspace()
    ada, bob = await world.user(ws, "Ada"), await world.user(ws, "Bob")
    chat = await world.chat(ada, bob)
    for name, content in HOSTILE.items():
        sent = await world.send(chat, ada, content)
        out = sent["content_html"]
        assert_safe(out)
        assert "<script" not in out and "<img" not in out and "<iframe" not in out and "<a href=\"javascript" not in out
        assert "javascript:" not in "".join(a.get("href") or "" for _, a in tags_of(out)), (name, out)
        # An edit to it renders as safely.
        assert_safe((await world.edit(chat, ada, sent["id"], content + " again"))["content_html"])
    # The whole chat, as listed: the escaped text shows, no tag of it.
    page = await world.services.messages.list(bob.identity, chat, MessageListQuery(limit=100))
    assert len(page.messages) == len(HOSTILE)
    for message in page.messages:
        assert_safe(message.content_html)
    script = next(m for m in page.messages if m.content.startswith("<script>"))
    assert script.content_html == "<p>&lt;script&gt;alert(1)&lt;/script&gt; hi again</p>\n"


async def test_edit_history_keeps_every_version_oldest_first(api, deps):
    t = await make_team(api)
    group = (await create_chat(api, t.owner, "group", [t.member, t.outsider]))["id"]
    other = (await create_chat(api, t.member, "group", [t.owner, t.outsider]))["id"]
    sent = await send(api, t.owner, group, "first *take*")
    never = await send(api, t.member, group, "never edited")
    theirs = await send(api, t.member, other, "in another chat")
    for content in ("second take", "third take"):
        reply = await api.patch(f"/api/chats/{group}/messages/{sent['id']}", {"content": content},
                                token=t.owner["token"])
        assert reply.status == 200
    await api.patch(f"/api/chats/{other}/messages/{theirs['id']}", {"content": "edited elsewhere"},
                    token=t.member["token"])
    last = reply.body

    path = f"/api/chats/{group}/messages/{sent['id']}/history"
    history = await api.get(path, token=t.outsider["token"])
    assert history.status == 200, history.body
    assert [v["content"] for v in history.body] == ["first *take*", "second take", "third take"]
    assert history.body[0]["edited_at"] == sent["created_at"] and history.body[0]["content_html"] == (
        "<p>first <em>take</em></p>\n")
    assert history.body[-1]["edited_at"] == last["edited_at"]
    stamps = [v["edited_at"] for v in history.body]
    assert stamps == sorted(stamps)
    # Versions are documents of their own, by (message_id, rev): never an array in the message.
    versions = await deps.store.message_versions.find({"message_id": sent["id"]}).to_list()
    assert sorted(v["rev"] for v in versions) == [0, 1]
    assert "versions" not in await deps.store.messages.find_one({"_id": sent["id"]})

    never_history = await api.get(f"/api/chats/{group}/messages/{never['id']}/history", token=t.owner["token"])
    assert [(v["content"], v["edited_at"]) for v in never_history.body] == [("never edited", never["created_at"])]

    for who, where in [
        (t.stranger, path),  # not a member
        (t.owner, f"/api/chats/{group}/messages/{theirs['id']}/history"),  # a message of another chat
        (t.owner, f"/api/chats/{group}/messages/0123456789abcdef01234567/history"),
        (t.owner, f"/api/chats/{group}/messages/%00/history"),
    ]:
        reply = await api.get(where, token=who["token"])
        assert reply.status == 404, (where, reply.body)
    # A deleted message's history goes with it.
    assert (await api.delete(f"/api/chats/{group}/messages/{sent['id']}", token=t.owner["token"])).status == 204
    assert (await api.get(path, token=t.owner["token"])).status == 404
    assert await deps.store.message_versions.count_documents({"message_id": sent["id"]}) == 0
    assert await deps.store.message_versions.count_documents({"message_id": theirs["id"]}) == 1


async def test_history_costs_a_constant_number_of_store_commands(world):
    ws = await world.workspace()
    ada, bob = await world.user(ws, "Ada"), await world.user(ws, "Bob")
    chat = await world.chat(ada, bob)
    once, many = await world.send(chat, ada, "v0"), await world.send(chat, ada, "v0")
    await world.edit(chat, ada, once["id"], "v1")
    for i in range(1, 8):
        await world.edit(chat, ada, many["id"], f"v{i}")
    async with world.counting() as (counted, commands):
        costs = []
        for message in (once, many):
            commands.issued()
            versions = await counted.services.messages.history(bob.identity, chat, message["id"])
            costs.append(sorted(commands.issued()))
            assert versions[-1].content == ("v1" if message is once else "v7")
        assert costs[0] == costs[1] and costs[0].count(("find", "message_versions")) == 1, costs


async def test_the_backfill_renders_messages_written_before_rich_text(world):
    ws = await world.workspace()
    ada, bob = await world.user(ws, "Ada", username="ada"), await world.user(ws, "Bob", username="bob")
    chat, untouched = await world.chat(ada, bob), await world.chat(bob, ada)
    old = [await world.send(chat, ada, content) for content in ("**old** one", "hey @bob", "<b>x</b>")]
    await world.send(untouched, bob, "_new_")
    # As an older version wrote them: no content_html, no thread fields, the chat not yet walked.
    ids = [m["id"] for m in old]
    await world.store.messages.update_many({"_id": {"$in": ids}},
                                           {"$unset": {"content_html": "", "thread_root_id": "", "reply_count": ""}})
    await world.store.chats.update_many({}, {"$unset": {"rich_text": ""}})
    page = await world.services.messages.list(ada.identity, chat, MessageListQuery())
    assert page.messages[0].content_html == ""  # before: nothing rendered (never raw content)

    assert await backfill_rich_text(world.store, Renderer()) == 3
    page = await world.services.messages.list(ada.identity, chat, MessageListQuery())
    assert [m.content_html for m in page.messages] == [
        "<p><strong>old</strong> one</p>\n",
        f'<p>hey <span class="mention" data-user-id="{bob.id}">@bob</span></p>\n',
        "<p>&lt;b&gt;x&lt;/b&gt;</p>\n",
    ]
    stored = await world.store.messages.find_one({"_id": ids[0]})
    assert stored["thread_root_id"] is None and stored["reply_count"] == 0
    assert await backfill_rich_text(world.store, Renderer()) == 0  # idempotent; walked chats are marked
    assert msgspec.to_builtins(page.messages[0])["content_html"]
    found = await world.services.search.search(ada.identity, msgspec.convert({"q": "old"}, SearchQuery))
    assert [m.content_html for m in found.messages] == ["<p><strong>old</strong> one</p>\n"]
