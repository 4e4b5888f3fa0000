"""Files in the demo UI (issue 17): paste, button and drop uploads with progress, thumbnails, the viewer, file cards."""

from __future__ import annotations

import base64
import io
import json
import re
import urllib.request
import uuid

import pytest
from PIL import Image
from playwright.sync_api import expect

from tests.browser_helpers import LIVE_TIMEOUT_MS, SCREENSHOTS
from tests.test_browser import PASSWORD, browser, open_page, running_stack  # noqa: F401 - fixtures

DESKTOP = {"width": 1280, "height": 800}


@pytest.fixture(scope="module")
def stack(tmp_path_factory, mongo_uri, nats_url, key_files):
    with running_stack(tmp_path_factory, mongo_uri, nats_url, key_files, SCREENSHOTS.parent / "logs-files") as running:
        yield running


def picture(width: int, height: int, color: tuple[int, int, int], fmt: str = "PNG") -> bytes:
    """A picture with a stripe, so a thumbnail of it is not one flat colour."""
    image = Image.new("RGB", (width, height), color)
    for x in range(width // 3, width // 3 + max(1, width // 10)):
        for y in range(height):
            image.putpixel((x, y), (255, 255, 255))
    out = io.BytesIO()
    image.save(out, fmt)
    return out.getvalue()


def upload(stack, person: dict, name: str, content_type: str, data: bytes) -> dict:
    """POST /api/files as multipart/form-data, as the browser sends it."""
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
            f"Content-Type: {content_type}\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(stack.base_url + "/api/files", data=body, method="POST", headers={
        "Content-Type": f"multipart/form-data; boundary={boundary}", "Authorization": f"Bearer {person['token']}"})
    with urllib.request.urlopen(request, timeout=10) as reply:
        return json.loads(reply.read())


def workspace_of_three(stack):
    alice = stack.person("Alice Archer")
    code = stack.call("GET", "/api/workspace", token=alice["token"])["invite_code"]
    return alice, stack.person("Bob Babbage", invite_code=code), stack.person("Carol Cole", invite_code=code)


def paste_image(page, data: bytes, content_type: str = "image/png"):
    """What a browser does on Ctrl+V of a screenshot: a paste event whose clipboard holds one image/png `image.png`."""
    page.by("message-input").focus()
    page.page.evaluate("""([b64, type]) => {
        const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        const data = new DataTransfer();
        data.items.add(new File([bytes], "image.png", { type }));
        document.querySelector('[data-testid="message-input"]').dispatchEvent(
            new ClipboardEvent("paste", { clipboardData: data, bubbles: true, cancelable: true }));
    }""", [base64.b64encode(data).decode(), content_type])


