"""Chats and members: the four types and their rules, authorization by role and workspace, bad input."""

import pytest

from tests.support.api import wait_for
from tests.support.chats import count, create_chat, make_team, outbox_empty

pytestmark = pytest.mark.gen_test(timeout=60)


async def test_create_each_type_and_its_rules(api):
    t = await make_team(api)
    direct = await api.post("/api/chats", {"type": "direct", "members": [t.member["id"]]}, token=t.owner["token"])
    assert direct.status == 201
    assert direct.body["type"] == "direct" and sorted(direct.body["members"]) == sorted([t.owner["id"], t.member["id"]])
    assert direct.body["created_at"].endswith("Z")
    again = await api.post("/api/chats", {"type": "direct", "members": [t.member["id"]]}, token=t.owner["token"])
    assert again.status == 200 and again.body["id"] == direct.body["id"]
    reverse = await api.post("/api/chats", {"type": "direct", "members": [t.owner["id"]]}, token=t.member["token"])
    assert reverse.status == 200 and reverse.body["id"] == direct.body["id"]

    for body, field in [
        ({"type": "direct", "members": [t.member["id"], t.outsider["id"]]}, "members"),
        ({"type": "direct", "members": []}, "members"),
        ({"type": "direct", "members": [t.owner["id"]]}, "members"),  # only yourself
        ({"type": "direct", "members": [t.outsider["id"]], "name": "dm"}, "name"),
        ({"type": "group", "members": [t.member["id"]]}, "members"),
        ({"type": "private_channel", "members": []}, "name"),
        ({"type": "public_channel", "name": "x", "members": [t.stranger["id"]]}, "members"),
        ({"type": "group", "members": [t.member["id"], "000000000000000000000000"]}, "members"),
        ({"type": "channel", "name": "x"}, "type"),
    ]:
        reply = await api.post("/api/chats", body, token=t.owner["token"])
        assert reply.status == 422, (body, reply.body)
        assert field in reply.body["error"]["fields"], (body, reply.body)

    group = await create_chat(api, t.owner, "group", [t.member, t.outsider])
    assert group["type"] == "group" and len(group["members"]) == 3 and group["name"] is None
    channel = await create_chat(api, t.owner, "private_channel", [t.member], name="Design", description="pixels")
    assert channel["name"] == "Design" and channel["description"] == "pixels" and channel["owner_id"] == t.owner["id"]
    taken = await api.post("/api/chats", {"type": "public_channel", "name": "design"}, token=t.member["token"])
    assert taken.status == 409 and taken.error_code == "chat_name_taken"
    # Names are per workspace: another workspace may use it.
    elsewhere = await api.post("/api/chats", {"type": "public_channel", "name": "Design"}, token=t.stranger["token"])
    assert elsewhere.status == 201


async def test_authorization_by_role_and_workspace(api):
    t = await make_team(api)
    private = await create_chat(api, t.owner, "private_channel", [t.member], name="secret")
    public = await create_chat(api, t.owner, "public_channel", [t.member], name="lobby")
    path = f"/api/chats/{private['id']}"

    assert (await api.get(path, token=t.owner["token"])).status == 200
    assert (await api.get(path, token=t.member["token"])).status == 200
    hidden = await api.get(path, token=t.outsider["token"])
    missing = await api.get("/api/chats/000000000000000000000000", token=t.outsider["token"])
    assert hidden.status == missing.status == 404 and _error_without_request_id(hidden.body) == _error_without_request_id(missing.body)  # existence never leaks
    assert (await api.get(path, token=t.stranger["token"])).status == 404
    assert (await api.get(path)).status == 401
    assert (await api.get(f"{path}/members", token=t.outsider["token"])).status == 404
    # A public channel is visible to its workspace only.
    assert (await api.get(f"/api/chats/{public['id']}", token=t.outsider["token"])).status == 200
    assert (await api.get(f"/api/chats/{public['id']}/members", token=t.outsider["token"])).status == 200
    assert (await api.get(f"/api/chats/{public['id']}", token=t.stranger["token"])).status == 404
    # ... but not changeable by a non-member.
    assert (await api.patch(f"/api/chats/{public['id']}", {"name": "x"}, token=t.outsider["token"])).status == 403

    assert (await api.patch(path, {"name": "renamed"}, token=t.member["token"])).status == 403
    assert (await api.patch(path, {"name": "renamed"}, token=t.outsider["token"])).status == 404
    assert (await api.patch(path, {"name": "renamed"}, token=t.stranger["token"])).status == 404
    assert (await api.patch(path, {"name": "renamed"})).status == 401
    renamed = await api.patch(path, {"name": "renamed", "description": "new"}, token=t.owner["token"])
    assert renamed.status == 200 and renamed.body["name"] == "renamed" and renamed.body["description"] == "new"
    assert (await api.patch(path, {"name": "GENERAL"}, token=t.owner["token"])).status == 409
    assert (await api.patch(path, {}, token=t.owner["token"])).status == 422

    # An admin may rename but not delete.
    await api_set_role(api, private["id"], t.member["id"], "admin")
    assert (await api.patch(path, {"description": "by admin"}, token=t.member["token"])).status == 200
    assert (await api.delete(path, token=t.member["token"])).status == 403
    assert (await api.delete(path, token=t.outsider["token"])).status == 404
    assert (await api.delete(path)).status == 401
    assert (await api.delete(path, token=t.owner["token"])).status == 204
    assert (await api.get(path, token=t.owner["token"])).status == 404
    assert (await api.get(path, token=t.member["token"])).status == 404


