"""Mentions in the demo UI (issue 14), in Debian's chromium against the api and notify roles: the "@" list,
highlighted mentions, the mention badge and tab title, browser notifications per chat level, the
settings menu, the "New messages" line with its pills, date separators and several typers."""

from __future__ import annotations

import re
import uuid

import pytest
from playwright.sync_api import expect

from tests.browser_helpers import LIVE_TIMEOUT_MS, SCREENSHOTS, UserPage
from tests.test_browser import PASSWORD, PHONE, assert_fits, browser, open_page, running_stack  # noqa: F401 - fixtures

DESKTOP = {"width": 1280, "height": 800}

# Every Notification the page constructs, in window.notifications; the real one is still made when the
# browser can, and the last one is kept so a test can click it.
RECORD_NOTIFICATIONS = """
(() => {
  const Real = window.Notification;
  if (typeof Real !== "function") return;
  window.notifications = [];
  function Recorded(title, options = {}) {
    window.notifications.push({ title, body: options.body || "", tag: options.tag || "" });
    let made = null;
    try { made = new Real(title, options); } catch (e) { made = null; }
    const target = made || Object.assign(new EventTarget(), { close() {} });
    window.lastNotification = target;
    return target;
  }
  Object.defineProperty(Recorded, "permission", { get: () => Real.permission, configurable: true });
  Recorded.requestPermission = (...args) => Real.requestPermission(...args);
  window.Notification = Recorded;
})();
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory, mongo_uri, nats_url, key_files):
    with running_stack(tmp_path_factory, mongo_uri, nats_url, key_files, SCREENSHOTS.parent / "logs-mentions") as running:
        yield running


def trio(stack) -> tuple[dict, dict, dict]:
    """Alice (the owner), Bob and Carol in one new workspace."""
    alice = stack.person("Alice Archer")
    code = stack.call("GET", "/api/workspace", token=alice["token"])["invite_code"]
    return alice, stack.person("Bob Babbage", invite_code=code), stack.person("Carol Cole", invite_code=code)


def username(stack, person: dict) -> str:
    return stack.call("GET", "/api/users/me", token=person["token"])["username"]


def page_for(open_page, stack, person: dict, *, notifications: bool = False, viewport=DESKTOP, chat_id: str | None = None) -> UserPage:
    """A signed-in page (every Notification recorded); notifications: permission granted; chat_id: then
    reloaded with that chat's address, as a person coming back to it."""
    page = open_page(viewport=viewport)
    page.context.add_init_script(RECORD_NOTIFICATIONS)
    if notifications:
        page.context.grant_permissions(["notifications"], origin=stack.base_url)
    page.goto()
    page.sign_in(person["email"], PASSWORD)
    expect(page.by("current-user")).to_have_text(person["fullname"])
    if chat_id:
        # The address changes without a hashchange (nothing opens the chat before the reload).
        page.page.evaluate("(id) => history.replaceState(null, '', `/#/chat/${encodeURIComponent(id)}`)", chat_id)
        page.page.reload()
        page.wait_signed_in()
    return page


def notifications(page: UserPage) -> list[dict]:
    return page.page.evaluate("() => window.notifications || []")


def expect_notification(page: UserPage, text: str) -> dict:
    """Waits for a Notification whose body has `text`; returns it."""
    page.page.wait_for_function("(text) => (window.notifications || []).some((n) => n.body.includes(text))", arg=text,
                                timeout=LIVE_TIMEOUT_MS)
    return next(n for n in notifications(page) if text in n["body"])


def mention_badge(page: UserPage, chat_id: str):
    return page.chat_item(chat_id).get_by_test_id("mention-badge")


def post(stack, person: dict, chat_id: str, text: str) -> dict:
    return stack.call("POST", f"/api/chats/{chat_id}/messages", {"content": text}, token=person["token"])


