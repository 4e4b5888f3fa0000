"""The demo UI in Debian's chromium: two people in two browser contexts against the api and notify roles run as processes."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import shutil
import signal
import time
import urllib.error
import urllib.request
import uuid
from urllib.parse import parse_qs, urlsplit
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

from app.processes import free_port
from tests.browser_helpers import LIVE_TIMEOUT_MS, SCREENSHOTS, UserPage, launch
from tests.conftest import make_test_config
from tests.processes import RoleProcess

PASSWORD = "correct horse battery"
PHONE = {"width": 375, "height": 740}
START_TIMEOUT = 30.0
# The token test's access-token lifetime: the page refreshes a quarter of it (2 s) before expiry.
SHORT_TOKEN_TTL = 8


class Stack:
    """The api and notify roles as two processes on this module's database and stream."""

    def __init__(self, config, log_dir: Path, **env: str):
        self.config = config
        api_port, notify_port = free_port(), free_port()
        api_url, notify_url = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{notify_port}"
        # The demo runs with its rate limits on, as deployed.
        options = {"FECHATTER_LIMITS_ENABLED": "true", **env}
        # The page finds notify through the api's config, and notify lets the page's origin in (CORS).
        self.api = RoleProcess("api", config, port=api_port, log_path=log_dir / "api.log",
                               FECHATTER_API_PUBLIC_NOTIFY_URL=notify_url, **options)
        self.notify = RoleProcess("notify", config, port=notify_port, log_path=log_dir / "notify.log",
                                  FECHATTER_NOTIFY_CORS_ORIGINS=api_url, **options)

    @property
    def base_url(self) -> str:
        return self.api.url

    def call(self, method: str, path: str, body=None, token: str | None = None):
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        data = json.dumps(body).encode() if body is not None else (b"" if method == "POST" else None)
        request = urllib.request.Request(self.api.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=10) as reply:
                text = reply.read()
        except urllib.error.HTTPError as e:
            raise AssertionError(f"{method} {path}: {e.code} {e.read()!r}") from None
        return json.loads(text) if text else None

    def person(self, fullname: str, *, workspace: str | None = None, invite_code: str | None = None) -> dict:
        """A user made over the API (the sign-up form is tested once, in its own test)."""
        body = {"fullname": fullname, "email": f"{fullname.split()[0].lower()}.{uuid.uuid4().hex[:8]}@example.com",
                "password": PASSWORD}
        if invite_code:
            body["invite_code"] = invite_code
        else:
            body["workspace"] = workspace or f"Workspace {uuid.uuid4().hex[:8]}"
        answer = self.call("POST", "/api/signup", body)
        return {**answer["user"], "email": body["email"], "token": answer["access_token"], "workspace": answer["workspace"]}

    def pair(self) -> tuple[dict, dict]:
        """Two people of one new workspace: the owner and one who joined by invite code."""
        ada = self.person("Ada Lovelace")
        code = self.call("GET", "/api/workspace", token=ada["token"])["invite_code"]
        return ada, self.person("Bob Babbage", invite_code=code)


def _drop(config) -> None:
    from pymongo import MongoClient

    client = MongoClient(config.mongo.uri, serverSelectionTimeoutMS=2000)
    try:
        client.drop_database(config.mongo.database)
    finally:
        client.close()

    async def delete_stream():
        from app.events import connect_nats

        nc = await connect_nats(config.nats.url, name="fechatter-test-cleanup")
        try:
            await nc.jetstream().delete_stream(config.nats.stream)
        finally:
            await nc.close()

    # Playwright's sync API keeps an event loop on this thread while the browser is open.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, delete_stream()).result(timeout=10)