def test_alice_pastes_an_image_bob_sees_the_thumbnail_live_and_opens_it_full_size(open_page, stack):
    alice, bob, carol = workspace_of_three(stack)
    name = f"design-{uuid.uuid4().hex[:6]}"
    channel = stack.call("POST", "/api/chats", {"type": "public_channel", "name": name,
                                                "members": [bob["id"], carol["id"]]}, token=alice["token"])["id"]
    # An earlier picture of Carol's in the same chat (sent over the API), and one in another chat that the
    # viewer must not step to.
    earlier = upload(stack, carol, "whiteboard.jpg", "image/jpeg", picture(900, 600, (30, 90, 160), "JPEG"))
    stack.call("POST", f"/api/chats/{channel}/messages", {"content": "Whiteboard from Monday", "files": [earlier["id"]]},
               token=carol["token"])
    other = stack.call("POST", "/api/chats", {"type": "direct", "members": [bob["id"]]}, token=carol["token"])["id"]
    elsewhere = upload(stack, carol, "elsewhere.png", "image/png", picture(300, 300, (200, 0, 0)))
    stack.call("POST", f"/api/chats/{other}/messages", {"content": "Not in the channel", "files": [elsewhere["id"]]},
               token=carol["token"])

    bob_page = open_page(viewport=DESKTOP)
    bob_page.goto()
    bob_page.sign_in(bob["email"], PASSWORD)
    bob_page.open_chat_named(name)
    expect(bob_page.message_with_text("Whiteboard from Monday").get_by_test_id("file-thumb")).to_be_visible()

    alice_page = open_page(viewport=DESKTOP)
    alice_page.goto()
    alice_page.sign_in(alice["email"], PASSWORD)
    alice_page.open_chat_named(name)
    paste_image(alice_page, picture(1600, 1000, (0, 122, 90)))
    upload_row = alice_page.by("upload")
    expect(upload_row).to_have_count(1)
    expect(upload_row).to_contain_text("Pasted image")
    expect(upload_row).to_have_attribute("data-state", "done", timeout=LIVE_TIMEOUT_MS)
    expect(alice_page.by("upload-progress")).to_have_attribute("aria-valuenow", "100")
    alice_page.screenshot("files-paste-tray")
    alice_page.by("message-input").fill("The new header, take a look")
    alice_page.by("message-input").press("Enter")
    expect(alice_page.by("upload")).to_have_count(0)
    mine = alice_page.message_with_text("The new header, take a look")
    expect(mine.get_by_test_id("file-thumb")).to_be_visible(timeout=LIVE_TIMEOUT_MS)

    # Bob never reloaded: the message came over the stream, with its thumbnail (a signed URL: no header).
    message = bob_page.message_with_text("The new header, take a look")
    thumb = message.get_by_test_id("file-thumb")
    expect(thumb).to_be_visible(timeout=LIVE_TIMEOUT_MS)
    image = thumb.locator("img")
    bob_page.page.wait_for_function("(img) => img.complete && img.naturalWidth > 0", arg=image.element_handle(),
                                    timeout=LIVE_TIMEOUT_MS)
    natural = image.evaluate("(img) => [img.naturalWidth, img.naturalHeight]")
    assert natural[0] <= 400 and natural[0] * 1000 == pytest.approx(natural[1] * 1600, rel=0.02), natural
    box = thumb.bounding_box()
    assert 200 <= box["width"] <= 400 and box["height"] <= 260, box
    bob_page.screenshot("files-thumbnail-live")

    # Full size on click; arrows go to the chat's other picture and back; Esc closes.
    thumb.click()
    viewer = bob_page.by("image-viewer")
    expect(viewer).to_be_visible()
    full = bob_page.by("viewer-image")
    bob_page.page.wait_for_function("(img) => img.complete && img.naturalWidth > 0", arg=full.element_handle(),
                                    timeout=LIVE_TIMEOUT_MS)
    assert full.evaluate("(img) => img.naturalWidth") == 1600
    expect(bob_page.by("viewer-name")).to_contain_text("Pasted image")
    expect(bob_page.by("viewer-count")).to_have_text("2 of 2")
    bob_page.screenshot("files-viewer")
    bob_page.page.keyboard.press("ArrowRight")  # the last one: stays
    expect(bob_page.by("viewer-count")).to_have_text("2 of 2")
    bob_page.page.keyboard.press("ArrowLeft")
    expect(bob_page.by("viewer-name")).to_have_text("whiteboard.jpg")
    expect(full).to_have_attribute("data-file-id", earlier["id"])
    bob_page.page.keyboard.press("ArrowLeft")  # the first one: stays, never the other chat's picture
    expect(full).to_have_attribute("data-file-id", earlier["id"])
    bob_page.page.keyboard.press("ArrowRight")
    expect(bob_page.by("viewer-name")).to_contain_text("Pasted image")
    bob_page.page.keyboard.press("Escape")
    expect(viewer).to_be_hidden()
    expect(bob_page.by("chat-title")).to_have_attribute("data-chat-id", channel)  # Esc closed only the viewer
    bob_page.assert_no_console_errors()
    alice_page.assert_no_console_errors()