async def api_set_role(api, chat_id, user_id, role):
    """There is no route to promote a member yet; the test sets the role where it is stored."""
    store = api.deps.store
    result = await store.members.update_one({"chat_id": chat_id, "user_id": user_id}, {"$set": {"role": role}})
    assert result.modified_count == 1


@pytest.fixture
def api(api, deps):
    api.deps = deps
    return api


async def test_members_add_remove_leave_and_join(api):
    t = await make_team(api)
    group = await create_chat(api, t.owner, "group", [t.member, t.outsider])
    members_path = f"/api/chats/{group['id']}/members"
    listed = await api.get(members_path, token=t.member["token"])
    assert listed.status == 200
    assert {m["user_id"]: m["role"] for m in listed.body} == {
        t.owner["id"]: "owner", t.member["id"]: "member", t.outsider["id"]: "member"}
    assert all(m["joined_at"].endswith("Z") for m in listed.body)

    # A member may not remove others; anyone may leave; the owner may not leave.
    assert (await api.delete(f"{members_path}/{t.outsider['id']}", token=t.member["token"])).status == 403
    assert (await api.delete(f"{members_path}/{t.owner['id']}", token=t.owner["token"])).status == 409
    assert (await api.delete(f"{members_path}/{t.stranger['id']}", token=t.owner["token"])).status == 404
    assert (await api.delete(f"{members_path}/not-an-id!", token=t.owner["token"])).status == 404
    assert (await api.delete(f"{members_path}/{t.member['id']}", token=t.member["token"])).status == 204
    assert (await api.get(f"/api/chats/{group['id']}", token=t.member["token"])).status == 404
    assert (await api.delete(f"{members_path}/{t.outsider['id']}", token=t.owner["token"])).status == 204

    # Adding: members of the workspace only; any member of a group; answers every member.
    added = await api.post(members_path, {"user_ids": [t.member["id"], t.outsider["id"]]}, token=t.owner["token"])
    assert added.status == 200 and len(added.body) == 3
    again = await api.post(members_path, {"user_ids": [t.member["id"]]}, token=t.member["token"])
    assert again.status == 200 and len(again.body) == 3
    foreign = await api.post(members_path, {"user_ids": [t.stranger["id"]]}, token=t.owner["token"])
    assert foreign.status == 422 and "user_ids" in foreign.body["error"]["fields"]
    assert (await api.post(members_path, {"user_ids": [t.member["id"]]}, token=t.stranger["token"])).status == 404

    direct = await create_chat(api, t.owner, "direct", [t.member])
    no_add = await api.post(f"/api/chats/{direct['id']}/members", {"user_ids": [t.outsider["id"]]},
                            token=t.owner["token"])
    assert no_add.status == 422

    private = await create_chat(api, t.owner, "private_channel", [t.member], name="core")
    invite = await api.post(f"/api/chats/{private['id']}/members", {"user_ids": [t.outsider["id"]]},
                            token=t.member["token"])
    assert invite.status == 403
    # Joining: public channels only; a private one stays invisible.
    assert (await api.post(f"/api/chats/{private['id']}/join", token=t.outsider["token"])).status == 404

    public = await create_chat(api, t.owner, "public_channel", [], name="town-square")
    browse = await api.get("/api/channels/public", token=t.outsider["token"])
    assert browse.status == 200 and [c["id"] for c in browse.body] == [public["id"]]
    # A channel's members are counted, not listed (they are paged by /members), except by a join.
    assert browse.body[0]["member_count"] == 1 and browse.body[0]["members"] == []
    assert (await api.get("/api/channels/public", token=t.stranger["token"])).body == []
    assert (await api.get("/api/channels/public", token=t.owner["token"])).body == []  # already in it
    joined = await api.post(f"/api/chats/{public['id']}/join", token=t.outsider["token"])
    assert joined.status == 200 and t.outsider["id"] in joined.body["members"]
    assert sorted(joined.body["members"]) == sorted([t.owner["id"], t.outsider["id"]])
    assert joined.body["member_count"] == 2
    seen = (await api.get(f"/api/chats/{public['id']}", token=t.member["token"])).body
    assert seen["member_count"] == 2 and seen["members"] == []
    assert (await api.post(f"/api/chats/{public['id']}/join", token=t.outsider["token"])).status == 200
    assert (await api.get("/api/channels/public", token=t.outsider["token"])).body == []
    assert (await api.post(f"/api/chats/{public['id']}/join", token=t.stranger["token"])).status == 404
    assert (await api.post(f"/api/chats/{public['id']}/join")).status == 401
    mine = await api.get("/api/chats", token=t.outsider["token"])
    assert public["id"] in [c["id"] for c in mine.body]


