"""Channel administration in the demo UI (issue 16, contract section 15), in Debian's chromium against the api
and notify roles: #general for whoever joins by invite, channel settings, live renames with system lines,
archived chats read-only, sidebar sections, DMs without roles, drafts kept across reloads, toasts clear of
the composer."""

from __future__ import annotations

import uuid

import pytest
from playwright.sync_api import expect

from tests.browser_helpers import LIVE_TIMEOUT_MS, SCREENSHOTS, UserPage
from tests.test_browser import PASSWORD, browser, open_page, running_stack, signed_in  # noqa: F401 - fixtures

DESKTOP = {"width": 1280, "height": 800}


@pytest.fixture(scope="module")
def stack(tmp_path_factory, mongo_uri, nats_url, key_files):
    with running_stack(tmp_path_factory, mongo_uri, nats_url, key_files, SCREENSHOTS.parent / "logs-admin") as running:
        yield running


def general_id(stack, person: dict) -> str:
    return next(c["id"] for c in stack.call("GET", "/api/chats", token=person["token"]) if c["name"] == "general")


def system_line(page: UserPage, text: str):
    return page.page.locator('[data-testid="message-list"] [data-testid="system-message"]').filter(has_text=text)


def boxes_overlap(a: dict, b: dict) -> bool:
    return not (a["x"] + a["width"] <= b["x"] or b["x"] + b["width"] <= a["x"]
                or a["y"] + a["height"] <= b["y"] or b["y"] + b["height"] <= a["y"])


def test_dave_signs_up_by_invite_link_and_finds_general_with_its_history(open_page, stack):
    alice = stack.person("Alice Archer")
    general = general_id(stack, alice)
    stack.call("POST", f"/api/chats/{general}/messages", {"content": "Welcome to the team, everyone"}, token=alice["token"])
    code = stack.call("GET", "/api/workspace", token=alice["token"])["invite_code"]

    dave = open_page(viewport=DESKTOP)
    dave.goto(f"/?invite={code}")
    expect(dave.by("signup-invite-code")).to_have_value(code)
    dave.sign_up("Dave Dunn", f"dave.{uuid.uuid4().hex[:8]}@example.com", PASSWORD, invite_code=code)
    # In the Channels section, nothing unread: he starts caught up, with the history there to read.
    item = dave.chat_item(general)
    expect(dave.by("channel-list").locator(f'[data-chat-id="{general}"]')).to_be_visible(timeout=LIVE_TIMEOUT_MS)
    expect(item.get_by_test_id("unread-badge")).to_have_count(0)
    dave.open_chat_named("general")
    expect(dave.message_with_text("Welcome to the team, everyone")).to_be_visible()
    expect(system_line(dave, "You joined the channel")).to_be_visible()
    expect(dave.by("chat-description")).to_contain_text("Everyone in the workspace")
    # A plain member sees no channel settings, and no "Leave" dead end for the owner either.
    expect(dave.by("channel-settings-button")).to_be_hidden()
    dave.screenshot("16-admin-invite-general")

    # A half-written message survives a reload, in its own chat only.
    dave.by("message-input").fill("half-written thought")
    dave.page.reload()
    dave.wait_signed_in()
    dave.open_chat_named("general")
    expect(dave.by("message-input")).to_have_value("half-written thought")
    dave.by("message-input").press("Enter")
    expect(dave.message_with_text("half-written thought")).to_be_visible()
    dave.page.reload()
    dave.wait_signed_in()
    dave.open_chat_named("general")
    expect(dave.by("message-input")).to_have_value("")
    dave.assert_no_console_errors()


