"""Bodies of signup, signin, tokens, users and the workspace."""

from __future__ import annotations

import hashlib
from typing import Annotated, Any

import msgspec

from app.auth import UrlSigner
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
    # A signed URL an <img> loads without a header (add `&size=64` for the small one); it changes with the picture.
    avatar_url: str
    status_text: str
    status_emoji: str
    # IANA zone ("Europe/Paris"), "" when not set: the profile card's local time.
    timezone: str
    is_bot: bool
    deactivated: bool


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


# The user fields a user payload is made of: the projection of every read that serializes users.
USER_FIELDS = {"fullname": 1, "email": 1, "username": 1, "avatar_id": 1, "status_text": 1, "status_emoji": 1,
               "timezone": 1, "is_bot": 1, "deactivated": 1}
AVATAR_URLS = "avatar"


def avatar_version(doc: dict[str, Any]) -> str:
    """What an avatar's URL and ETag name: the uploaded picture's id, else the initials image of the name."""
    if doc.get("avatar_id"):
        return str(doc["avatar_id"])
    return "i" + hashlib.sha256(str(doc.get("fullname", "")).encode()).hexdigest()[:12]


def avatar_url(doc: dict[str, Any], signer: UrlSigner) -> str:
    version = avatar_version(doc)
    return f"/api/users/{doc['_id']}/avatar?v={version}&sig={signer.sign(doc['_id'], version)}"


def _user_fields(doc: dict[str, Any], signer: UrlSigner) -> dict[str, Any]:
    return {
        "id": doc["_id"],
        "username": doc.get("username", ""),
        "fullname": doc["fullname"],
        "email": doc["email"],
        "avatar_url": avatar_url(doc, signer),
        "status_text": doc.get("status_text") or "",
        "status_emoji": doc.get("status_emoji") or "",
        "timezone": doc.get("timezone") or "",
        "is_bot": bool(doc.get("is_bot")),
        "deactivated": bool(doc.get("deactivated")),
    }


def user_out(doc: dict[str, Any], signer: UrlSigner) -> UserOut:
    return UserOut(**_user_fields(doc, signer))


def me_out(doc: dict[str, Any], signer: UrlSigner) -> MeOut:
    return MeOut(**_user_fields(doc, signer), workspace_id=doc["workspace_id"],
                 created_at=isoformat(doc["created_at"]))


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
    q: Annotated[str, msgspec.Meta(max_length=100, description="A prefix of the username or fullname, any case")] | None = None


class UsersPage(Response):
    users: list[UserOut]
    next_cursor: str | None
