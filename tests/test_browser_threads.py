"""Threads, reactions, pins, edit history and rich text in the demo UI (issue 15), in Debian's chromium against the
api and notify roles: live reaction chips, the thread panel and its root's count, pins, the "(edited)" history."""

from __future__ import annotations

import uuid
from urllib.parse import quote

import pytest
from playwright.sync_api import expect

from tests.browser_helpers import LIVE_TIMEOUT_MS, SCREENSHOTS
from tests.test_browser import PASSWORD, PHONE, browser, open_page, running_stack  # noqa: F401 - fixtures

DESKTOP = {"width": 1280, "height": 800}
THUMBS = "👍"


@pytest.fixture(scope="module")
def stack(tmp_path_factory, mongo_uri, nats_url, key_files):
    with running_stack(tmp_path_factory, mongo_uri, nats_url, key_files, SCREENSHOTS.parent / "logs-threads") as running:
        yield running


def signed_in(open_page, person: dict, viewport=DESKTOP):
    page = open_page(viewport=viewport)
    page.goto()
    page.sign_in(person["email"], PASSWORD)
    expect(page.by("current-user")).to_have_text(person["fullname"])
    return page


def post(stack, person: dict, chat_id: str, text: str, **extra) -> dict:
    return stack.call("POST", f"/api/chats/{chat_id}/messages", {"content": text, **extra}, token=person["token"])


def chip(page, message, emoji: str = THUMBS):
    return message.locator(f'[data-testid="reaction"][data-emoji="{emoji}"]')


