"""Search in the demo UI (issue 17): the top bar's box with filter chips, results grouped by chat with the
server's highlights, and the jump to a message far back in its chat's history."""

from __future__ import annotations

import re
import uuid

import pytest
from playwright.sync_api import expect

from tests.browser_helpers import LIVE_TIMEOUT_MS, SCREENSHOTS
from tests.test_browser import PASSWORD, PHONE, browser, open_page, running_stack  # noqa: F401 - fixtures

DESKTOP = {"width": 1280, "height": 800}


@pytest.fixture(scope="module")
def stack(tmp_path_factory, mongo_uri, nats_url, key_files):
    with running_stack(tmp_path_factory, mongo_uri, nats_url, key_files, SCREENSHOTS.parent / "logs-search") as running:
        yield running


def post(stack, person: dict, chat_id: str, text: str) -> dict:
    return stack.call("POST", f"/api/chats/{chat_id}/messages", {"content": text}, token=person["token"])


def test_bob_finds_alices_link_by_filters_and_jumps_to_it(open_page, stack):
    alice = stack.person("Alice Archer")
    code = stack.call("GET", "/api/workspace", token=alice["token"])["invite_code"]
    bob, carol = stack.person("Bob Babbage", invite_code=code), stack.person("Carol Cole", invite_code=code)
    handle = stack.call("GET", "/api/users/me", token=alice["token"])["username"]
    name = f"launch-{uuid.uuid4().hex[:6]}"
    channel = stack.call("POST", "/api/chats", {"type": "public_channel", "name": name,
                                                "members": [bob["id"], carol["id"]]}, token=alice["token"])["id"]
    direct = stack.call("POST", "/api/chats", {"type": "direct", "members": [bob["id"]]}, token=alice["token"])["id"]
    target = post(stack, alice, channel, "Release notes for 2.0 are up: https://example.com/notes/2-0 — please read")
    post(stack, alice, channel, "Notes without a link do not match has:link")
    post(stack, carol, channel, "My notes too: https://example.net/carol (not from Alice)")
    for i in range(120):  # the target is far above the latest page
        post(stack, [carol, bob][i % 2], channel, f"standup {i}: nothing blocking, shipping the sidebar today")
    post(stack, alice, direct, "Meeting notes: https://example.org/minutes and NOTES from last week")
    last = post(stack, carol, channel, "done for today")
    # Bob read the channel up to the end: opening it loads only its latest page.
    stack.call("POST", f"/api/chats/{channel}/read", {"seq": last["seq"]}, token=bob["token"])

    page = open_page(viewport=DESKTOP)
    page.goto()
    page.sign_in(bob["email"], PASSWORD)
    page.open_chat_named(name)
    expect(page.message_with_text("done for today")).to_be_visible()
    expect(page.message_by_id(target["id"])).to_have_count(0)

    # Ctrl+K focuses the box; finished filter tokens become chips as they are typed.
    box = page.by("search-input")
    page.page.keyboard.press("Control+k")
    expect(box).to_be_focused()
    box.press_sequentially(f"from:@{handle} has:link ")
    chips = page.by("search-chip")
    expect(chips).to_have_count(2)
    expect(chips.nth(0)).to_contain_text("From: Alice Archer")
    expect(chips.nth(1)).to_contain_text("Has: link")
    box.press_sequentially("notes")
    box.press("Enter")

    # Results grouped by chat, newest first, the word highlighted wherever it is (any case).
    panel = page.by("search-panel")
    expect(panel).to_be_visible()
    hits = page.by("search-hit")
    expect(hits).to_have_count(2, timeout=LIVE_TIMEOUT_MS)
    groups = page.by("search-group")
    expect(groups).to_have_count(2)
    expect(groups.nth(0)).to_have_attribute("data-chat-id", direct)
    expect(groups.nth(1)).to_have_attribute("data-chat-id", channel)
    expect(groups.nth(1).locator("h3")).to_have_text(f"#{name}")
    expect(hits.nth(0).locator("mark")).to_have_text(["notes", "NOTES"])
    expect(hits.nth(1).locator("mark")).to_have_text(["notes", "notes"])  # the URL has it too
    expect(hits.nth(1).get_by_test_id("search-hit-content")).to_have_text(target["content"])
    expect(page.by("search-summary")).to_have_text("2 results for “notes”")
    page.screenshot("17-search-results")

    # Arrows choose a result, Enter jumps: the channel opens with the history loaded down to the message.
    box.press("ArrowDown")
    box.press("ArrowDown")
    expect(hits.nth(1)).to_have_class(re.compile(r"\bactive\b"))
    box.press("Enter")
    expect(panel).to_be_hidden()
    expect(page.by("chat-title")).to_have_attribute("data-chat-id", channel)
    message = page.message_by_id(target["id"])
    expect(message).to_be_in_viewport(timeout=LIVE_TIMEOUT_MS)
    expect(message).to_have_class(re.compile(r"\bsearch-flash\b"))
    page.screenshot("17-search-jump")

    # A chip comes off with its ×; "/" outside a text field focuses the box again.
    page.by("message-scroller").click()
    page.page.keyboard.press("/")
    expect(box).to_be_focused()
    page.by("search-chip-remove").nth(0).click()
    expect(chips).to_have_count(1)
    box.press("Enter")
    expect(hits).to_have_count(3, timeout=LIVE_TIMEOUT_MS)  # Carol's link with "notes" too, now
    page.page.keyboard.press("Escape")
    expect(panel).to_be_hidden()
    page.assert_no_console_errors()

    # On a phone the results take the screen; a tap opens the chat at the message.
    phone = open_page(viewport=PHONE)
    phone.goto()
    phone.sign_in(bob["email"], PASSWORD)
    phone.by("search-input").fill("has:mention")
    phone.by("search-input").press("Enter")  # nobody mentioned: an empty answer that says so
    expect(phone.by("search-summary")).to_have_text("No results")
    phone.by("search-chip-remove").click()
    phone.by("search-input").fill(f"in:#{name} release")
    phone.by("search-input").press("Enter")
    expect(phone.by("search-hit")).to_have_count(1, timeout=LIVE_TIMEOUT_MS)
    phone.screenshot("17-search-phone")
    phone.by("search-hit").click()
    expect(phone.message_by_id(target["id"])).to_be_in_viewport(timeout=LIVE_TIMEOUT_MS)
    phone.assert_no_console_errors()