def expect_line_above(page: UserPage, text: str):
    """The "New messages" line is the item right above the message with `text`."""
    message_id = page.message_with_text(text).get_attribute("data-message-id")
    below = page.by("unread-line").locator("xpath=following-sibling::*[1]")
    expect(below).to_have_attribute("data-message-id", message_id)


def test_mention_picked_from_the_list_badges_highlights_and_notifies(open_page, stack):
    alice_p, bob_p, carol_p = trio(stack)
    alice_name = username(stack, alice_p)
    channel_name = f"design-{uuid.uuid4().hex[:6]}"
    channel = stack.call("POST", "/api/chats", {"type": "public_channel", "name": channel_name,
                                                "members": [bob_p["id"], carol_p["id"]]}, token=alice_p["token"])["id"]
    direct = stack.call("POST", "/api/chats", {"type": "direct", "members": [bob_p["id"]]}, token=alice_p["token"])["id"]
    post(stack, alice_p, channel, "Morning! The new sidebar is up for review.")
    # Two more chats for the sidebar's other states: one unread without a mention, one muted.
    random = stack.call("POST", "/api/chats", {"type": "public_channel", "name": f"random-{uuid.uuid4().hex[:6]}",
                                               "members": [carol_p["id"]]}, token=alice_p["token"])["id"]
    post(stack, carol_p, random, "Coffee at 3?")
    quiet = stack.call("POST", "/api/chats", {"type": "private_channel", "name": f"alerts-{uuid.uuid4().hex[:6]}",
                                              "members": [bob_p["id"]]}, token=alice_p["token"])["id"]
    stack.call("PATCH", f"/api/chats/{quiet}/settings", {"muted": True}, token=alice_p["token"])
    for text in ("Build 812 passed", "Build 813 passed"):
        post(stack, bob_p, quiet, text)

    alice = page_for(open_page, stack, alice_p, notifications=True)
    bob = page_for(open_page, stack, bob_p)
    # Alice reads her direct chat with Bob, not the channel.
    alice.open_chat_named("Bob Babbage")
    # Bob has not allowed notifications: the sidebar offers them; Alice has, so hers does not.
    expect(bob.by("enable-notifications")).to_be_visible()
    expect(alice.by("notify-prompt")).to_be_hidden()
    bob.open_chat_named(channel_name)
    expect(bob.message_with_text("Morning! The new sidebar is up for review.")).to_be_visible()

    box, options = bob.by("message-input"), bob.by("mention-options")
    box.press_sequentially("Looks good, ")
    box.press_sequentially("@")
    # "@" alone offers every other member (Bob himself is not offered), then @channel and @here.
    expect(options).to_be_visible()
    option_names = options.get_by_test_id("mention-option")
    expect(option_names).to_have_count(4)
    expect(option_names.nth(0)).to_contain_text("Alice Archer")
    expect(option_names.nth(1)).to_contain_text("Carol Cole")
    expect(option_names.nth(2)).to_contain_text("@channel")
    expect(option_names.nth(0)).to_have_attribute("aria-selected", "true")
    bob.screenshot("14-autocomplete")
    # Arrows move the choice, and the box says which option is active.
    box.press("ArrowDown")
    expect(option_names.nth(1)).to_have_attribute("aria-selected", "true")
    expect(box).to_have_attribute("aria-activedescendant", option_names.nth(1).get_attribute("id"))
    box.press("ArrowUp")
    expect(option_names.nth(0)).to_have_attribute("aria-selected", "true")
    # Escape closes it and leaves the text alone; typing on opens it again.
    box.press("Escape")
    expect(options).to_be_hidden()
    expect(box).to_have_value("Looks good, @")
    box.press("Backspace")
    box.press_sequentially("@al")
    expect(option_names).to_have_count(1)
    alice_option = options.locator(f'[data-testid="mention-option"][data-user-id="{alice_p["id"]}"]')
    expect(alice_option).to_contain_text(f"@{alice_name}")
    box.press("Enter")
    expect(options).to_be_hidden()
    expect(box).to_have_value(f"Looks good, @{alice_name} ")
    box.press_sequentially("can you ship it today?")
    box.press("Enter")
    sent = f"Looks good, @{alice_name} can you ship it today?"
    expect(bob.message_with_text(sent)).to_have_count(1)
    expect(box).to_have_value("")

    # Alice, in her other chat: a mention badge on the channel, the tab title counts it, and a notification.
    badge = mention_badge(alice, channel)
    expect(badge).to_have_text("1", timeout=LIVE_TIMEOUT_MS)
    expect(alice.chat_item(channel)).to_have_attribute("data-mentions", "1")
    expect(alice.unread_badge(channel)).to_have_count(0)  # the mention badge stands in for it
    expect(alice.page).to_have_title("(1) Fechatter")
    shown = expect_notification(alice, "can you ship it today?")
    assert shown["title"] == f"Bob Babbage in #{channel_name}", shown
    # A message without a mention: the plain unread count, quieter, and no mention badge.
    post(stack, bob_p, direct, "Lunch later?")
    expect(alice.message_with_text("Lunch later?")).to_be_visible(timeout=LIVE_TIMEOUT_MS)
    post(stack, carol_p, channel, "I'll test it on my phone.")
    expect(alice.chat_item(channel)).to_have_attribute("data-unread", "2", timeout=LIVE_TIMEOUT_MS)
    expect(badge).to_have_text("1")
    expect(alice.unread_badge(random)).to_have_text("1")
    expect(mention_badge(alice, random)).to_have_count(0)
    # The muted chat counts, but quietly: dimmed, a muted mark, no badge.
    muted_item = alice.chat_item(quiet)
    expect(muted_item).to_have_attribute("data-unread", "2")
    expect(muted_item).to_have_class(re.compile(r"\bmuted\b"))
    expect(muted_item.locator(".badge")).to_have_count(0)
    alice.screenshot("14-badges")

    # Opening the channel: the mention is highlighted (her own name, stronger), the badge and title clear.
    alice.chat_item(channel).click()
    message = alice.message_with_text(sent)
    expect(message).to_have_attribute("data-mentions-me", "true")
    mention = message.get_by_test_id("mention")
    expect(mention).to_have_text(f"@{alice_name}")
    expect(mention).to_have_attribute("data-me", "true")
    expect(badge).to_have_count(0)
    expect(alice.page).to_have_title("* Fechatter")  # the other channel is still unread
    # Someone else's mention is highlighted too, without the stronger style.
    post(stack, bob_p, channel, f"@{username(stack, carol_p)} and @{alice_name}: standup in 5.")
    other = alice.message_with_text(f"@{username(stack, carol_p)} and @{alice_name}: standup in 5.")
    expect(other.get_by_test_id("mention")).to_have_count(2, timeout=LIVE_TIMEOUT_MS)
    expect(other.locator('[data-testid="mention"]:not([data-me])')).to_have_text(f"@{username(stack, carol_p)}")
    alice.screenshot("14-mention-highlight")
    # Reading it in view: no notification for the open chat.
    assert not any("standup" in n["body"] for n in notifications(alice))

    # Several typers at once.
    carol = page_for(open_page, stack, carol_p)
    carol.open_chat_named(channel_name)
    bob.by("message-input").press_sequentially("typing along", delay=20)
    carol.by("message-input").press_sequentially("me too", delay=20)
    expect(alice.by("typing-indicator")).to_have_text(re.compile(r"^(Bob and Carol|Carol and Bob) are typing…$"),
                                                      timeout=LIVE_TIMEOUT_MS)

    # A notification for a chat that is not open, clicked: that chat opens.
    alice.open_chat_named("Bob Babbage")
    post(stack, bob_p, channel, f"@{alice_name} one more thing")
    expect_notification(alice, "one more thing")
    alice.page.evaluate("() => window.lastNotification.dispatchEvent(new Event('click'))")
    expect(alice.by("chat-title")).to_have_attribute("data-chat-id", channel)
    expect(alice.message_with_text(f"@{alice_name} one more thing")).to_be_visible()
    for page in (alice, bob, carol):
        page.assert_no_console_errors()