async def listed(api, user):
    """The user's chats but the workspace's #general (contract section 15), which every member is in."""
    return [c for c in (await api.get("/api/chats", token=user["token"])).body if c["name"] != "general"]


async def test_list_chats_with_unread_counts_and_recent_first(api):
    t = await make_team(api)
    quiet = await create_chat(api, t.owner, "group", [t.member, t.outsider])
    busy = await create_chat(api, t.owner, "direct", [t.member])
    for i in range(3):
        reply = await api.post(f"/api/chats/{busy['id']}/messages", {"content": f"hi {i}"}, token=t.member["token"])
        assert reply.status == 201
    chats = await listed(api, t.owner)
    assert [c["id"] for c in chats] == [busy["id"], quiet["id"]]
    assert (chats[0]["unread_count"], chats[0]["last_read_seq"]) == (3, 0)
    own = await api.post(f"/api/chats/{busy['id']}/messages", {"content": "mine"}, token=t.owner["token"])
    assert own.status == 201

    chats = await listed(api, t.owner)
    assert [c["id"] for c in chats] == [busy["id"], quiet["id"]]
    top = chats[0]
    assert (top["unread_count"], top["last_read_seq"]) == (0, 4)  # posting reads the chat up to one's message
    assert top["last_message"]["content"] == "mine" and top["last_message"]["seq"] == 4
    assert chats[1]["unread_count"] == 0 and chats[1]["last_message"] is None
    assert set(top) >= {"id", "type", "name", "description", "members", "unread_count", "last_message", "updated_at",
                        "mention_count", "last_read_seq", "notify", "muted"}
    assert (top["mention_count"], top["notify"], top["muted"]) == (0, "all", False)

    for i in range(3):  # seqs 5, 6, 7
        reply = await api.post(f"/api/chats/{busy['id']}/messages", {"content": f"after {i}"}, token=t.member["token"])
        assert reply.status == 201
    sixth = (await api.get(f"/api/chats/{busy['id']}/messages", token=t.owner["token"])).body["messages"][5]
    assert (await api.delete(f"/api/chats/{busy['id']}/messages/{sixth['id']}", token=t.member["token"])).status == 204
    assert (await api.post(f"/api/chats/{busy['id']}/read", {"seq": 5}, token=t.owner["token"])).status == 204
    chats = await listed(api, t.owner)
    assert chats[0]["unread_count"] == 1  # seq 6 deleted, seq 7 unread

    # Activity in the quiet chat moves it to the top.
    assert (await api.post(f"/api/chats/{quiet['id']}/messages", {"content": "wake"},
                           token=t.outsider["token"])).status == 201
    chats = await listed(api, t.owner)
    assert [c["id"] for c in chats] == [quiet["id"], busy["id"]]
    # A workspace is made with its #general: the only chat of one who made nothing else.
    assert [c["name"] for c in (await api.get("/api/chats", token=t.stranger["token"])).body] == ["general"]
    assert (await api.get("/api/chats")).status == 401