@contextlib.contextmanager
def running_stack(tmp_path_factory, mongo_uri, nats_url, key_files, log_dir: Path, **env: str):
    """A started Stack on a database and stream of its own, stopped and dropped afterwards."""
    config = make_test_config(tmp_path_factory.mktemp("browser"), mongo_uri, nats_url, key_files)
    # The roles' logs sit beside the screenshots, kept after the run for whoever reads a failure.
    shutil.rmtree(log_dir, ignore_errors=True)  # a restart appends to a role's log; a new run starts afresh
    log_dir.mkdir(parents=True)
    running = Stack(config, log_dir, **env)
    try:
        running.api.start_blocking(START_TIMEOUT)
        running.notify.start_blocking(START_TIMEOUT)
        yield running
    finally:
        codes = {role.role: role.stop() for role in (running.notify, running.api)}
        try:
            _drop(config)
        except Exception:  # noqa: BLE001 - cleanup of a shared server; the test result stands
            pass
    assert codes == {"notify": 0, "api": 0}, f"roles did not stop cleanly: {codes}\n{running.api.log_tail()}\n{running.notify.log_tail()}"


@pytest.fixture(scope="module")
def stack(tmp_path_factory, mongo_uri, nats_url, key_files):
    with running_stack(tmp_path_factory, mongo_uri, nats_url, key_files, SCREENSHOTS.parent / "logs") as running:
        yield running


@pytest.fixture
def short_token_stack(tmp_path_factory, mongo_uri, nats_url, key_files):
    """A second pair of roles whose access tokens live SHORT_TOKEN_TTL seconds."""
    with running_stack(tmp_path_factory, mongo_uri, nats_url, key_files, SCREENSHOTS.parent / "logs-short-token",
                       FECHATTER_AUTH_ACCESS_TOKEN_TTL_SECONDS=str(SHORT_TOKEN_TTL)) as running:
        yield running


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        chromium = launch(playwright)
        yield chromium
        chromium.close()


@contextlib.contextmanager
def page_opener(browser, base_url: str):
    """`open_one(viewport=None)` -> a UserPage on base_url in a context of its own, closed afterwards."""
    pages = []

    def open_one(**kwargs) -> UserPage:
        page = UserPage(browser, base_url, **kwargs)
        page.page.set_default_timeout(10_000)
        pages.append(page)
        return page

    try:
        yield open_one
    finally:
        for page in pages:
            page.close()


@pytest.fixture
def open_page(browser, stack):
    """`open_page(viewport=None)` -> a UserPage in a context of its own, closed afterwards."""
    with page_opener(browser, stack.base_url) as open_one:
        yield open_one


def signed_in(open_page, person: dict, **kwargs) -> UserPage:
    page = open_page(**kwargs)
    page.goto()
    page.sign_in(person["email"], PASSWORD)
    expect(page.by("current-user")).to_have_text(person["fullname"])
    return page


