"""Signup, signin, refresh rotation, logout, users and workspace against real servers."""

import pytest

pytestmark = pytest.mark.gen_test


async def test_signup_new_workspace_then_join_by_invite(api):
    owner = await api.signup(workspace="Acme", fullname="Ada Owner")
    assert owner["token_type"] == "Bearer" and owner["expires_in"] > 0
    assert owner["workspace"]["name"] == "Acme"
    assert owner["workspace"]["owner_id"] == owner["user"]["id"]
    code = owner["workspace"]["invite_code"]
    assert code

    member = await api.signup(invite_code=code, fullname="Bob Member")
    assert member["workspace"]["id"] == owner["workspace"]["id"]
    assert "invite_code" not in member["workspace"]  # only the owner sees it

    users = await api.get("/api/users", token=member["token"])
    assert users.status == 200
    assert sorted(u["fullname"] for u in users.body) == ["Ada Owner", "Bob Member"]
    me = await api.get("/api/users/me", token=member["token"])
    assert me.body["id"] == member["id"] and me.body["created_at"].endswith("Z")
    ws = await api.get("/api/workspace", token=owner["token"])
    assert ws.body["invite_code"] == code


async def test_signup_conflicts_and_bad_invite(api):
    first = await api.signup(workspace="Taken", email="dup@example.com")
    again = await api.post("/api/signup", {"fullname": "X", "email": "DUP@example.com",
                                           "password": "long enough pw", "workspace": "Other"})
    assert again.status == 409 and again.error_code == "email_taken"
    name = await api.post("/api/signup", {"fullname": "X", "email": "n@example.com",
                                          "password": "long enough pw", "workspace": "taken"})
    assert name.status == 409 and name.error_code == "workspace_taken"
    bad = await api.post("/api/signup", {"fullname": "X", "email": "i@example.com",
                                         "password": "long enough pw", "invite_code": "nope"})
    assert bad.status == 422 and "invite_code" in bad.body["error"]["fields"]
    both = await api.post("/api/signup", {"fullname": "X", "email": "b@example.com", "password": "long enough pw",
                                          "workspace": "W", "invite_code": first["workspace"]["invite_code"]})
    assert both.status == 422
    # None of the refused signups left a user behind.
    users = await api.get("/api/users", token=first["token"])
    assert [u["email"] for u in users.body] == ["dup@example.com"]


async def test_signin_failures_are_identical(api):
    user = await api.signup(email="ada@example.com", password="right password")
    ok = await api.post("/api/signin", {"email": "ADA@example.com", "password": "right password"})
    assert ok.status == 200 and ok.body["user"]["id"] == user["id"]
    wrong = await api.post("/api/signin", {"email": "ada@example.com", "password": "wrong password"})
    unknown = await api.post("/api/signin", {"email": "nobody@example.com", "password": "right password"})
    assert wrong.status == unknown.status == 401
    assert _error_without_request_id(wrong.body) == _error_without_request_id(unknown.body)


async def test_refresh_rotation_and_reuse_detection(api):
    user = await api.signup()
    first = user["refresh_token"]
    rotated = await api.post("/api/refresh", {"refresh_token": first})
    assert rotated.status == 200 and rotated.body["refresh_token"] != first
    second = rotated.body["refresh_token"]
    reused = await api.post("/api/refresh", {"refresh_token": first})
    assert reused.status == 401 and reused.error_code == "refresh_token_reused"
    # Reuse revoked the whole family: the newest token is dead too.
    after = await api.post("/api/refresh", {"refresh_token": second})
    assert after.status == 401


async def test_logout_and_logout_all(api):
    user = await api.signup()
    other = await api.post("/api/signin", {"email": user["user"]["email"], "password": user["password"]})
    out = await api.post("/api/logout", {"refresh_token": user["refresh_token"]}, token=user["token"])
    assert out.status == 204
    assert (await api.post("/api/refresh", {"refresh_token": user["refresh_token"]})).status == 401
    assert (await api.post("/api/refresh", {"refresh_token": other.body["refresh_token"]})).status == 200
    third = await api.post("/api/signin", {"email": user["user"]["email"], "password": user["password"]})
    assert (await api.post("/api/logout-all", token=user["token"])).status == 204
    assert (await api.post("/api/refresh", {"refresh_token": third.body["refresh_token"]})).status == 401


async def test_expired_and_tampered_tokens(api, deps):
    user = await api.signup()
    expired = deps.issuer.issue(user["id"], user["workspace"]["id"], ttl=-10)
    reply = await api.get("/api/users/me", token=expired)
    assert reply.status == 401 and "expired" in reply.body["error"]["message"]
    head, payload, sig = user["token"].split(".")
    tampered = f"{head}.{payload}.{sig[:-4]}AAAA"
    assert (await api.get("/api/users/me", token=tampered)).status == 401
    assert (await api.get("/api/users/me")).status == 401
    assert (await api.get("/api/users/me", token=user["token"])).status == 200


async def test_other_workspace_users_invisible(api):
    a = await api.signup(workspace="A")
    b = await api.signup(workspace="B")
    seen = await api.get("/api/users", token=a["token"])
    assert [u["id"] for u in seen.body] == [a["id"]]
    theirs = await api.get("/api/users", token=b["token"])
    assert [u["id"] for u in theirs.body] == [b["id"]]


def _error_without_request_id(body):
    """The error of a body without its per-request id, so two answers can be compared."""
    return {k: v for k, v in body["error"].items() if k != "request_id"}
