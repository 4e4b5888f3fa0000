"""Sign-in and sign-up are rate limited per IP and per account, with 429 and Retry-After."""

import pytest

# The limiter's clock stopped (tests/conftest.py): no test straddles two fixed windows (1 min, 1 h).
pytestmark = [pytest.mark.gen_test, pytest.mark.usefixtures("frozen_window")]


@pytest.fixture
def config_overrides():
    return {"limits": {"enabled": True, "signin_per_minute_per_ip": 50, "signin_per_minute_per_account_per_ip": 3,
                       "signin_per_minute_per_account": 100, "signup_per_hour_per_ip": 4}}


async def test_signin_limited_per_account_from_one_ip(api):
    user = await api.signup(email="target@example.com", password="the right one")
    statuses = []
    for _ in range(4):
        reply = await api.post("/api/signin", {"email": "target@example.com", "password": "guess guess"})
        statuses.append(reply.status)
    assert statuses == [401, 401, 401, 429]
    assert int(reply.headers["Retry-After"]) >= 1 and reply.error_code == "rate_limited"
    # From the guessing address even the right password waits: a guess that happens to be right is no
    # different (tests/test_lockout.py: the owner elsewhere is not locked out).
    right = await api.post("/api/signin", {"email": "target@example.com", "password": user["password"]})
    assert right.status == 429
    # Another account from the same IP is not affected.
    other = await api.signup(password="other password")
    ok = await api.post("/api/signin", {"email": other["user"]["email"], "password": "other password"})
    assert ok.status == 200


async def test_signup_limited_per_ip(api):
    for _ in range(3):
        await api.signup()  # the test's first signup above made none: 3 here + 1 below = the limit
    fourth = await api.post("/api/signup", {"fullname": "F", "email": "f@example.com",
                                            "password": "long enough pw", "workspace": "Fourth"})
    assert fourth.status == 201
    fifth = await api.post("/api/signup", {"fullname": "F", "email": "g@example.com",
                                           "password": "long enough pw", "workspace": "Fifth"})
    assert fifth.status == 429 and "Retry-After" in fifth.headers
    # Refused means nothing written.
    signin = await api.post("/api/signin", {"email": "g@example.com", "password": "long enough pw"})
    assert signin.status == 401
