"""Playwright helpers for the browser tests: Debian's chromium, one context per user, the UI's test ids."""

import os
import pathlib
import re

from playwright.sync_api import Browser, BrowserContext, Page, expect

CHROMIUM = os.environ.get("FECHATTER_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = pathlib.Path(__file__).resolve().parent.parent / "test-artifacts" / "screenshots"
# Live updates travel api -> NATS -> notify -> browser; reconnects back off up to 8 s.
LIVE_TIMEOUT_MS = 15_000


# --no-sandbox because CI runs as root; the machine has no network, and without the background
# networking switches Chromium keeps dialling Google services and logging refused connections.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
# What Chromium logs for a request that never got an answer (the notify role was down).
NETWORK_ERROR = re.compile(r"net::ERR_[A-Z_]+")


def launch(playwright) -> Browser:
    """Debian's chromium, headless; a missing browser is an error (make test installs it), never a skip."""
    if not os.access(CHROMIUM, os.X_OK):
        raise RuntimeError(f"{CHROMIUM} is missing: `make test` installs Debian's chromium (apt-get install chromium)")
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)


class UserPage:
    """One person in one browser context, with the console errors the page produced."""

    def __init__(self, browser: Browser, base_url: str, *, viewport=None):
        self.base_url = base_url.rstrip("/")
        options = {"base_url": self.base_url}
        if viewport:
            options["viewport"] = viewport
        self.context: BrowserContext = browser.new_context(**options)
        self.page: Page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda error: self.errors.append(f"pageerror: {error}"))

    def _console(self, message):
        if message.type == "error":
            self.errors.append(message.text)

    def close(self):
        self.context.close()

    def by(self, test_id: str):
        return self.page.get_by_test_id(test_id)

    # --- auth ----------------------------------------------------------------

    def goto(self, path: str = "/"):
        self.page.goto(self.base_url + path)

    def sign_up(self, fullname: str, email: str, password: str, *, workspace: str | None = None, invite_code: str | None = None):
        if not self.by("signup-form").is_visible():
            self.by("tab-signup").click()
        self.by("signup-fullname").fill(fullname)
        self.by("signup-email").fill(email)
        self.by("signup-password").fill(password)
        if invite_code is not None:
            self.by("signup-mode-join").check()
            self.by("signup-invite-code").fill(invite_code)
        else:
            self.by("signup-mode-create").check()
            self.by("signup-workspace").fill(workspace)
        self.by("signup-submit").click()
        self.wait_signed_in()

    def sign_in(self, email: str, password: str):
        self.by("tab-signin").click()
        self.by("signin-email").fill(email)
        self.by("signin-password").fill(password)
        self.by("signin-submit").click()
        self.wait_signed_in()

    def sign_out(self):
        self.by("signout").click()
        expect(self.by("signin-form")).to_be_visible()

    def wait_signed_in(self):
        expect(self.by("app-view")).to_be_visible()
        self.wait_live()

    def wait_live(self, timeout: int = LIVE_TIMEOUT_MS):
        expect(self.by("connection-state")).to_have_attribute("data-state", "live", timeout=timeout)

    def invite(self) -> tuple[str, str]:
        """(invite code, invite link) from the owner's invite dialog."""
        self.by("invite-people").click()
        code = self.by("invite-code")
        expect(code).not_to_be_empty()
        value, link = code.inner_text(), self.by("invite-link").input_value()
        self.page.keyboard.press("Escape")
        expect(self.by("invite-dialog")).to_be_hidden()
        return value, link

    def invite_code(self) -> str:
        return self.invite()[0]

    # --- chats -----------------------------------------------------------------

    def chat_item(self, chat_id: str):
        return self.page.locator(f'[data-testid="chat-item"][data-chat-id="{chat_id}"]')

    def chat_item_named(self, title: str):
        return self.by("chat-item").filter(has=self.page.get_by_test_id("chat-item-title").get_by_text(title, exact=True))

    def open_chat_named(self, title: str) -> str:
        item = self.chat_item_named(title)
        expect(item).to_be_visible(timeout=LIVE_TIMEOUT_MS)
        chat_id = item.get_attribute("data-chat-id")
        item.click()
        expect(self.by("chat-title")).to_have_attribute("data-chat-id", chat_id)
        return chat_id

    def new_chat(self, kind: str, members: list[str], name: str = "") -> str:
        """kind: direct | group | public_channel | private_channel; members by full name."""
        self.by("new-direct").click()
        self.by("new-chat-type").select_option(kind)
        if name:
            self.by("new-chat-name").fill(name)
        for fullname in members:
            self.page.locator('[data-testid="user-option"]').filter(has_text=fullname).locator("input").check()
        self.by("new-chat-submit").click()
        expect(self.by("new-chat-dialog")).to_be_hidden()
        title = self.by("chat-title")
        expect(title).to_have_attribute("data-chat-id", re.compile(r".+"))
        return title.get_attribute("data-chat-id")

    def unread_badge(self, chat_id: str):
        return self.chat_item(chat_id).get_by_test_id("unread-badge")

    # --- messages ----------------------------------------------------------------

    def send(self, text: str):
        box = self.by("message-input")
        box.fill(text)
        box.press("Enter")

    def messages(self):
        return self.page.locator('[data-testid="message-list"] [data-testid="message"]')

    def message_with_text(self, text: str):
        return self.messages().filter(has=self.page.get_by_test_id("message-content").get_by_text(text, exact=True))

    def message_by_id(self, message_id: str):
        return self.page.locator(f'[data-testid="message"][data-message-id="{message_id}"]')

    def edit_message(self, text: str, new_text: str):
        item = self.message_with_text(text)
        item.hover()
        item.get_by_test_id("edit-message").click()
        editor = item.get_by_test_id("edit-input")
        editor.fill(new_text)
        editor.press("Enter")

    def delete_message(self, text: str):
        item = self.message_with_text(text)
        item.hover()
        item.get_by_test_id("delete-message").click()
        self.by("confirm-ok").click()

    def presence_dot(self, user_id: str):
        return self.page.locator(f'[data-testid="presence-dot"][data-user-id="{user_id}"]')

    # --- evidence ------------------------------------------------------------------

    def screenshot(self, name: str):
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=False)

    def assert_no_console_errors(self, *, allow_network_errors: bool = False):
        """allow_network_errors: only where a role was stopped on purpose; the browser itself logs each
        request that found nobody listening, script errors and HTTP error statuses still count."""
        errors = [e for e in self.errors if not (allow_network_errors and NETWORK_ERROR.search(e))]
        assert errors == [], f"console errors: {errors}"