async def test_bad_input_is_refused_and_writes_nothing(api, deps):
    t = await make_team(api)
    token = t.owner["token"]
    # What the signups wrote (each workspace's #general, its memberships): the bad bodies add nothing to it.
    before = [await count(collection, {}) for collection in (deps.store.chats, deps.store.members)]
    await wait_for(lambda: outbox_empty(deps.store), message="the signups' events published")
    long_name = "n" * 81
    bodies = [
        {"type": {"$gt": ""}, "members": []},
        {"type": "public_channel", "name": {"$gt": ""}},
        {"type": "public_channel", "name": long_name},
        {"type": "public_channel", "name": "   "},
        {"type": "public_channel", "name": 5},
        {"type": "public_channel", "name": "ok", "description": "d" * 1001},
        {"type": "public_channel", "name": "ok", "description": ["x"]},
        {"type": "group", "members": {"$in": [t.member["id"]]}},
        {"type": "group", "members": [{"$gt": ""}, t.member["id"]]},
        {"type": "group", "members": [t.member["id"], t.outsider["id"]], "owner_id": t.member["id"]},
        [],
        "text",
    ]
    for body in bodies:
        reply = await api.post("/api/chats", body, token=token)
        assert reply.status == 422, (body, reply.body)
        assert reply.body["error"]["code"] == "validation_failed"
    for raw in (b"{", b"", b"\xff"):
        reply = await api.call("POST", "/api/chats", raw=raw, token=token)
        assert reply.status == 400, (raw, reply.body)
    assert [await count(collection, {}) for collection in (deps.store.chats, deps.store.members)] == before
    assert await count(deps.store.outbox, {}) == 0

    chat = await create_chat(api, t.owner, "public_channel", [t.member], name="c1")
    for body in ({"name": {"$gt": ""}}, {"name": ""}, {"description": 7}, {"name": "x", "type": "group"}):
        reply = await api.patch(f"/api/chats/{chat['id']}", body, token=token)
        assert reply.status == 422, (body, reply.body)
    for body in ({"user_ids": []}, {"user_ids": "abc"}, {"user_ids": [{"$gt": ""}]}, {}):
        reply = await api.post(f"/api/chats/{chat['id']}/members", body, token=token)
        assert reply.status == 422, (body, reply.body)
    stored = await deps.store.chats.find_one({"_id": chat["id"]})
    assert stored["name"] == "c1" and await count(deps.store.members, {"chat_id": chat["id"]}) == 2
    for path in ("/api/chats/%7B%24gt%7D", "/api/chats/a.b", "/api/chats/" + "x" * 65, "/api/chats/x/nope"):
        assert (await api.get(path, token=token)).status == 404, path


async def test_openapi_documents_every_chat_route(api):
    doc = (await api.get("/api/openapi.json")).body
    paths = doc["paths"]
    expected = {
        "/api/chats": {"get", "post"},
        "/api/channels/public": {"get"},
        "/api/chats/{chat_id}": {"get", "patch", "delete"},
        "/api/chats/{chat_id}/members": {"get", "post"},
        "/api/chats/{chat_id}/members/{user_id}": {"delete", "patch"},
        "/api/chats/{chat_id}/archive": {"post"},
        "/api/chats/{chat_id}/unarchive": {"post"},
        "/api/chats/{chat_id}/join": {"post"},
        "/api/chats/{chat_id}/settings": {"patch"},
        "/api/chats/{chat_id}/messages": {"get", "post"},
        "/api/chats/{chat_id}/messages/{message_id}": {"patch", "delete"},
        "/api/chats/{chat_id}/read": {"post"},
        "/api/chats/{chat_id}/typing": {"post"},
        "/api/search/messages": {"get"},
        "/api/mentions": {"get"},
        "/api/files": {"post"},
        "/api/files/{file_id}": {"get"},
    }
    for path, methods in expected.items():
        assert set(paths[path]) == methods, path
    create = paths["/api/chats"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("ChatCreateIn")
    assert {"200", "201", "401", "409", "422"} <= set(create["responses"])
    assert "multipart/form-data" in paths["/api/files"]["post"]["requestBody"]["content"]
    assert {"ChatSummaryOut", "MessageOut", "MessagePage", "FileOut", "ChatSettingsIn", "ChatSettingsOut",
            "MentionsPage"} <= set(doc["components"]["schemas"])
    summary = doc["components"]["schemas"]["ChatSummaryOut"]["properties"]
    assert {"mention_count", "last_read_seq", "notify", "muted", "unread_count"} <= set(summary)
    assert {"mentions", "mentions_all"} <= set(doc["components"]["schemas"]["MessageOut"]["properties"])
    assert "username" in doc["components"]["schemas"]["UserOut"]["properties"]
    assert "username" in doc["components"]["schemas"]["SignupIn"]["properties"]


def _error_without_request_id(body):
    """The error of a body without its per-request id, so two answers can be compared."""
    return {k: v for k, v in body["error"].items() if k != "request_id"}