def test_sign_up_with_a_new_workspace_join_by_invite_link_and_sign_in(open_page, stack):
    ada, bob = open_page(), open_page()
    ada.goto()
    expect(ada.by("signin-form")).to_be_visible()
    ada.screenshot("01-sign-in")
    workspace = f"Analytical Engines {uuid.uuid4().hex[:6]}"
    ada_email = f"ada.{uuid.uuid4().hex[:8]}@example.com"
    ada.sign_up("Ada Lovelace", ada_email, PASSWORD, workspace=workspace)
    expect(ada.by("workspace-name")).to_have_text(workspace)
    expect(ada.by("current-user")).to_have_text("Ada Lovelace")
    # A new workspace is made with its #general (contract section 15), so the list is never empty.
    expect(ada.chat_item_named("general")).to_be_visible()
    expect(ada.by("chat-list-empty")).to_be_hidden()

    code, link = ada.invite()
    assert link == f"{stack.base_url}/?invite={code}"
    bob.page.goto(link)
    # The link opens the sign-up form in "join" mode with the code filled in.
    expect(bob.by("signup-form")).to_be_visible()
    expect(bob.by("signup-mode-join")).to_be_checked()
    expect(bob.by("signup-invite-code")).to_have_value(code)
    bob_email = f"bob.{uuid.uuid4().hex[:8]}@example.com"
    bob.by("signup-fullname").fill("Bob Babbage")
    bob.by("signup-email").fill(bob_email)
    bob.by("signup-password").fill(PASSWORD)
    bob.screenshot("02-sign-up-by-invite-link")
    bob.by("signup-submit").click()
    bob.wait_signed_in()
    expect(bob.by("workspace-name")).to_have_text(workspace)
    # Only the owner gets the invite button; the ?invite= query is gone from the address.
    expect(bob.by("invite-people")).to_be_hidden()
    assert "invite=" not in bob.page.url

    bob.sign_out()
    bob.by("signin-email").fill(bob_email)
    bob.by("signin-password").fill("not the password")
    bob.by("signin-submit").click()
    expect(bob.by("signin-error")).not_to_be_empty()
    expect(bob.by("app-view")).to_be_hidden()
    # Chromium logs the API's 401 answer itself; that one line is expected, nothing else.
    assert [e for e in bob.errors if "401" in e] == bob.errors and len(bob.errors) == 1, bob.errors
    bob.errors.clear()
    bob.sign_in(bob_email, PASSWORD)
    expect(bob.by("current-user")).to_have_text("Bob Babbage")
    # A reload keeps the session.
    bob.page.reload()
    bob.wait_signed_in()
    expect(bob.by("current-user")).to_have_text("Bob Babbage")
    # Bob is offered to Ada as someone to message.
    ada.by("new-direct").click()
    expect(ada.page.locator('[data-testid="user-option"]').filter(has_text="Bob Babbage")).to_be_visible()
    ada.page.keyboard.press("Escape")
    for page in (ada, bob):
        page.assert_no_console_errors()