def test_upload_by_the_button_shows_progress_and_a_file_card_with_a_working_download(open_page, stack):
    alice, bob, carol = workspace_of_three(stack)
    direct = stack.call("POST", "/api/chats", {"type": "direct", "members": [bob["id"]]}, token=alice["token"])["id"]
    stack.call("POST", f"/api/chats/{direct}/messages", {"content": "Can you send the report?"}, token=bob["token"])
    report = ("quarterly numbers\n" * 40_000).encode()  # ~700 KB: the bar has time to move

    page = open_page(viewport=DESKTOP)
    page.goto()
    page.sign_in(alice["email"], PASSWORD)
    page.open_chat_named("Bob Babbage")
    # The page records every upload progress event it sees, to show the bar moved before it finished.
    page.page.evaluate("""() => {
        window.__progress = [];
        const send = XMLHttpRequest.prototype.send;
        XMLHttpRequest.prototype.send = function (body) {
            this.upload.addEventListener("progress", (e) => window.__progress.push([e.loaded, e.total]));
            return send.call(this, body);
        };
    }""")
    with page.page.expect_file_chooser() as chooser:
        page.by("attach-button").click()
    chooser.value.set_files([
        {"name": "Q3 report.txt", "mimeType": "text/plain", "buffer": report},
        {"name": "draft.bin", "mimeType": "application/octet-stream", "buffer": b"\x00" * 2048},
    ])
    rows = page.by("upload")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text("Q3 report.txt")
    expect(rows.nth(0)).to_have_attribute("data-state", "done", timeout=LIVE_TIMEOUT_MS)
    expect(rows.nth(0).get_by_test_id("upload-progress")).to_have_attribute("aria-valuenow", "100")
    progress = page.page.evaluate("window.__progress")
    assert any(total >= len(report) and loaded == total for loaded, total in progress), progress
    # The second was a mistake: its × takes it off, so it is not sent.
    rows.nth(1).get_by_test_id("upload-cancel").click()
    expect(rows).to_have_count(1)
    # A file dropped onto the chat joins them.
    page.page.evaluate("""() => {
        const data = new DataTransfer();
        data.items.add(new File(["a,b\\n1,2\\n"], "numbers.csv", { type: "text/csv" }));
        const chat = document.querySelector('[data-testid="chat"]');
        for (const type of ["dragenter", "dragover", "drop"]) {
            chat.dispatchEvent(new DragEvent(type, { dataTransfer: data, bubbles: true, cancelable: true }));
        }
    }""")
    expect(rows).to_have_count(2)
    expect(rows.nth(1)).to_contain_text("numbers.csv")
    expect(rows.nth(1)).to_have_attribute("data-state", "done", timeout=LIVE_TIMEOUT_MS)
    page.screenshot("files-button-tray")
    page.by("message-input").fill("Here it is")
    page.by("message-input").press("Enter")

    message = page.message_with_text("Here it is")
    cards = message.get_by_test_id("file-card")
    expect(cards).to_have_count(2, timeout=LIVE_TIMEOUT_MS)
    expect(cards.nth(1).get_by_test_id("file-name")).to_have_text("numbers.csv")
    card = cards.nth(0)
    expect(card.get_by_test_id("file-name")).to_have_text("Q3 report.txt")
    expect(card.get_by_test_id("file-size")).to_have_text(re.compile(r"^7\d\d KB$"))
    expect(message.get_by_test_id("file-thumb")).to_have_count(0)
    page.screenshot("files-card")

    # The link works on its own (signed, no header) and downloads the very bytes, by name.
    href = card.get_by_test_id("file-download").get_attribute("href")
    answer = page.context.request.get(page.base_url + href)
    assert answer.status == 200 and answer.body() == report
    assert answer.headers["x-content-type-options"] == "nosniff"
    with page.page.expect_download() as download:
        card.get_by_test_id("file-download").click()
    assert download.value.suggested_filename == "Q3 report.txt"

    # Bob's list shows the same card (from history, on opening the chat).
    bob_page = open_page(viewport=DESKTOP)
    bob_page.goto()
    bob_page.sign_in(bob["email"], PASSWORD)
    bob_page.open_chat_named("Alice Archer")
    expect(bob_page.message_with_text("Here it is").get_by_test_id("file-name")).to_have_text(["Q3 report.txt", "numbers.csv"])
    page.assert_no_console_errors()
    bob_page.assert_no_console_errors()


def test_an_image_sent_as_octet_stream_gets_a_thumbnail_and_bare_file_ids_still_have_names(stack):
    from pymongo import MongoClient

    alice, bob, _ = workspace_of_three(stack)
    chat = stack.call("POST", "/api/chats", {"type": "direct", "members": [bob["id"]]}, token=alice["token"])["id"]
    # The header lies both ways: a PNG said to be bytes, bytes said to be a PNG.
    photo = upload(stack, alice, "photo", "application/octet-stream", picture(800, 400, (50, 60, 70)))
    fake = upload(stack, alice, "fake.png", "image/png", b"<html>not a picture</html>")
    assert photo["content_type"] == "image/png" and photo["thumbnail_url"], photo
    assert (photo["thumbnail_width"], photo["thumbnail_height"]) == (400, 200), photo  # its place held while it loads
    assert fake["thumbnail_url"] is None, fake
    thumb = urllib.request.urlopen(stack.base_url + photo["thumbnail_url"], timeout=10)
    assert Image.open(io.BytesIO(thumb.read())).size == (400, 200)

    sent = [stack.call("POST", f"/api/chats/{chat}/messages", {"content": f"old {i}", "files": [photo["id"], fake["id"]]},
                       token=alice["token"]) for i in range(2)]
    # Messages stored before the send copied the files' names in: only their ids.
    client = MongoClient(stack.config.mongo.uri, serverSelectionTimeoutMS=5000)
    try:
        client[stack.config.mongo.database].messages.update_many({"_id": {"$in": [m["id"] for m in sent]}},
                                                                 {"$unset": {"file_info": ""}})
    finally:
        client.close()
    page = stack.call("GET", f"/api/chats/{chat}/messages", token=bob["token"])
    shown = {m["id"]: m["files"] for m in page["messages"]}
    for message in sent:
        files = shown[message["id"]]
        assert [(f["name"], f["size"], f["content_type"]) for f in files] == [
            ("photo", photo["size"], "image/png"), ("fake.png", fake["size"], "image/png")]
        assert files[0]["thumbnail_url"] and files[1]["thumbnail_url"] is None
        assert files[0]["thumbnail_width"] == 400
