"""Outgoing webhooks in the owner's workspace settings, in Debian's chromium: add one (the secret shown once),
a refused target explained, the list with its deliveries, delete."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser_helpers import SCREENSHOTS
from tests.test_browser import browser, open_page, running_stack, signed_in  # noqa: F401 - fixtures

DESKTOP = {"width": 1280, "height": 800}


@pytest.fixture(scope="module")
def stack(tmp_path_factory, mongo_uri, nats_url, key_files):
    with running_stack(tmp_path_factory, mongo_uri, nats_url, key_files, SCREENSHOTS.parent / "logs-webhooks") as running:
        yield running


def test_the_owner_adds_lists_and_deletes_an_outgoing_webhook(open_page, stack):
    ada_p = stack.person("Ada Owner")
    ada = signed_in(open_page, ada_p, viewport=DESKTOP)
    ada.by("manage-bots").click()
    section = ada.by("outgoing-webhooks-section")
    expect(section.get_by_test_id("outgoing-webhooks-empty")).to_be_visible()
    ada.by("outgoing-webhook-url").fill("http://internal.example.com/hook")
    ada.by("outgoing-webhook-create").click()
    expect(ada.by("outgoing-webhooks-error")).to_contain_text("allowed_hosts")
    ada.by("outgoing-webhook-url").fill("http://127.0.0.1:9/hook")
    ada.by("outgoing-webhook-create").click()
    expect(ada.by("outgoing-webhook-secret-reveal")).to_be_visible()
    assert len(ada.by("outgoing-webhook-secret").input_value()) > 20
    expect(section.get_by_test_id("outgoing-webhook-row")).to_have_count(1)
    expect(section.get_by_test_id("outgoing-webhook-row")).to_contain_text("http://127.0.0.1:9/hook")
    expect(section.get_by_test_id("outgoing-webhook-deliveries")).to_contain_text("No deliveries yet")
    ada.screenshot("21-outgoing-webhooks")
    # Closed and opened again: the secret is gone from the page.
    ada.by("bots-close").click()
    ada.by("manage-bots").click()
    expect(ada.by("outgoing-webhook-secret-reveal")).to_be_hidden()
    section.get_by_test_id("outgoing-webhook-delete").click()
    ada.by("confirm-ok").click()
    expect(section.get_by_test_id("outgoing-webhooks-empty")).to_be_visible()