def test_alice_renames_and_archives_a_channel_and_bob_follows_live(open_page, stack):
    alice_p = stack.person("Alice Archer")
    code = stack.call("GET", "/api/workspace", token=alice_p["token"])["invite_code"]
    bob_p = stack.person("Bob Babbage", invite_code=code)
    name = f"launch-{uuid.uuid4().hex[:4]}"
    channel = stack.call("POST", "/api/chats", {"type": "public_channel", "name": name, "members": [bob_p["id"]]},
                         token=alice_p["token"])["id"]
    direct = stack.call("POST", "/api/chats", {"type": "direct", "members": [bob_p["id"]]}, token=alice_p["token"])["id"]
    stack.call("POST", f"/api/chats/{channel}/messages", {"content": "Plan for Friday"}, token=bob_p["token"])

    alice = signed_in(open_page, alice_p, viewport=DESKTOP)
    bob = signed_in(open_page, bob_p, viewport=DESKTOP)
    # Sections: channels apart from direct messages, each with its own "+".
    expect(bob.by("channel-list").locator(f'[data-chat-id="{channel}"]')).to_be_visible()
    expect(bob.by("direct-list").locator(f'[data-chat-id="{direct}"]')).to_be_visible()
    bob.open_chat_named(name)

    alice.open_chat_named(name)
    expect(alice.by("channel-settings-button")).to_be_visible()
    alice.by("channel-settings-button").click()
    dialog = alice.by("channel-dialog")
    expect(dialog).to_be_visible()
    roles = dialog.get_by_test_id("channel-member")
    expect(roles).to_have_count(2)
    expect(dialog.locator(f'[data-testid="channel-member"][data-user-id="{alice_p["id"]}"]')).to_have_attribute("data-role", "owner")
    alice.by("channel-name").fill(f"{name}-v2")
    alice.by("channel-topic").fill("Ship it on Friday")
    alice.screenshot("16-admin-settings-dialog")
    alice.by("channel-save").click()
    expect(dialog).to_be_hidden()
    # The toast stays clear of the message box.
    toast = alice.by("toast")
    expect(toast).to_be_visible()
    assert not boxes_overlap(toast.bounding_box(), alice.by("composer").bounding_box())

    # Bob's header and sidebar follow, with a quiet line saying who did it.
    expect(bob.by("chat-title")).to_have_text(f"# {name}-v2", timeout=LIVE_TIMEOUT_MS)
    expect(bob.chat_item(channel).get_by_test_id("chat-item-title")).to_have_text(f"{name}-v2")
    expect(bob.by("chat-description")).to_have_text("Ship it on Friday")
    expect(system_line(bob, f"Alice Archer renamed the channel to #{name}-v2")).to_be_visible()
    expect(system_line(bob, "Alice Archer set the topic: Ship it on Friday")).to_be_visible()
    expect(bob.chat_item(channel).get_by_test_id("unread-badge")).to_have_count(0)
    bob.screenshot("16-admin-rename-live")

    # Bob becomes an admin; then Alice archives the channel: read-only for Bob at once.
    alice.by("channel-settings-button").click()
    dialog.locator(f'[data-user-id="{bob_p["id"]}"]').get_by_test_id("member-promote").click()
    expect(dialog.locator(f'[data-testid="channel-member"][data-user-id="{bob_p["id"]}"]')).to_have_attribute("data-role", "admin")
    alice.by("channel-archive").click()
    alice.by("confirm-ok").click()
    expect(dialog).to_be_hidden()
    expect(bob.by("archived-banner")).to_be_visible(timeout=LIVE_TIMEOUT_MS)
    expect(bob.by("composer")).to_be_hidden()
    expect(system_line(bob, "Alice Archer archived the channel")).to_be_visible()
    expect(bob.chat_item(channel)).to_have_attribute("data-archived", "true")
    # Listed last among the channels.
    expect(bob.by("channel-list").locator('[data-testid="chat-item"]').last).to_have_attribute("data-chat-id", channel)
    bob.screenshot("16-admin-archived")

    # A direct chat shows no role badges, and offers no settings.
    alice.open_chat_named("Bob Babbage")
    expect(alice.by("channel-settings-button")).to_be_hidden()
    expect(alice.by("members-panel").locator(".role")).to_have_count(0)
    alice.screenshot("16-admin-direct-no-roles")
    for page in (alice, bob):
        page.assert_no_console_errors()


def test_owner_transfers_ownership_before_leaving(open_page, stack):
    alice_p = stack.person("Alice Archer")
    code = stack.call("GET", "/api/workspace", token=alice_p["token"])["invite_code"]
    bob_p = stack.person("Bob Babbage", invite_code=code)
    name = f"ops-{uuid.uuid4().hex[:4]}"
    stack.call("POST", "/api/chats", {"type": "private_channel", "name": name, "members": [bob_p["id"]]},
               token=alice_p["token"])
    alice = signed_in(open_page, alice_p, viewport=DESKTOP)
    alice.open_chat_named(name)
    expect(alice.by("leave-chat")).to_be_hidden()  # the owner moves the ownership first
    alice.by("channel-settings-button").click()
    dialog = alice.by("channel-dialog")
    dialog.locator(f'[data-user-id="{bob_p["id"]}"]').get_by_test_id("member-transfer").click()
    alice.by("confirm-ok").click()
    expect(dialog.locator(f'[data-testid="channel-member"][data-user-id="{bob_p["id"]}"]')).to_have_attribute("data-role", "owner")
    expect(alice.by("channel-delete")).to_be_hidden()  # only the owner deletes
    alice.screenshot("16-admin-transferred")
    alice.by("channel-close").click()
    expect(alice.by("leave-chat")).to_be_visible()
    alice.by("leave-chat").click()
    alice.by("confirm-ok").click()
    expect(alice.chat_item_named(name)).to_have_count(0, timeout=LIVE_TIMEOUT_MS)
    alice.assert_no_console_errors()
