"""Bodies of signup, signin, tokens, users and the workspace."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from app.schemas.common import VISIBLE, Email, Id, PageQuery, Password, PersonName, Request, Response, Timestamp
from app.store import isoformat

WorkspaceName = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=VISIBLE)]
# What a username may hold, and its length: also what a derived one keeps of an email, and what an @mention reads.
USERNAME_CHARS = "A-Za-z0-9._-"
USERNAME_MAX = 32
# Stored lower-case: unique in the workspace whatever the case it was given in.
Username = Annotated[
    str,
    msgspec.Meta(min_length=1, max_length=USERNAME_MAX, pattern=f"^[{USERNAME_CHARS}]+$",
                 description=f"Letters, digits, '.', '_' and '-' (1..{USERNAME_MAX}), any case; stored lower-case",
                 examples=["ada.lovelace"]),
]
Token = Annotated[str, msgspec.Meta(min_length=1, max_length=512)]


class SignupIn(Request):
    fullname: PersonName
    email: Email
    password: Password
    # Exactly one: a new workspace's name, or the invite code of an existing one.
    workspace: WorkspaceName | None = None
    invite_code: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None
    # Derived from the email's local part when not given.
    username: Username | None = None


class SigninIn(Request):
    email: Annotated[str, msgspec.Meta(min_length=1, max_length=254)]
    password: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]


class RefreshIn(Request):
    refresh_token: Token


class UserOut(Response):
    id: Id
    # What @mentions name; "" only for a user the start-up migration has not reached yet.
    username: str
    fullname: str
    email: str


class MeOut(UserOut):
    workspace_id: Id
    created_at: Timestamp


class WorkspaceOut(Response, omit_defaults=True):
    id: Id
    name: str
    owner_id: Id
    created_at: Timestamp
    invite_code: str | None = None


class AuthOut(Response):
    access_token: str
    refresh_token: str
    token_type: str
    expires_in: int
    user: MeOut
    workspace: WorkspaceOut


def user_out(doc: dict[str, Any]) -> UserOut:
    return UserOut(id=doc["_id"], username=doc.get("username", ""), fullname=doc["fullname"], email=doc["email"])


def me_out(doc: dict[str, Any]) -> MeOut:
    return MeOut(
        id=doc["_id"],
        username=doc.get("username", ""),
        fullname=doc["fullname"],
        email=doc["email"],
        workspace_id=doc["workspace_id"],
        created_at=isoformat(doc["created_at"]),
    )


def workspace_out(doc: dict[str, Any], viewer_id: str) -> WorkspaceOut:
    """The invite code only for the workspace's owner."""
    return WorkspaceOut(
        id=doc["_id"],
        name=doc["name"],
        owner_id=doc["owner_id"],
        created_at=isoformat(doc["created_at"]),
        invite_code=doc["invite_code"] if doc["owner_id"] == viewer_id else None,
    )


class UsersQuery(PageQuery):
    q: Annotated[str, msgspec.Meta(max_length=100, description="A prefix of the fullname, any case")] | None = None


class UsersPage(Response):
    users: list[UserOut]
    next_cursor: str | None
