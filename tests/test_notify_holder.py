"""An open stream is a small holder of its socket: no Tornado request objects survive its open, and it
still ends cleanly, notices a client leaving and serves HTTP/1.0."""

import asyncio
import gc

import pytest
import tornado.httputil
import tornado.iostream
import tornado.web

from app import events
from roles.notify.holder import OpenStream
from tests.support.api import wait_for

pytestmark = pytest.mark.gen_test(timeout=60)

TABS = 3


@pytest.fixture
def config_overrides():
    return {"limits": {"enabled": False}}


def alive(kind: type) -> int:
    gc.collect()
    return sum(1 for obj in gc.get_objects() if isinstance(obj, kind))


async def test_an_open_stream_keeps_no_tornado_request_objects(world, sse, notify_app):
    ws = await world.workspace()
    people = [await world.user(ws) for _ in range(8)]
    team = await world.chat(*people)
    other = await world.chat(people[0], people[1])
    handlers_before = alive(tornado.web.RequestHandler)
    requests_before = alive(tornado.httputil.HTTPServerRequest)
    iostreams_before = alive(tornado.iostream.IOStream)

    clients = [await sse(person.token) for person in people for _ in range(TABS)]
    await wait_for(lambda: notify_app.registry.stream_count == len(clients))

    # Each stream is an OpenStream holding its socket; the handler, the request and the IOStream
    # that carried its open are gone (the test's own HTTP client may hold an IOStream of its own).
    assert alive(OpenStream) == len(clients)
    assert alive(tornado.web.RequestHandler) <= handlers_before
    assert alive(tornado.httputil.HTTPServerRequest) <= requests_before
    assert alive(tornado.iostream.IOStream) <= iostreams_before + 1

    # And it delivers: a message in the team chat reaches every tab, the other chat's only its two members'.
    await world.send(team, people[3], "standup in five")
    await world.send(other, people[0], "just us")
    for client in clients:
        await client.wait_count(1, events.MESSAGE_CREATED)
    for person_no, person in enumerate(people):
        for client in clients[person_no * TABS:(person_no + 1) * TABS]:
            want = 2 if person_no < 2 else 1
            await client.wait_count(want, events.MESSAGE_CREATED)
            texts = [frame.data["content"] for frame in client.events if frame.event == events.MESSAGE_CREATED]
            assert texts == (["standup in five", "just us"] if person_no < 2 else ["standup in five"])


async def test_a_client_leaving_unregisters_its_stream_and_ending_closes_the_rest(world, sse, notify_app):
    ws = await world.workspace()
    ada, bob = await world.user(ws), await world.user(ws)
    await world.chat(ada, bob)
    ada_tabs = [await sse(ada.token) for _ in range(2)]
    bob_tab = await sse(bob.token)
    await wait_for(lambda: notify_app.registry.stream_count == 3)

    await ada_tabs[0].aclose()
    await wait_for(lambda: notify_app.registry.stream_count == 2)
    assert notify_app.registry.online(ada.id) and notify_app.registry.online(bob.id)

    # end() (a shutdown, an expired token) finishes the chunked response: the client sees its end.
    for stream in notify_app.registry.all_streams():
        stream.end()
    await ada_tabs[1].wait_ended()
    await bob_tab.wait_ended()
    assert notify_app.registry.stream_count == 0
    assert not notify_app.registry.online(ada.id)


async def test_an_http_1_0_stream_gets_bare_frames(world, notify_url, notify_app):
    ws = await world.workspace()
    ada, bob = await world.user(ws), await world.user(ws)
    chat = await world.chat(ada, bob)
    host, port = notify_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"GET /events HTTP/1.0\r\nHost: {host}\r\nAuthorization: Bearer {bob.token}\r\n\r\n".encode())
    await writer.drain()
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.0 200") or head.startswith(b"HTTP/1.1 200")
        assert b"chunked" not in head.lower()
        await wait_for(lambda: notify_app.registry.online(bob.id))
        await world.send(chat, ada, "hello over 1.0")
        body = b""
        while b"hello over 1.0" not in body:
            body += await asyncio.wait_for(reader.read(65536), 10)
        assert b"event: " + events.MESSAGE_CREATED.encode() in body
        assert b"\r\n" not in body  # no chunk framing in the body
    finally:
        writer.close()
    await wait_for(lambda: not notify_app.registry.online(bob.id))