def test_live_messages_typing_presence_edit_delete_and_unread(open_page, stack):
    ada_person, bob_person = stack.pair()
    ada, bob = signed_in(open_page, ada_person), signed_in(open_page, bob_person)

    direct = ada.new_chat("direct", ["Bob Babbage"])
    expect(ada.by("chat-title")).to_have_text("Bob Babbage")
    # The new chat reaches Bob live, titled with the other person's name.
    assert bob.open_chat_named("Ada Lovelace") == direct
    # Presence: Bob holds a stream, so Ada sees him online, in the sidebar and in the members panel.
    expect(ada.chat_item(direct).get_by_test_id("presence-dot")).to_have_attribute("data-status", "online", timeout=LIVE_TIMEOUT_MS)
    expect(ada.by("online-members").get_by_text("Bob Babbage")).to_be_visible()

    ada.send("Hello Bob, the engine runs!")
    expect(bob.message_with_text("Hello Bob, the engine runs!")).to_have_count(1, timeout=LIVE_TIMEOUT_MS)
    bob.send("Splendid. Send me the tables.")
    expect(ada.message_with_text("Splendid. Send me the tables.")).to_have_count(1, timeout=LIVE_TIMEOUT_MS)
    expect(ada.message_with_text("Hello Bob, the engine runs!")).to_have_count(1)
    expect(ada.messages()).to_have_count(2)
    expect(bob.messages()).to_have_count(2)

    # Typing: Bob types without sending; Ada sees it; his message then clears it.
    bob.by("message-input").press_sequentially("Working on", delay=20)
    expect(ada.by("typing-indicator")).to_have_text("Bob is typing…", timeout=LIVE_TIMEOUT_MS)
    ada.screenshot("04-typing-and-presence")
    bob.by("message-input").press_sequentially(" it now", delay=10)
    bob.by("message-input").press("Enter")
    expect(ada.message_with_text("Working on it now")).to_have_count(1, timeout=LIVE_TIMEOUT_MS)
    expect(ada.by("typing-indicator")).to_have_text("")
    bob.screenshot("03-chat-live-messages")

    # An edit and a delete by Ada reach Bob.
    ada.edit_message("Hello Bob, the engine runs!", "Hello Bob, the engine really runs!")
    edited = bob.message_with_text("Hello Bob, the engine really runs!")
    expect(edited).to_have_count(1, timeout=LIVE_TIMEOUT_MS)
    expect(edited.get_by_test_id("message-edited")).to_be_visible()
    expect(bob.message_with_text("Hello Bob, the engine runs!")).to_have_count(0)
    message_id = edited.get_attribute("data-message-id")
    ada.delete_message("Hello Bob, the engine really runs!")
    tombstone = bob.message_by_id(message_id)
    expect(tombstone).to_have_attribute("data-deleted", "true", timeout=LIVE_TIMEOUT_MS)
    expect(tombstone.get_by_test_id("message-content")).to_have_text("message deleted")
    expect(ada.message_by_id(message_id)).to_have_attribute("data-deleted", "true")
    expect(bob.messages()).to_have_count(3)

    # Unread: Ada posts in a new channel while Bob reads the direct chat; his badge counts, then clears.
    channel_name = f"engine-{uuid.uuid4().hex[:6]}"
    channel = ada.new_chat("public_channel", ["Bob Babbage"], name=channel_name)
    ada.send("Tables are in.")
    badge = bob.unread_badge(channel)
    expect(badge).to_have_text("1", timeout=LIVE_TIMEOUT_MS)
    ada.send("And the punched cards.")
    expect(badge).to_have_text("2", timeout=LIVE_TIMEOUT_MS)
    expect(bob.unread_badge(direct)).to_have_count(0)
    # Most recent activity first.
    expect(bob.by("chat-item").first).to_have_attribute("data-chat-id", channel)
    bob.chat_item(channel).click()
    expect(bob.by("chat-title")).to_have_text(f"# {channel_name}")
    expect(bob.message_with_text("And the punched cards.")).to_be_visible()
    expect(badge).to_have_count(0)
    # The read mark reached the server: a reload shows no badge either.
    bob.page.reload()
    bob.wait_signed_in()
    expect(bob.chat_item(channel)).to_be_visible()
    expect(bob.chat_item(channel)).to_have_attribute("data-unread", "0")
    expect(bob.unread_badge(channel)).to_have_count(0)
    # Bob is reading the channel, so Ada's next message there never raises his badge.
    ada.send("Reading along?")
    expect(bob.message_with_text("Reading along?")).to_be_visible(timeout=LIVE_TIMEOUT_MS)
    expect(bob.unread_badge(channel)).to_have_count(0)

    # Presence goes offline when Bob signs out and comes back when he signs in.
    bob.sign_out()
    dot = ada.chat_item(direct).get_by_test_id("presence-dot")
    expect(dot).to_have_attribute("data-status", "offline", timeout=LIVE_TIMEOUT_MS)
    bob.sign_in(bob_person["email"], PASSWORD)
    expect(dot).to_have_attribute("data-status", "online", timeout=LIVE_TIMEOUT_MS)
    for page in (ada, bob):
        page.assert_no_console_errors()


def test_phone_width(open_page, stack):
    ada_person, bob_person = stack.pair()
    chat = stack.call("POST", "/api/chats", {"type": "direct", "members": [bob_person["id"]]}, token=ada_person["token"])
    for text in ("Are you on the train?", "Yes, reading the notes on my phone."):
        stack.call("POST", f"/api/chats/{chat['id']}/messages", {"content": text}, token=ada_person["token"])

    phone = open_page(viewport=PHONE)
    phone.goto()
    expect(phone.by("signin-form")).to_be_visible()
    phone.screenshot("05-phone-sign-in")
    assert_fits(phone)
    phone.sign_in(bob_person["email"], PASSWORD)
    # One pane at a time: the chat list first, with the unread badge.
    expect(phone.unread_badge(chat["id"])).to_have_text("2")
    expect(phone.by("chat-pane")).to_be_hidden()
    phone.screenshot("06-phone-chat-list")
    assert_fits(phone)
    phone.open_chat_named("Ada Lovelace")
    expect(phone.by("chat-list")).to_be_hidden()
    expect(phone.message_with_text("Yes, reading the notes on my phone.")).to_be_visible()
    expect(phone.by("back-button")).to_be_visible()
    expect(phone.by("message-input")).to_be_in_viewport()
    phone.send("Reply from a narrow screen")
    expect(phone.message_with_text("Reply from a narrow screen")).to_be_visible()
    phone.screenshot("07-phone-chat")
    assert_fits(phone)
    phone.by("back-button").click()
    expect(phone.by("chat-list")).to_be_visible()
    expect(phone.unread_badge(chat["id"])).to_have_count(0)
    phone.assert_no_console_errors()