def test_reactions_threads_pins_history_and_rich_text_live(open_page, stack):
    alice_p = stack.person("Alice Archer")
    code = stack.call("GET", "/api/workspace", token=alice_p["token"])["invite_code"]
    bob_p = stack.person("Bob Babbage", invite_code=code)
    carol_p = stack.person("Carol Cole", invite_code=code)
    name = f"launch-{uuid.uuid4().hex[:6]}"
    channel = stack.call("POST", "/api/chats", {"type": "public_channel", "name": name,
                                                "members": [bob_p["id"], carol_p["id"]]}, token=alice_p["token"])["id"]
    # Another chat's data beside it: its reactions and replies must not show here.
    other = stack.call("POST", "/api/chats", {"type": "group", "members": [bob_p["id"], carol_p["id"]]},
                       token=alice_p["token"])["id"]
    elsewhere = post(stack, carol_p, other, "Lunch order?")
    post(stack, bob_p, other, "Pizza", reply_to=elsewhere["id"])
    stack.call("PUT", f"/api/chats/{other}/messages/{elsewhere['id']}/reactions/{quote(THUMBS)}", token=bob_p["token"])

    post(stack, carol_p, channel, "Morning all. Release checklist is in the doc.")
    root_text = "Shall we ship the release on Friday?"
    root = post(stack, alice_p, channel, root_text)
    rich = post(stack, carol_p, channel, "Run it **now** please:\n```\nmake deploy ENV=prod\n```\n> from the runbook")
    # An earlier reply in another thread of this chat: it stays out of the timeline of roots.
    older_root = post(stack, carol_p, channel, "Who owns the changelog?")
    post(stack, bob_p, channel, "I do, updating it today.", reply_to=older_root["id"])

    alice = signed_in(open_page, alice_p)
    bob = signed_in(open_page, bob_p)
    alice.open_chat_named(name)
    bob.open_chat_named(name)

    # Rich text: the bold word, the fenced block as code in a box, the quote; never the markup as text.
    rich_row = alice.message_by_id(rich["id"])
    expect(rich_row.locator("strong")).to_have_text("now")
    expect(rich_row.locator("pre code")).to_have_text("make deploy ENV=prod")
    expect(rich_row.locator("blockquote")).to_have_text("from the runbook")
    expect(rich_row.get_by_test_id("message-content")).not_to_contain_text("**")
    assert rich_row.locator("pre").evaluate("(el) => getComputedStyle(el).fontFamily").lower().find("mono") >= 0
    # The rendered body carries no blank lines of its own (margins, not text): what is read is what was sent.
    assert alice.message_by_id(root["id"]).get_by_test_id("message-content").inner_text() == root_text
    assert rich_row.get_by_test_id("message-content").inner_text().rstrip("\n") == rich_row.get_by_test_id("message-content").inner_text()
    # Replies are in their threads: the timeline lists roots, with the older thread's count under its root.
    expect(alice.message_with_text("I do, updating it today.")).to_have_count(0)
    expect(alice.message_by_id(older_root["id"]).get_by_test_id("reply-count")).to_have_text("1 reply")

    # Alice reacts 👍 from the hover bar's picker; Bob sees the chip, count 1, live; his click makes it 2.
    alice_root = alice.message_by_id(root["id"])
    alice_root.hover()
    alice_root.get_by_test_id("react-button").click()
    expect(alice.by("emoji-picker")).to_be_visible()
    alice.screenshot("15-emoji-picker")
    alice.by("emoji-picker").locator(f'[data-emoji="{THUMBS}"]').click()
    expect(alice.by("emoji-picker")).to_be_hidden()
    expect(chip(alice, alice_root)).to_have_attribute("data-me", "true")
    bob_root = bob.message_by_id(root["id"])
    expect(chip(bob, bob_root).get_by_test_id("reaction-count")).to_have_text("1", timeout=LIVE_TIMEOUT_MS)
    expect(chip(bob, bob_root)).to_have_attribute("data-me", "false")
    expect(chip(bob, bob_root)).to_have_attribute("title", f"Alice Archer reacted with :thumbs_up:")
    chip(bob, bob_root).click()
    expect(chip(bob, bob_root).get_by_test_id("reaction-count")).to_have_text("2")
    expect(chip(bob, bob_root)).to_have_attribute("data-me", "true")
    expect(chip(alice, alice_root).get_by_test_id("reaction-count")).to_have_text("2", timeout=LIVE_TIMEOUT_MS)
    expect(chip(alice, alice_root)).to_have_attribute("title", "You and Bob Babbage reacted with :thumbs_up:")
    alice.page.mouse.move(5, 400)
    bob_root.hover()
    bob.screenshot("15-reactions-hover")

    # Alice opens the thread; Bob replies in it from his own panel. Her root shows "1 reply", her panel the reply.
    alice_root.hover()
    alice_root.get_by_test_id("reply-thread").click()
    expect(alice.by("thread-panel")).to_be_visible()
    expect(alice.by("thread-root-list")).to_contain_text(root_text)
    bob_root.hover()
    bob_root.get_by_test_id("reply-thread").click()
    reply = "Friday works, I will cut the tag at noon."
    bob.by("thread-input").fill(reply)
    bob.by("thread-input").press("Enter")
    expect(bob.by("thread-list").get_by_test_id("thread-message")).to_have_count(1)
    expect(alice.message_by_id(root["id"]).get_by_test_id("reply-count")).to_have_text("1 reply", timeout=LIVE_TIMEOUT_MS)
    alice_reply = alice.by("thread-list").get_by_test_id("thread-message")
    expect(alice_reply).to_have_count(1, timeout=LIVE_TIMEOUT_MS)
    expect(alice_reply.get_by_test_id("message-content")).to_have_text(reply)
    expect(alice.by("thread-divider")).to_have_text("1 reply")
    expect(alice.message_with_text(reply)).to_have_count(0)  # not in the main timeline
    # Alice answers in the panel: Bob's root count follows.
    alice.by("thread-input").fill("Great, I will write the notes.")
    alice.by("thread-input").press("Enter")
    expect(bob.message_by_id(root["id"]).get_by_test_id("reply-count")).to_have_text("2 replies", timeout=LIVE_TIMEOUT_MS)
    expect(bob.by("thread-list").get_by_test_id("thread-message")).to_have_count(2, timeout=LIVE_TIMEOUT_MS)
    alice.page.mouse.move(700, 400)
    alice.screenshot("15-thread-panel")

    # Bob pins the rich message: Alice sees the mark and the header's count live, and the pins view lists it.
    bob_rich = bob.message_by_id(rich["id"])
    bob_rich.hover()
    bob_rich.get_by_test_id("pin-message").click()
    expect(alice.message_by_id(rich["id"]).get_by_test_id("pinned-mark")).to_be_visible(timeout=LIVE_TIMEOUT_MS)
    expect(alice.by("pins-count")).to_have_text("1")
    alice.by("thread-close").click()
    expect(alice.by("thread-panel")).to_be_hidden()
    alice.by("pins-button").click()
    expect(alice.by("pins-popover").get_by_test_id("pin-item")).to_have_count(1)
    expect(alice.by("pins-popover")).to_contain_text("make deploy ENV=prod")
    alice.screenshot("15-pins")
    alice.page.keyboard.press("Escape")
    expect(alice.by("pins-popover")).to_be_hidden()
    alice.page.mouse.move(700, 300)
    alice.screenshot("15-rich-text")

    # Alice edits her root; "(edited)" opens its history, newest first.
    alice.edit_message(root_text, "Shall we ship the release on **Saturday**?")
    edited = alice.message_by_id(root["id"])
    expect(edited.locator("strong")).to_have_text("Saturday")
    expect(bob.message_by_id(root["id"]).locator("strong")).to_have_text("Saturday", timeout=LIVE_TIMEOUT_MS)
    # The edit's event keeps Bob's own reaction as his (its payload's `me` is the editor's).
    expect(chip(bob, bob.message_by_id(root["id"]))).to_have_attribute("data-me", "true")
    edited.get_by_test_id("message-edited").click()
    versions = alice.by("history-popover").get_by_test_id("history-version")
    expect(versions).to_have_count(2)
    expect(versions.nth(1)).to_contain_text(root_text)
    alice.screenshot("15-edit-history")

    # On a phone the thread covers the chat, with its own composer; its close button goes back.
    carol = signed_in(open_page, carol_p, viewport=PHONE)
    carol.open_chat_named(name)
    carol.message_by_id(root["id"]).get_by_test_id("thread-summary").click()
    expect(carol.by("thread-panel")).to_be_visible()
    expect(carol.by("thread-list").get_by_test_id("thread-message")).to_have_count(2)
    expect(carol.by("thread-input")).to_be_visible()
    carol.screenshot("15-thread-phone")
    carol.by("thread-close").click()
    expect(carol.by("thread-panel")).to_be_hidden()

    for page in (alice, bob, carol):
        page.assert_no_console_errors()