def test_settings_menu_levels_and_mute_decide_what_notifies(open_page, stack):
    alice_p, bob_p, carol_p = trio(stack)
    alice_name = username(stack, alice_p)
    channel_name = f"launch-{uuid.uuid4().hex[:6]}"
    channel = stack.call("POST", "/api/chats", {"type": "public_channel", "name": channel_name,
                                                "members": [bob_p["id"]]}, token=alice_p["token"])["id"]
    stack.call("POST", "/api/chats", {"type": "direct", "members": [bob_p["id"]]}, token=alice_p["token"])
    # Carol's direct chat notifies everything (the default) and is never open: what it rings proves the
    # stream has brought everything before it.
    carol_direct = stack.call("POST", "/api/chats", {"type": "direct", "members": [carol_p["id"]]}, token=alice_p["token"])["id"]
    alice = page_for(open_page, stack, alice_p, notifications=True)
    other_tab = page_for(open_page, stack, alice_p)

    alice.open_chat_named(channel_name)
    button, menu = alice.by("chat-settings-button"), alice.by("chat-settings-menu")
    expect(button).to_have_attribute("data-notify", "all")
    button.click()
    expect(menu).to_be_visible()
    expect(button).to_have_attribute("aria-expanded", "true")
    # The menu has the focus on the current level; arrows move it, Escape closes it back to the button.
    expect(alice.by("notify-all")).to_be_focused()
    expect(alice.by("notify-all")).to_have_attribute("aria-checked", "true")
    alice.page.keyboard.press("ArrowDown")
    expect(alice.by("notify-mentions")).to_be_focused()
    alice.screenshot("14-settings-menu")
    alice.page.keyboard.press("Escape")
    expect(menu).to_be_hidden()
    expect(button).to_be_focused()

    # "Nothing": saved for her, followed by her other tab, and no notification for a mention there.
    button.click()
    alice.by("notify-none").click()
    expect(menu).to_be_hidden()
    expect(button).to_have_attribute("data-notify", "none")
    expect(other_tab.chat_item(channel)).to_have_attribute("data-notify", "none", timeout=LIVE_TIMEOUT_MS)
    summary = next(c for c in stack.call("GET", "/api/chats", token=alice_p["token"]) if c["id"] == channel)
    assert summary["notify"] == "none" and summary["muted"] is False, summary

    alice.open_chat_named("Bob Babbage")
    post(stack, bob_p, channel, f"@{alice_name} silent ping")
    # It still counts as a mention…
    expect(mention_badge(alice, channel)).to_have_text("1", timeout=LIVE_TIMEOUT_MS)
    # …but rings nothing: a later message in a chat that notifies everything shows, that one never did.
    post(stack, bob_p, channel, "Anyone around?")
    post(stack, carol_p, carol_direct, "ping in the direct chat")
    expect_notification(alice, "ping in the direct chat")
    assert not any("silent ping" in n["body"] or "Anyone around" in n["body"] for n in notifications(alice)), notifications(alice)

    # "Mentions only": a mention notifies, a plain message does not.
    alice.open_chat_named(channel_name)
    button.click()
    alice.by("notify-mentions").click()
    expect(button).to_have_attribute("data-notify", "mentions")
    alice.open_chat_named("Bob Babbage")
    post(stack, bob_p, channel, "plain chatter")
    post(stack, bob_p, channel, f"@{alice_name} wake up")
    shown = expect_notification(alice, "wake up")
    assert shown["title"] == f"Bob Babbage in #{channel_name}", shown
    assert not any("plain chatter" in n["body"] for n in notifications(alice))

    # Muted: quiet in the sidebar (no unread count, but still counted), never notified, in both tabs.
    alice.open_chat_named(channel_name)
    button.click()
    alice.by("mute-toggle").click()
    expect(button).to_have_attribute("data-muted", "true")
    expect(other_tab.chat_item(channel)).to_have_attribute("data-muted", "true", timeout=LIVE_TIMEOUT_MS)
    alice.open_chat_named("Bob Babbage")
    post(stack, bob_p, channel, "muted chatter")
    post(stack, bob_p, channel, f"@{alice_name} muted mention")
    item = alice.chat_item(channel)
    expect(item).to_have_attribute("data-unread", "2", timeout=LIVE_TIMEOUT_MS)
    expect(item).to_have_class(re.compile(r"\bmuted\b"))
    expect(item.get_by_test_id("muted-icon")).to_be_visible()
    expect(alice.unread_badge(channel)).to_have_count(0)
    post(stack, carol_p, carol_direct, "second direct ping")
    expect_notification(alice, "second direct ping")
    assert not any("muted" in n["body"] for n in notifications(alice)), notifications(alice)
    for page in (alice, other_tab):
        page.assert_no_console_errors()