def assert_fits(page: UserPage) -> None:
    """Nothing wider than the screen: no sideways scrolling on a phone."""
    width = page.page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"page is {width}px wide on a {PHONE['width']}px screen"


def test_page_reconnects_after_notify_restarts_and_shows_a_missed_message_once(open_page, stack):
    ada_person, bob_person = stack.pair()
    ada, bob = signed_in(open_page, ada_person), signed_in(open_page, bob_person)
    chat = ada.new_chat("direct", ["Bob Babbage"])
    bob.open_chat_named("Ada Lovelace")
    streams: list[str] = []
    bob.page.on("request", lambda request: streams.append(request.url) if "/events?" in request.url else None)
    ada.send("before the restart")
    expect(bob.message_with_text("before the restart")).to_have_count(1, timeout=LIVE_TIMEOUT_MS)
    expected = 1

    for signum in (signal.SIGTERM, signal.SIGKILL):
        name = signal.Signals(signum).name
        code = stack.notify.stop(signum)
        assert code == (0 if signum == signal.SIGTERM else -signal.SIGKILL), stack.notify.log_tail()
        for page in (ada, bob):
            expect(page.by("connection-state")).to_have_attribute("data-state", "reconnecting", timeout=LIVE_TIMEOUT_MS)
        missed = f"sent while notify was down ({name})"
        ada.send(missed)
        # Ada's own page has it from the API's answer, before any stream is back.
        expect(ada.message_with_text(missed)).to_have_count(1)
        if signum == signal.SIGKILL:
            bob.screenshot("08-reconnecting")
        stack.notify.start_blocking(START_TIMEOUT)
        for page in (ada, bob):
            page.wait_live()
        expect(bob.message_with_text(missed)).to_have_count(1, timeout=LIVE_TIMEOUT_MS)
        # The page resumed from the last event it saw rather than starting a fresh stream.
        assert streams and "last_event_id=" in streams[-1], streams
        after = f"live again after {name}"
        ada.send(after)
        expect(bob.message_with_text(after)).to_have_count(1, timeout=LIVE_TIMEOUT_MS)
        expected += 2
        # Once each, in order, on both sides, after the live message proved the stream is flowing.
        for page in (ada, bob):
            expect(page.messages()).to_have_count(expected)
            expect(page.message_with_text(missed)).to_have_count(1)
        texts = bob.page.locator('[data-testid="message-list"] [data-testid="message-content"]').all_inner_texts()
        assert texts[-2:] == [missed, after]
    assert bob.chat_item(chat).get_attribute("data-unread") == "0"
    bob.screenshot("09-reconnected")
    for page in (ada, bob):
        page.assert_no_console_errors(allow_network_errors=True)


