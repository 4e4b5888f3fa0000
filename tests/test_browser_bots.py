"""Bots and incoming webhooks in the demo UI (contract section 16), in Debian's chromium: the owner creates a
bot and sees its token once, revokes it; a channel's owner adds a webhook whose URL posts into the channel."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid

import pytest
from playwright.sync_api import expect

from tests.browser_helpers import LIVE_TIMEOUT_MS, SCREENSHOTS
from tests.test_browser import browser, open_page, running_stack, signed_in  # noqa: F401 - fixtures

DESKTOP = {"width": 1280, "height": 800}


@pytest.fixture(scope="module")
def stack(tmp_path_factory, mongo_uri, nats_url, key_files):
    with running_stack(tmp_path_factory, mongo_uri, nats_url, key_files, SCREENSHOTS.parent / "logs-bots") as running:
        yield running


def _post(url: str, body: dict, token: str | None = None) -> int:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status
    except urllib.error.HTTPError as e:
        return e.code


def test_the_owner_creates_a_bot_sees_its_token_once_and_revokes_it(open_page, stack):
    ada_p = stack.person("Ada Owner")
    bob_p = stack.person("Bob Member", invite_code=stack.call("GET", "/api/workspace", token=ada_p["token"])["invite_code"])
    name = f"alerts-{uuid.uuid4().hex[:6]}"
    channel = stack.call("POST", "/api/chats", {"type": "public_channel", "name": name, "members": [bob_p["id"]]},
                         token=ada_p["token"])["id"]
    bob = signed_in(open_page, bob_p, viewport=DESKTOP)
    expect(bob.by("manage-bots")).to_be_hidden()  # only the workspace owner manages bots

    ada = signed_in(open_page, ada_p, viewport=DESKTOP)
    expect(ada.by("manage-bots")).to_be_visible()
    ada.by("manage-bots").click()
    dialog = ada.by("bots-dialog")
    expect(dialog.get_by_test_id("bots-empty")).to_be_visible()
    ada.by("bot-name").fill("Deploy Bot")
    ada.by("bot-username").fill("deployer")
    ada.by("bot-create").click()
    expect(ada.by("bot-token-reveal")).to_be_visible()
    token = ada.by("bot-token").input_value()
    assert token.count(".") == 2  # a Bearer token for both roles
    expect(dialog.get_by_test_id("bot-row")).to_have_count(1)
    expect(dialog.get_by_test_id("bot-row")).to_contain_text("@deployer")
    ada.screenshot("20-bots-token-once")
    # The token works: the bot joins the channel (added by a member) and posts; everyone sees it live.
    bot_id = dialog.get_by_test_id("bot-row").get_attribute("data-bot-id")
    stack.call("POST", f"/api/chats/{channel}/members", {"user_ids": [bot_id]}, token=bob_p["token"])
    assert _post(f"{stack.base_url}/api/chats/{channel}/messages", {"content": "deploy finished"}, token) == 201
    bob.open_chat_named(name)
    expect(bob.message_with_text("deploy finished")).to_be_visible(timeout=LIVE_TIMEOUT_MS)

    # Closed and opened again, the token is gone from the page: shown once only.
    ada.by("bots-close").click()
    ada.by("manage-bots").click()
    expect(ada.by("bot-token-reveal")).to_be_hidden()
    assert ada.by("bot-token").input_value() == ""
    dialog.get_by_test_id("bot-revoke").click()
    ada.by("confirm-ok").click()
    expect(dialog.get_by_test_id("bots-empty")).to_be_visible()
    assert _post(f"{stack.base_url}/api/chats/{channel}/messages", {"content": "after revoke"}, token) == 401

    # The channel's settings: an incoming webhook whose URL posts as its bot.
    ada.by("bots-close").click()
    ada.open_chat_named(name)
    ada.by("channel-settings-button").click()
    section = ada.by("channel-webhooks-section")
    expect(section).to_be_visible()
    ada.by("webhook-name").fill("CI")
    ada.by("webhook-create").click()
    expect(ada.by("webhook-url-reveal")).to_be_visible()
    url = ada.by("webhook-url").input_value()
    assert "/hooks/" in url
    expect(section.get_by_test_id("webhook-row")).to_have_count(1)
    # Its bot joined the channel like a person, named (not "Unknown user") in the members list.
    expect(ada.by("channel-members")).to_contain_text("CI", timeout=LIVE_TIMEOUT_MS)
    expect(ada.by("channel-members")).not_to_contain_text("Unknown user")
    ada.by("webhook-url-reveal").scroll_into_view_if_needed()
    ada.screenshot("20-incoming-webhooks")
    assert _post(url, {"content": "pipeline 12 green"}) == 201
    expect(bob.message_with_text("pipeline 12 green")).to_be_visible(timeout=LIVE_TIMEOUT_MS)
    section.get_by_test_id("webhook-delete").click()
    ada.by("confirm-ok").click()
    expect(section.get_by_test_id("webhook-row")).to_have_count(0)
    assert _post(url, {"content": "too late"}) == 404
    ada.assert_no_console_errors()
    bob.assert_no_console_errors()
