"""The floor: a bare Tornado SSE broadcaster with no auth, routing or storage, written as well as Tornado allows.

GET /events holds a stream; POST /publish sends its body as the `data:` of one frame to every
open stream. The frame is encoded once, then written and flushed to each stream without
awaiting each in turn: a stream's flush only queues bytes on its IOStream (which writes what
the socket takes at once and the rest when it is writable), so no stream waits for another.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal

import tornado.web
from tornado.httpserver import HTTPServer
from tornado.ioloop import PeriodicCallback

KEEPALIVE_SECONDS = 15
RETRY_MS = 2000


class EventsHandler(tornado.web.RequestHandler):
    """One long-lived stream; it only ever receives what broadcast() writes to it."""

    def initialize(self, streams: set) -> None:
        self.streams = streams
        self.closed: asyncio.Future | None = None

    async def get(self) -> None:
        self.set_header("Content-Type", "text/event-stream")
        self.set_header("Cache-Control", "no-cache")
        self.write(b"retry: %d\n\n" % RETRY_MS)
        self.closed = asyncio.get_running_loop().create_future()
        self.streams.add(self)
        await self.flush()
        await self.closed

    def on_connection_close(self) -> None:
        self.streams.discard(self)
        if self.closed is not None and not self.closed.done():
            self.closed.set_result(None)


class PublishHandler(tornado.web.RequestHandler):
    def initialize(self, broadcaster: "Broadcaster") -> None:
        self.broadcaster = broadcaster

    def post(self) -> None:
        delivered = self.broadcaster.broadcast(b"message", self.request.body)
        self.write({"streams": delivered})


class HealthHandler(tornado.web.RequestHandler):
    def initialize(self, broadcaster: "Broadcaster") -> None:
        self.broadcaster = broadcaster

    def get(self) -> None:
        self.write({"status": "ok", "streams": len(self.broadcaster.streams)})


class Broadcaster:
    """The open streams and a counter for frame ids."""

    def __init__(self, direct: bool = False) -> None:
        self.streams: set[EventsHandler] = set()
        self.last_id = 0
        if direct:
            self.send = self.send_direct

    def broadcast(self, event: bytes, data: bytes) -> int:
        self.last_id += 1
        frame = b"id: %d\nevent: %s\ndata: %s\n\n" % (self.last_id, event, data)
        return self.send(frame)

    def send(self, frame: bytes) -> int:
        # A copy: a stream may close (and leave the set) while we go through it.
        streams = list(self.streams)
        for stream in streams:
            stream.write(frame)
            stream.flush()
        return len(streams)

    def send_direct(self, frame: bytes) -> int:
        """An experiment (--direct), not the floor: the HTTP chunk framed once, written to each IOStream.

        Every stream gets the same bytes, so the chunk header can be built once per event; this
        skips RequestHandler.write/flush and HTTP1Connection.write (and their futures) per stream.
        """
        chunk = b"%x\r\n%s\r\n" % (len(frame), frame)
        streams = list(self.streams)
        for stream in streams:
            iostream = stream.request.connection.stream
            if not iostream.closed():
                iostream.write(chunk)
        return len(streams)

    def ping(self) -> None:
        self.send(b": ping\n\n")


def make_app(broadcaster: Broadcaster) -> tornado.web.Application:
    return tornado.web.Application(
        [
            (r"/events", EventsHandler, {"streams": broadcaster.streams}),
            (r"/publish", PublishHandler, {"broadcaster": broadcaster}),
            (r"/health", HealthHandler, {"broadcaster": broadcaster}),
        ],
        # No access log: the notify role under benchmark logs at warning level too.
        log_function=lambda handler: None,
    )


async def serve(port: int, host: str, direct: bool = False) -> None:
    from bench.common import raise_fd_limit

    raise_fd_limit()
    broadcaster = Broadcaster(direct)
    server = HTTPServer(make_app(broadcaster), idle_connection_timeout=75)
    server.listen(port, address=host)
    pinger = PeriodicCallback(broadcaster.ping, KEEPALIVE_SECONDS * 1000)
    pinger.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print(json.dumps({"listening": f"http://{host}:{port}/"}), flush=True)
    await stop.wait()
    pinger.stop()
    server.stop()
    for stream in list(broadcaster.streams):
        if stream.closed is not None and not stream.closed.done():
            stream.closed.set_result(None)  # get() returns and the response ends
    try:
        await asyncio.wait_for(server.close_all_connections(), 5)
    except asyncio.TimeoutError:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--direct", action="store_true",
                        help="experiment: write each pre-framed chunk straight to the IOStreams")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(serve(args.port, args.host, args.direct))


if __name__ == "__main__":
    main()
