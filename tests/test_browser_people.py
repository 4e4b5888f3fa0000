"""People in the demo UI (issue 16), in Debian's chromium against the api and notify roles: pictures on
messages following user.updated, the profile card and its "Message" button, one's own settings, and
validation sentences a person can act on."""

from __future__ import annotations

import io
import re
import uuid

import pytest
from PIL import Image
from playwright.sync_api import expect

from tests.browser_helpers import LIVE_TIMEOUT_MS, SCREENSHOTS, UserPage
from tests.test_browser import PASSWORD, browser, open_page, running_stack  # noqa: F401 - fixtures

DESKTOP = {"width": 1280, "height": 800}


@pytest.fixture(scope="module")
def stack(tmp_path_factory, mongo_uri, nats_url, key_files):
    with running_stack(tmp_path_factory, mongo_uri, nats_url, key_files, SCREENSHOTS.parent / "logs-people") as running:
        yield running


def signed_in(open_page, person: dict) -> UserPage:
    page = open_page(viewport=DESKTOP)
    page.goto()
    page.sign_in(person["email"], PASSWORD)
    expect(page.by("current-user")).to_have_text(person["fullname"])
    return page


def picture(color: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    image = Image.new("RGB", (320, 240), color)
    for x in range(100, 220):  # a pale square in the middle, so the crop is visible in a screenshot
        for y in range(80, 160):
            image.putpixel((x, y), (255, 240, 200))
    image.save(out, format="PNG")
    return out.getvalue()


def avatar_img(page: UserPage, message_text: str):
    return page.message_with_text(message_text).locator(".avatar [data-testid=avatar-img]")


def test_bob_changes_his_picture_and_alice_sees_it_on_his_messages(open_page, stack):
    alice = stack.person("Alice Archer")
    code = stack.call("GET", "/api/workspace", token=alice["token"])["invite_code"]
    bob = stack.person("Bob Babbage", invite_code=code)
    carol = stack.person("Carol Cole", invite_code=code)
    group = stack.call("POST", "/api/chats", {"type": "group", "name": "Launch", "members": [bob["id"], carol["id"]]},
                       token=alice["token"])
    stack.call("POST", f"/api/chats/{group['id']}/messages", {"content": "Morning! The build is green."}, token=bob["token"])
    stack.call("POST", f"/api/chats/{group['id']}/messages", {"content": "Shipping at noon."}, token=carol["token"])

    alice_page, bob_page = signed_in(open_page, alice), signed_in(open_page, bob)
    alice_page.open_chat_named("Launch")
    before = avatar_img(alice_page, "Morning! The build is green.")
    expect(before).to_have_attribute("src", re.compile(rf"/api/users/{bob['id']}/avatar\?v=i"))
    # The initials picture, drawn by the server, loads without a token (an <img> sends none).
    alice_page.page.wait_for_function("(img) => img.complete && img.naturalWidth > 0", arg=before.element_handle())
    alice_page.wait_live()

    bob_page.by("my-profile-button").click()
    expect(bob_page.by("my-profile-dialog")).to_be_visible()
    bob_page.by("avatar-input").set_input_files({"name": "me.png", "mimeType": "image/png", "buffer": picture((230, 90, 20))})
    expect(bob_page.by("avatar-preview")).to_have_attribute("src", re.compile(r"^blob:"))
    bob_page.by("profile-status-emoji").fill("🚀")
    bob_page.by("profile-status-text").fill("Shipping the release")
    bob_page.by("profile-timezone").select_option("Asia/Tokyo")
    bob_page.screenshot("16-people-settings")
    bob_page.by("profile-save").click()
    expect(bob_page.by("my-profile-dialog")).to_be_hidden()
    version = stack.call("GET", "/api/users/me", token=bob["token"])["avatar_url"].split("v=")[1].split("&")[0]
    assert not version.startswith("i")

    # Alice changed nothing: the user.updated event brings Bob's new picture onto his message.
    after = avatar_img(alice_page, "Morning! The build is green.")
    expect(after).to_have_attribute("src", re.compile(f"v={version}"), timeout=LIVE_TIMEOUT_MS)
    alice_page.page.wait_for_function("(img) => img.complete && img.naturalWidth > 0", arg=after.element_handle())
    # Bob's own page shows it too: the header, and his own message.
    expect(bob_page.by("me-avatar").locator("img")).to_have_attribute("src", re.compile(f"v={version}"))
    alice_page.screenshot("16-people-avatar-on-messages")

    # A click on his name opens his card: name, @username, status, local time, and a way to message him.
    alice_page.message_with_text("Morning! The build is green.").get_by_test_id("message-author").click()
    card = alice_page.by("profile-card")
    expect(card).to_be_visible()
    expect(alice_page.by("profile-card-name")).to_have_text("Bob Babbage")
    expect(alice_page.by("profile-card-username")).to_have_text(re.compile(r"^@bob"))
    expect(alice_page.by("profile-card-status")).to_have_text("🚀 Shipping the release")
    expect(alice_page.by("profile-card-time")).to_have_text(re.compile(r"\d.*local time · \d+(\.5)? hours (ahead|behind)$"))
    expect(alice_page.by("profile-card-avatar")).to_have_attribute("src", re.compile(f"v={version}.*size=256"))
    alice_page.screenshot("16-people-profile-card")
    alice_page.page.keyboard.press("Escape")
    expect(card).to_be_hidden()

    # Carol's picture opens her card; "Message" opens a direct chat with her, made on the spot.
    alice_page.message_with_text("Shipping at noon.").locator(".avatar").click()
    expect(alice_page.by("profile-card-name")).to_have_text("Carol Cole")
    alice_page.by("profile-card-message").click()
    expect(card).to_be_hidden()
    expect(alice_page.by("chat-title")).to_have_text("Carol Cole")
    expect(alice_page.page.locator('[data-testid=chat-item][data-chat-type=direct] [data-testid=avatar-img]')).to_have_count(1)
    for page in (alice_page, bob_page):
        page.assert_no_console_errors()


def test_a_too_short_password_says_so_in_one_plain_sentence(open_page, stack):
    page = open_page(viewport=DESKTOP)
    page.goto()
    page.by("tab-signup").click()
    page.by("signup-fullname").fill("Dora Short")
    page.by("signup-email").fill(f"dora.{uuid.uuid4().hex[:8]}@example.com")
    page.by("signup-password").fill("short")
    page.by("signup-workspace").fill(f"Short {uuid.uuid4().hex[:6]}")
    page.by("signup-submit").click()
    expect(page.by("signup-error")).to_have_text("Password must be at least 8 characters")
    expect(page.by("signup-error").get_by_test_id("form-error-line")).to_have_count(1)
    page.screenshot("16-people-short-password-signup")

    person = stack.person("Erin Example")
    erin = signed_in(open_page, person)
    erin.by("my-profile-button").click()
    erin.by("settings-tab-account").click()
    erin.by("password-current").fill(PASSWORD)
    erin.by("password-new").fill("tiny")
    erin.by("password-submit").click()
    expect(erin.by("password-error")).to_have_text("New password must be at least 8 characters")
    erin.screenshot("16-people-short-password-settings")
    erin.by("settings-tab-profile").click()
    erin.by("profile-username").fill("not valid!")
    erin.by("profile-save").click()
    expect(erin.by("profile-error")).to_have_text("Username may only use letters, digits, '.', '_' and '-'")
    erin.screenshot("16-people-username-refused")

    # A good one changes it, and this tab stays signed in (its session was the one kept).
    erin.by("settings-tab-account").click()
    erin.by("password-new").fill("a much longer password")
    erin.by("password-submit").click()
    expect(erin.by("password-ok")).to_contain_text("Password changed")
    erin.by("my-profile-close").click()
    erin.page.reload()
    erin.wait_signed_in()
    expect(erin.by("current-user")).to_have_text("Erin Example")
    # The refusals above were answered 422 on purpose: Chromium logs each such response.
    assert [e for e in erin.errors + page.errors if "status of 422" not in e] == []