def test_new_messages_line_after_a_reload_jump_pills_and_dates(open_page, stack):
    alice_p, bob_p, carol_p = trio(stack)
    # A group whose first unread message is on the third page (50 a page) back from the newest, and a
    # direct chat with a few unread of its own.
    group = stack.call("POST", "/api/chats", {"type": "group", "members": [bob_p["id"], carol_p["id"]]},
                       token=alice_p["token"])["id"]
    direct = stack.call("POST", "/api/chats", {"type": "direct", "members": [carol_p["id"]]}, token=alice_p["token"])["id"]
    for i in range(1, 11):
        post(stack, bob_p, group, f"earlier note {i}")
    # Alice's reply moves her read mark to it (posting marks the chat read).
    post(stack, alice_p, group, "Thanks, I'll read the rest later.")
    # Bob and Carol take turns, five each (the rate limit is 120 messages a minute per sender).
    unread = 110
    for i in range(1, unread + 1):
        post(stack, bob_p if (i - 1) // 5 % 2 == 0 else carol_p, group, f"unread note {i}")
    for i in range(1, 4):
        post(stack, carol_p, direct, f"carol ping {i}")

    # She comes back to the group by its address, after a reload.
    alice = page_for(open_page, stack, alice_p, chat_id=group)
    expect(alice.by("chat-title")).to_have_attribute("data-chat-id", group)
    line = alice.by("unread-line")
    expect(line).to_have_count(1)
    expect(line).to_have_text("New messages")
    # Right above the first unread message (older pages loaded to reach it), on screen, with her own
    # reply above it; the newest ones are below the fold.
    expect_line_above(alice, "unread note 1")
    expect(line).to_be_in_viewport()
    expect(alice.message_with_text("Thanks, I'll read the rest later.")).to_be_in_viewport()
    expect(alice.message_with_text(f"unread note {unread}")).not_to_be_in_viewport()
    expect(alice.by("jump-unread")).to_be_hidden()
    # One date separator for today's messages.
    expect(alice.by("day-separator")).to_have_text(["Today"])
    # Opening it read it: the badge is gone, the line stays while she is in the chat. The direct chat
    # is still unread: a red count, as a mention's, and the tab title counts it.
    expect(alice.chat_item(group)).to_have_attribute("data-unread", "0")
    expect(alice.chat_item(direct)).to_have_attribute("data-unread", "3")
    expect(alice.unread_badge(direct)).to_have_class(re.compile(r"\bdirect-badge\b"))
    expect(alice.page).to_have_title("(3) Fechatter")
    expect(line).to_be_visible()
    alice.screenshot("14-new-messages-line")

    # Scrolled to the end, the line is above: "Jump to first unread" brings it back.
    scroller = alice.by("message-scroller")
    scroller.evaluate("(el) => { el.scrollTop = el.scrollHeight; }")
    expect(alice.by("jump-unread")).to_be_visible()
    alice.by("jump-unread").click()
    expect(line).to_be_in_viewport()
    expect(alice.by("jump-unread")).to_be_hidden()
    # Scrolled up, a new message shows "New messages below"; it takes her down.
    scroller.evaluate("(el) => { el.scrollTop = 0; }")
    post(stack, bob_p, group, "brand new note")
    expect(alice.by("new-below")).to_be_visible(timeout=LIVE_TIMEOUT_MS)
    expect(alice.message_with_text("brand new note")).not_to_be_in_viewport()
    alice.by("new-below").click()
    expect(alice.message_with_text("brand new note")).to_be_in_viewport()
    expect(alice.by("new-below")).to_be_hidden()

    # The direct chat has a line of its own, above its first unread message; back in the group, read
    # by now, there is none.
    alice.chat_item(direct).click()
    expect(alice.by("chat-title")).to_have_attribute("data-chat-id", direct)
    expect_line_above(alice, "carol ping 1")
    expect(alice.chat_item(direct)).to_have_attribute("data-unread", "0")
    expect(alice.page).to_have_title("Fechatter")
    alice.chat_item(group).click()
    expect(alice.by("chat-title")).to_have_attribute("data-chat-id", group)
    expect(alice.message_with_text("brand new note")).to_be_in_viewport()
    expect(alice.by("unread-line")).to_have_count(0)

    # Read now: after a reload there is no line.
    expect(alice.chat_item(group)).to_have_attribute("data-unread", "0")
    alice.page.reload()
    alice.wait_signed_in()
    expect(alice.message_with_text("brand new note")).to_be_in_viewport()
    expect(alice.by("unread-line")).to_have_count(0)

    # Date labels and the page's one time format come from the locale (Intl).
    labels = alice.page.evaluate("""async () => {
        const ui = await import("/static/ui.js");
        const now = new Date(2026, 10, 22, 15, 4);
        const at = (d, hour = 9) => new Date(2026, 10, d, hour, 30).toISOString();
        return [ui.dayLabel(at(22), now), ui.dayLabel(at(21), now), ui.dayLabel(at(3), now),
                ui.dayLabel(new Date(2025, 0, 5, 12).toISOString(), now), ui.formatTime(at(22)), ui.formatTime(at(22, 21))];
    }""")
    # The browser's locale is en-US: a 12-hour clock (ICU puts a narrow no-break space before "AM").
    *days, morning, evening = labels
    assert days == ["Today", "Yesterday", "Tuesday, November 3", "Sunday, January 5, 2025"], labels
    assert re.fullmatch(r"9:30\sAM", morning) and re.fullmatch(r"9:30\sPM", evening), labels

    # On a phone: the line after a reload fits the narrow screen too (the desktop page, gone, reads nothing).
    alice.assert_no_console_errors()
    alice.close()
    for i in range(1, 6):
        post(stack, bob_p, group, f"phone note {i}")
    phone = page_for(open_page, stack, alice_p, viewport=PHONE, chat_id=group)
    expect(phone.by("unread-line")).to_be_in_viewport()
    expect_line_above(phone, "phone note 1")
    phone.screenshot("14-phone-new-messages-line")
    assert_fits(phone)
    phone.assert_no_console_errors()


def test_enable_notifications_from_the_sidebar(open_page, stack):
    alice_p, _bob_p, _carol_p = trio(stack)
    alice = page_for(open_page, stack, alice_p)
    expect(alice.by("notify-prompt")).to_be_visible()
    # The browser's own question, answered "Allow"; the page must ask from the click (a user gesture).
    alice.page.evaluate("""() => {
        let state = "default";
        Object.defineProperty(window.Notification, "permission", { get: () => state, configurable: true });
        window.Notification.requestPermission = async () => {
            window.askedFromGesture = navigator.userActivation.isActive;
            state = "granted";
            return state;
        };
    }""")
    alice.by("enable-notifications").click()
    expect(alice.by("notify-prompt")).to_be_hidden()
    assert alice.page.evaluate("() => window.askedFromGesture") is True
    alice.assert_no_console_errors()