def test_browse_and_join_a_public_channel(open_page, stack):
    ada_person, bob_person = stack.pair()
    ada, bob = signed_in(open_page, ada_person), signed_in(open_page, bob_person)
    name = f"lectures-{uuid.uuid4().hex[:6]}"
    channel = ada.new_chat("public_channel", [], name=name)
    ada.send("Notes on the engine, part one.")
    expect(ada.message_with_text("Notes on the engine, part one.")).to_have_count(1)
    expect(ada.by("members-toggle")).to_have_text("Members 1")
    expect(ada.by("chat-description")).to_have_text("1 member")
    # Bob is not in it, so it is not in his sidebar; the browser lists it.
    expect(bob.chat_item(channel)).to_have_count(0)
    bob.by("browse-channels").click()
    expect(bob.by("browse-dialog")).to_be_visible()
    row = bob.page.locator(f'[data-testid="browse-item"][data-chat-id="{channel}"]')
    expect(row).to_have_count(1)
    expect(row).to_contain_text(name)
    # The browser counts a channel's members from member_count (the chat list gives channels no members).
    expect(row.get_by_test_id("browse-item-about")).to_have_text("1 member")
    bob.screenshot("10-browse-channels")
    row.get_by_test_id("browse-join-channel").click()
    expect(bob.by("browse-dialog")).to_be_hidden()
    # Joined: in his sidebar, open, with the history from before he joined, and he can write.
    expect(bob.chat_item(channel)).to_be_visible()
    expect(bob.by("chat-title")).to_have_text(f"# {name}")
    expect(bob.by("chat-title")).to_have_attribute("data-chat-id", channel)
    expect(bob.message_with_text("Notes on the engine, part one.")).to_have_count(1)
    expect(bob.by("join-banner")).to_be_hidden()
    expect(bob.by("message-input")).to_be_visible()
    expect(bob.by("chat-description")).to_have_text("2 members")
    # The owner cannot leave a chat (the server refuses), so only Bob is offered to.
    expect(bob.by("leave-chat")).to_be_visible()
    expect(ada.by("leave-chat")).to_be_hidden()
    # Ada, reading the channel, sees him join (member.joined): in the members list, online.
    expect(ada.by("online-members").get_by_text("Bob Babbage")).to_be_visible(timeout=LIVE_TIMEOUT_MS)
    expect(ada.by("members-toggle")).to_have_text("Members 2")
    expect(ada.by("chat-description")).to_have_text("2 members")
    ada.screenshot("11-member-joined")
    # The channel's next message reaches him live, once.
    ada.send("Welcome, Bob.")
    expect(bob.message_with_text("Welcome, Bob.")).to_have_count(1, timeout=LIVE_TIMEOUT_MS)
    expect(bob.messages()).to_have_count(2)
    bob.send("Glad to be here.")
    expect(ada.message_with_text("Glad to be here.")).to_have_count(1, timeout=LIVE_TIMEOUT_MS)
    # Browsing again: a member now, he is offered to open it, not to join it again.
    bob.by("browse-channels").click()
    expect(row.get_by_test_id("browse-open")).to_be_visible()
    expect(row.get_by_test_id("browse-join-channel")).to_have_count(0)
    expect(row).to_have_count(1)
    expect(row.get_by_test_id("browse-item-about")).to_have_text("2 members")
    bob.page.keyboard.press("Escape")
    expect(bob.by("browse-dialog")).to_be_hidden()
    for page in (ada, bob):
        page.assert_no_console_errors()


class Traffic:
    """What one page asked of the servers and how its connection badge moved, from the start of its session."""

    def __init__(self, page: UserPage):
        self.page = page
        self.streams: list[dict[str, str]] = []  # the query of every /events request
        self.refreshes: list[int] = []  # the status of every POST /api/refresh
        self.failures: list[str] = []  # every answer of 400 or more
        self.chat_list_loads = 0  # GET /api/chats: a resync or an unresumed reconnect reloads the list
        self.signins = 0
        page.page.on("request", self._request)
        page.page.on("response", self._response)

    def _request(self, request):
        url = urlsplit(request.url)
        if url.path == "/events":
            self.streams.append({k: v[0] for k, v in parse_qs(url.query).items()})
        elif url.path == "/api/chats" and request.method == "GET":
            self.chat_list_loads += 1
        elif url.path == "/api/signin":
            self.signins += 1

    def _response(self, response):
        path = urlsplit(response.url).path
        if path == "/api/refresh":
            self.refreshes.append(response.status)
        if response.status >= 400:
            self.failures.append(f"{response.request.method} {path}: {response.status}")

    def watch_connection_state(self):
        """Keeps every state the connection badge shows from now on in window.connectionStates."""
        self.page.page.evaluate("""() => {
            const badge = document.querySelector('[data-testid="connection-state"]');
            window.connectionStates = [badge.dataset.state];
            new MutationObserver(() => window.connectionStates.push(badge.dataset.state))
                .observe(badge, { attributes: true, attributeFilter: ["data-state"] });
        }""")

    def connection_states(self) -> list[str]:
        return self.page.page.evaluate("window.connectionStates")