def test_bob_searches_from_alice_has_file_and_jumps_to_the_message(open_page, stack):
    from tests.test_browser_files import picture, upload

    alice = stack.person("Alice Archer")
    code = stack.call("GET", "/api/workspace", token=alice["token"])["invite_code"]
    bob, carol = stack.person("Bob Babbage", invite_code=code), stack.person("Carol Cole", invite_code=code)
    handle = stack.call("GET", "/api/users/me", token=alice["token"])["username"]
    name = f"assets-{uuid.uuid4().hex[:6]}"
    channel = stack.call("POST", "/api/chats", {"type": "public_channel", "name": name,
                                                "members": [bob["id"], carol["id"]]}, token=alice["token"])["id"]
    logo = upload(stack, alice, "logo.png", "image/png", picture(640, 320, (120, 40, 160)))
    target = stack.call("POST", f"/api/chats/{channel}/messages", {"content": "Logo for the launch", "files": [logo["id"]]},
                        token=alice["token"])
    post(stack, alice, channel, "Logo feedback welcome, no file here")
    theirs = upload(stack, carol, "carol.png", "image/png", picture(200, 200, (10, 10, 10)))
    stack.call("POST", f"/api/chats/{channel}/messages", {"content": "Carol's logo idea", "files": [theirs["id"]]},
               token=carol["token"])
    for i in range(80):  # the target is far above the latest page
        post(stack, [carol, bob][i % 2], channel, f"chatter {i}")
    last = post(stack, carol, channel, "that is all")
    stack.call("POST", f"/api/chats/{channel}/read", {"seq": last["seq"]}, token=bob["token"])

    page = open_page(viewport=DESKTOP)
    page.goto()
    page.sign_in(bob["email"], PASSWORD)
    page.open_chat_named(name)
    expect(page.message_with_text("that is all")).to_be_visible()
    box = page.by("search-input")
    page.page.keyboard.press("Control+k")
    box.press_sequentially(f"from:@{handle} has:file ")
    expect(page.by("search-chip")).to_have_count(2)
    box.press("Enter")
    hits = page.by("search-hit")
    expect(hits).to_have_count(1, timeout=LIVE_TIMEOUT_MS)
    expect(hits.get_by_test_id("search-hit-content")).to_have_text("Logo for the launch")
    page.screenshot("files-search")
    box.press("ArrowDown")
    box.press("Enter")
    expect(page.by("search-panel")).to_be_hidden()
    message = page.message_by_id(target["id"])
    expect(message).to_be_in_viewport(timeout=LIVE_TIMEOUT_MS)
    expect(message.get_by_test_id("file-thumb")).to_be_visible()
    page.screenshot("files-search-jump")
    page.assert_no_console_errors()
