"""A stranger's wrong passwords limit the stranger, never the owner signing in from elsewhere."""

from __future__ import annotations

import asyncio

import pytest
from tornado.testing import bind_unused_port

from main import make_http_server
from tests.support.api import Api

# The limiter's clock stopped (tests/conftest.py): a run never straddles two fixed windows.
pytestmark = [pytest.mark.gen_test(timeout=30), pytest.mark.usefixtures("frozen_window")]

STRANGER, OWNER = "203.0.113.7", "198.51.100.20"


@pytest.fixture
def config_overrides():
    # The defaults of config.yaml, behind a proxy (xheaders): the client address is X-Forwarded-For's.
    return {"api": {"xheaders": True}, "limits": {"enabled": True}}


@pytest.fixture
def proxied(io_loop, app, config, http_client):
    """The api behind the HTTPServer main.py makes (xheaders from config), on a free port."""
    sock, port = bind_unused_port()
    server = make_http_server(app, config)
    server.add_sockets([sock])
    yield Api(f"http://127.0.0.1:{port}", http_client)
    server.stop()
    io_loop.run_sync(lambda: asyncio.wait_for(server.close_all_connections(), 5))


def signin(api: Api, ip: str, email: str, password: str):
    return api.post("/api/signin", {"email": email, "password": password}, headers={"X-Forwarded-For": ip})


async def test_a_stranger_cannot_lock_the_owner_out(proxied, config):
    owner = await proxied.call("POST", "/api/signup", {"fullname": "Owner", "email": "owner@example.com",
                                                       "password": "the owner's password",
                                                       "workspace": "Owned"}, headers={"X-Forwarded-For": OWNER})
    assert owner.status == 201, owner.body
    per_pair = config.limits.signin_per_minute_per_account_per_ip
    statuses = [(await signin(proxied, STRANGER, "owner@example.com", f"guess {i}")).status for i in range(20)]
    assert statuses == [401] * per_pair + [429] * (20 - per_pair)
    # The stranger stays limited, even when a guess happens to be right.
    right_from_stranger = await signin(proxied, STRANGER, "owner@example.com", "the owner's password")
    assert right_from_stranger.status == 429 and right_from_stranger.error_code == "rate_limited"
    assert int(right_from_stranger.headers["Retry-After"]) >= 1
    # The owner, from her own address, signs in at once.
    mine = await signin(proxied, OWNER, "owner@example.com", "the owner's password")
    assert mine.status == 200, mine.body
    assert mine.body["user"]["email"] == "owner@example.com"


LOW_CEILING = {"api": {"xheaders": True}, "limits": {"enabled": True, "signin_per_minute_per_ip": 50,
                                                      "signin_per_minute_per_account_per_ip": 5,
                                                      "signin_per_minute_per_account": 8}}


@pytest.mark.parametrize("config_overrides", [LOW_CEILING], ids=["low-ceiling"])
async def test_the_account_ceiling_still_bounds_guesses_from_many_addresses(proxied, config):
    """Many addresses guessing one account meet the per-account ceiling (config), the per-pair limit aside."""
    ceiling = config.limits.signin_per_minute_per_account
    await proxied.call("POST", "/api/signup", {"fullname": "T", "email": "t@example.com", "password": "target password",
                                               "workspace": "Target"}, headers={"X-Forwarded-For": OWNER})
    statuses = [(await signin(proxied, f"192.0.2.{i % 200}", "t@example.com", "wrong")).status
                for i in range(ceiling + 1)]
    assert statuses == [401] * ceiling + [429]
