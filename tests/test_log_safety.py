"""No log line of any logger carries a token, however the request encoded it or whichever logger wrote it."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest

from app import logsafe

pytestmark = pytest.mark.gen_test(timeout=30)


@pytest.fixture
def caplog_safe(caplog):
    """Every record at every level, through the filter main() installs on the root logger's handlers."""
    caplog.set_level(logging.DEBUG)
    logsafe.install()
    yield caplog
    logsafe.uninstall()


async def raw_get(url: str, target: str, headers: dict[str, str] | None = None) -> bytes:
    """One request with exactly this request-target (fragments, odd escapes and all); the whole answer."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    lines = [f"GET {target} HTTP/1.1", f"Host: {parts.netloc}", "Connection: close",
             *(f"{k}: {v}" for k, v in (headers or {}).items())]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return answer


def token_pieces(jwt: str, refresh: str) -> list[str]:
    header, payload, signature = jwt.split(".")
    # Any of these surviving anywhere in a line means the token leaked, whole or percent-encoded in part.
    return [jwt, payload, signature, refresh, refresh[1:], quote(jwt, safe="")]


def leaks(caplog, pieces: list[str]) -> list[str]:
    found = []
    for record in caplog.records:
        text = caplog.handler.format(record) + record.getMessage() + repr(record.args) + (record.exc_text or "")
        if any(piece in text for piece in pieces):
            found.append(f"{record.name}: {text[:300]}")
    return found


def query_forms(jwt: str) -> list[str]:
    escaped_value = "".join(f"%{ord(c):02X}" for c in jwt[:3]) + jwt[3:]
    return [
        f"access_token={jwt}",
        f"access_toke%6E={jwt}",
        f"%61ccess_token={escaped_value}",
        f"ACCESS_TOKEN={jwt}",
        f"Access_Token={jwt}&x=1",
        f"access_token=stale&access_token={jwt}",
        f"access_token+={jwt}",
        f"last_event_id=1&access%5Ftoken={jwt}",
        f"access_token={quote(quote(jwt, safe=''), safe='')}",
        f"access_token={jwt}#fragment",
        f"x={jwt}",  # under a name no scrubber knows: the shape filter catches it
    ]


def test_scrub_uri_drops_every_token_value_by_decoded_name():
    jwt = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ1In0.c2lnbmF0dXJlLXNpZ25hdHVyZQ"
    for query in query_forms(jwt):
        scrubbed = logsafe.scrub_uri(f"/events?{query}")
        assert "eyJzdWIiOiJ1In0" not in scrubbed and "c2lnbmF0dXJl" not in scrubbed, (query, scrubbed)
    assert logsafe.scrub_uri("/api/chats?limit=5&before=3") == "/api/chats?limit=5&before=3"
    # 43 lowercase letters are a name in code, not a secret; a refresh token has capitals or digits.
    assert logsafe.redact("a" * 43) == "a" * 43


async def test_no_record_of_a_served_app_carries_a_token(app, api, base_url, notify_app, notify_url, caplog_safe):
    user = await api.signup()
    jwt, refresh = user["access_token"], user["refresh_token"]
    pieces = token_pieces(jwt, refresh)

    # Stream opens the access log reports (401: token tampered, still JWT-shaped), in every encoding.
    tampered = jwt[:-4] + ("AAAA" if not jwt.endswith("AAAA") else "BBBB")
    for query in query_forms(tampered):
        answer = await raw_get(notify_url, f"/events?{query}")
        assert answer.startswith(b"HTTP/1.1 4"), (query, answer[:200])

    # An uncaught error on /events with a valid token: Tornado's "Uncaught exception GET /events?…" line.
    registry = notify_app.registry

    async def failing_acquire(*args, **kwargs):
        raise RuntimeError(f"registry broke while holding {jwt} and {refresh}")

    registry.acquire = failing_acquire
    try:
        for query in query_forms(jwt):
            answer = await raw_get(notify_url, f"/events?{query}", headers={"Authorization": f"Bearer {jwt}"})
            assert answer.startswith(b"HTTP/1.1 "), answer[:200]
    finally:
        del registry.acquire
    assert any(r.name == "tornado.application" and r.exc_info for r in caplog_safe.records), \
        "the failing dependency never reached Tornado's uncaught-exception log"

    # The api: a refresh token in a sign-in body, in queries, in a path.
    await api.post("/api/signin", {"email": refresh, "password": refresh})
    await api.post("/api/signin", {"email": "nobody@example.com", "password": refresh})
    await api.post(f"/api/refresh?refresh_token={refresh}", {"refresh_token": refresh + "x"})
    await raw_get(base_url, f"/api/users?Refresh%5FToken={refresh}&token={jwt}")
    await raw_get(base_url, f"/api/{refresh}/{jwt}")

    # Any other logger, with the token in args and in an exception's text.
    logging.getLogger("some.library").warning("connecting with %s", jwt)
    try:
        raise ValueError(f"bad refresh {refresh}")
    except ValueError:
        logging.getLogger("another.library").exception("failed")

    assert caplog_safe.records
    assert not (found := leaks(caplog_safe, pieces)), "\n".join(found)


def test_main_logging_set_up_redacts_every_logger():
    """main()'s own set-up, in a fresh interpreter: the root handler it makes carries the filter."""
    jwt, refresh = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ1In0.c2lnbmF0dXJlLXNpZ25hdHVyZQ", "Ab3" * 14 + "x"
    script = (
        "import logging, main\n"
        "main.configure_logging('debug')\n"
        f"logging.getLogger('tornado.application').error('Uncaught exception GET /events?access_token=%s', {jwt!r})\n"
        f"logging.getLogger('pymongo').warning('refresh %s', {refresh!r})\n"
        "try:\n"
        f"    raise RuntimeError({jwt!r})\n"
        "except RuntimeError:\n"
        "    logging.getLogger('x').exception('boom')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30,
                          cwd=Path(__file__).resolve().parent.parent)
    assert done.returncode == 0, done.stderr
    assert "Uncaught exception" in done.stderr and "RuntimeError" in done.stderr, done.stderr
    for piece in token_pieces(jwt, refresh):
        assert piece not in done.stderr, done.stderr
