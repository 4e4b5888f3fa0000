"""/api/docs in Debian's chromium with every request beyond 127.0.0.1 refused: Swagger UI renders both roles' operations."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect, sync_playwright

from tests.browser_helpers import SCREENSHOTS, launch
from tests.conftest import make_test_config
from tests.processes import RoleProcess


@pytest.fixture(scope="module")
def api_url(tmp_path_factory, mongo_uri, nats_url, key_files):
    config = make_test_config(tmp_path_factory.mktemp("docs"), mongo_uri, nats_url, key_files)
    process = RoleProcess("api", config).start_blocking()
    yield process.url
    assert process.stop() == 0, process.log_tail()


def test_the_docs_page_renders_every_operation_offline(api_url):
    outside: list[str] = []
    failed: list[str] = []
    with sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})

            def only_the_stack(route):
                if urlsplit(route.request.url).hostname == "127.0.0.1":
                    route.continue_()
                else:
                    outside.append(route.request.url)
                    route.abort()

            context.route("**/*", only_the_stack)
            page = context.new_page()
            page.on("requestfailed", lambda request: failed.append(request.url))
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(f"{api_url}/docs")  # the redirect people try first
            assert page.url == f"{api_url}/api/docs"
            expect(page.locator(".swagger-ui .info .title")).to_contain_text("Fechatter API", timeout=15_000)
            operations = page.locator(".opblock")
            expect(operations.first).to_be_visible()
            assert operations.count() >= 50
            for path in ("/events", "/api/online-users", "/api/sse/health", "/api/chats/{chat_id}/messages"):
                expect(page.locator(f".opblock-summary-path[data-path='{path}']").first).to_be_visible()
            # One operation opened: its description and its example answer are on the page.
            page.locator(".opblock-summary-path[data-path='/events']").first.click()
            expect(page.locator(".opblock-description-wrapper").first).to_contain_text("Last-Event-ID")
            expect(page.get_by_text("text/event-stream").first).to_be_visible()
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOTS / "api-docs.png"), full_page=False)
            assert not errors, errors
        finally:
            browser.close()
    assert not outside, f"the docs page asked beyond the stack: {outside}"
    assert not failed, failed