def test_tokens_are_refreshed_before_they_expire_and_the_stream_resumes_with_each_new_one(browser, short_token_stack):
    stack = short_token_stack
    ada_person, bob_person = stack.pair()
    stack.call("POST", "/api/chats", {"type": "direct", "members": [bob_person["id"]]}, token=ada_person["token"])
    refreshes = 3
    with page_opener(browser, stack.base_url) as open_page:
        pages, traffic = {}, {}
        for person, other in ((ada_person, "Bob Babbage"), (bob_person, "Ada Lovelace")):
            page = pages[person["fullname"]] = open_page()
            traffic[person["fullname"]] = Traffic(page)
            page.goto()
            page.sign_in(person["email"], PASSWORD)
            page.open_chat_named(other)
            traffic[person["fullname"]].watch_connection_state()
        ada, bob = pages["Ada Lovelace"], pages["Bob Babbage"]

        # Messages both ways, one after the other, until each page has reopened its stream `refreshes`
        # times: some are sent while the other page's stream is being reopened.
        sent: list[str] = []
        deadline = time.monotonic() + SHORT_TOKEN_TTL * (refreshes + 2)
        while min(len(t.streams) for t in traffic.values()) < 1 + refreshes:
            assert time.monotonic() < deadline, {name: t.streams for name, t in traffic.items()}
            for sender, reader in ((ada, bob), (bob, ada)):
                text = f"message {len(sent) + 1}"
                sender.send(text)
                sent.append(text)
                expect(reader.message_with_text(text)).to_have_count(1, timeout=LIVE_TIMEOUT_MS)
        # Past several lifetimes of the first token, still signed in and live.
        for page in (ada, bob):
            expect(page.by("app-view")).to_be_visible()
            expect(page.by("signin-form")).to_be_hidden()
            page.wait_live()
            texts = page.page.locator('[data-testid="message-list"] [data-testid="message-content"]').all_inner_texts()
            assert texts == sent, f"every message once, in order: {texts}"

        for name, seen in traffic.items():
            first, *reopened = seen.streams
            assert "last_event_id" not in first, first
            # Each stream after the first: the new token, resuming from the last event id.
            tokens = [stream["access_token"] for stream in seen.streams]
            assert len(set(tokens)) == len(tokens), f"{name} reopened a stream with a token it had used"
            assert all(stream.get("last_event_id", "").isdigit() for stream in reopened), reopened
            ids = [int(stream["last_event_id"]) for stream in reopened]
            assert ids == sorted(ids), ids
            assert len(seen.refreshes) >= refreshes and set(seen.refreshes) == {200}, seen.refreshes
            # Each reopening was the page's own, ahead of the expiry: never a dropped stream, no resync
            # (that reloads the chat list over REST), no sign-in again, and no request refused.
            states = seen.connection_states()
            assert "reconnecting" not in states and "offline" not in states, states
            assert seen.chat_list_loads == 1, f"{name} reloaded the chat list {seen.chat_list_loads - 1} times"
            assert seen.signins == 1, seen.signins
            assert seen.failures == [], seen.failures
        for page in (ada, bob):
            page.assert_no_console_errors()
