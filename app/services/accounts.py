"""Accounts: signup into a new or existing workspace, signin, refresh-token rotation, users, workspace."""

from __future__ import annotations

import datetime
import hashlib
import math
import re
import secrets
import time
from typing import Any, Awaitable, Callable

from pymongo.errors import DuplicateKeyError

from app import events
from app.auth import PasswordHashing, TokenIssuer
from app.config import AuthConfig, LimitsConfig
from app.errors import APIError, conflict, invalid, not_found
from app.schemas.accounts import (
    AVATAR_URLS,
    USERNAME_CHARS,
    USERNAME_MAX,
    AuthOut,
    MeOut,
    SignupIn,
    WorkspaceOut,
    me_out,
    workspace_out,
)
from app.services.mentions import ALL_NAMES
from app.services.paging import sort_key
from app.outbox import Check, Outbox
from app.services.ratelimit import RateLimiter
from app.services.sessions import VALID_AFTER_FIELD, SessionCutoffs
from app.store import Store, new_id, new_secret, utcnow

INVALID_CREDENTIALS = "the email or password is wrong"


def _token_key(token: str) -> str:
    # Only a digest is stored: a leaked database does not hand out sessions.
    return hashlib.sha256(token.encode()).hexdigest()


def normalize_email(email: str) -> str:
    return email.strip().lower()


def user_name_key(fullname: str, user_id: str) -> str:
    """The users listing's unique order: by fullname, case-insensitively, then id (index workspace_id, name_key)."""
    return sort_key(fullname, user_id)


_NOT_IN_USERNAME = re.compile(f"[^{USERNAME_CHARS}]")
# Suffixes of a derived username have up to this many digits; the stem before them is cut to leave room.
USERNAME_SUFFIX_DIGITS = 4
# A derived username reads at most this many numbered names of its stem before it goes random.
USERNAME_TAKEN_READ = 2000
USERNAME_ATTEMPTS = 5


def normalize_username(name: str) -> str:
    return name.strip().lower()


def username_from_email(email: str) -> str:
    """The email's local part, lower-cased, with what a username may not hold dropped ("user" if nothing is left)."""
    local = email.split("@", 1)[0].lower()
    return _NOT_IN_USERNAME.sub("", local)[:USERNAME_MAX] or "user"


async def free_username(store: Store, workspace_id: str, email: str, attempt: int = 0) -> str:
    """The username derived from `email` to try at this attempt; the unique (workspace_id, username) index decides.

    First the plain one, with no read (most are free; never a name that mentions everyone). After a clash,
    the lowest free of stem2, stem3 … (the stem cut so a suffix fits), from one index range holding only
    the stem followed by a digit: a read as large as the stem's numbered namesakes, not as the names
    sharing its prefix. After another clash (a concurrent signup), or past USERNAME_TAKEN_READ, a random suffix.
    """
    base = username_from_email(email)
    stem = base[:USERNAME_MAX - USERNAME_SUFFIX_DIGITS]
    if attempt == 0 and base not in ALL_NAMES:
        return base
    if attempt <= 1:
        cursor = store.users.find(  # ":" is the character after "9"
            {"workspace_id": {"$eq": workspace_id}, "username": {"$gte": stem + "0", "$lt": stem + ":"}},
            {"username": 1, "_id": 0},
        ).limit(USERNAME_TAKEN_READ)
        taken = {doc.get("username") async for doc in cursor}
        if len(taken) < USERNAME_TAKEN_READ:
            return next(name for n in range(2, 10 ** USERNAME_SUFFIX_DIGITS) if (name := f"{stem}{n}") not in taken)
    low = 10 ** (USERNAME_SUFFIX_DIGITS - 1)
    return f"{stem}{low + secrets.randbelow(9 * low)}"


def is_username_clash(error: DuplicateKeyError) -> bool:
    """The duplicate was of the (workspace_id, username) index, not of the email's."""
    details = error.details or {}
    return "username" in str(details.get("keyPattern") or details.get("errmsg") or error)


async def backfill_usernames(store: Store) -> int:
    """Start-up migration: users stored before usernames get one derived from their email, oldest first
    (so they keep the plain name); how many did. Streamed and idempotent: only users still without one."""
    done = 0
    async for doc in store.users.find({"username": {"$exists": False}}, {"email": 1, "workspace_id": 1}).sort(
        [("_id", 1)]
    ):
        for attempt in range(USERNAME_ATTEMPTS):
            name = await free_username(store, doc["workspace_id"], doc.get("email", ""), attempt)
            try:
                result = await store.users.update_one(
                    {"_id": doc["_id"], "username": {"$exists": False}}, {"$set": {"username": name}}
                )
            except DuplicateKeyError:
                continue  # taken meanwhile (a signup, another process's migration): another name
            done += result.modified_count
            break
    return done


async def backfill_user_name_keys(store: Store) -> int:
    """Start-up migration: users stored before name_key existed get it; how many did. Idempotent."""
    done = 0
    async for doc in store.users.find({"name_key": {"$exists": False}}, {"fullname": 1}):
        await store.users.update_one(
            {"_id": doc["_id"]}, {"$set": {"name_key": user_name_key(doc.get("fullname", ""), doc["_id"])}}
        )
        done += 1
    return done


class AccountService:
    def __init__(
        self,
        store: Store,
        issuer: TokenIssuer,
        passwords: PasswordHashing,
        config: AuthConfig,
        limits: LimitsConfig,
        limiter: RateLimiter,
        *,
        outbox: Outbox | None = None,
        sessions: SessionCutoffs | None = None,
        on_signup: Callable[[dict[str, Any], dict[str, Any], bool], Awaitable[None]] | None = None,
    ):
        # (user, workspace, workspace_created) after a signup: ChatService.workspace_joined, the default channels.
        self.on_signup = on_signup
        self.outbox = outbox
        self.sessions = sessions
        self.store = store
        self.issuer = issuer
        # Signs avatar_url in every user payload (app.services.people serves what it names).
        self.avatars = issuer.url_signer(AVATAR_URLS)
        self.passwords = passwords
        self.config = config
        self.limits = limits
        self.limiter = limiter

    async def signup(self, body: SignupIn, client_ip: str) -> AuthOut:
        await self.limiter.hit(
            f"signup:ip:{client_ip}", limit=self.limits.signup_per_hour_per_ip, window=3600, what="signups"
        )
        if (body.workspace is None) == (body.invite_code is None):
            raise APIError(
                422,
                "validation_failed",
                "give either a new workspace name or an invite code",
                fields={"workspace": "Give either a new workspace name or an invite code"},
            )
        email = normalize_email(body.email)
        now = utcnow()
        user_id = new_id()
        if body.invite_code is not None:
            workspace = await self.store.workspaces.find_one({"invite_code": {"$eq": body.invite_code}})
            if workspace is None:
                raise invalid("invite_code", "No workspace has this invite code")
        else:
            workspace = {
                "_id": new_id(),
                "name": body.workspace.strip(),
                "name_key": body.workspace.strip().casefold(),
                "owner_id": user_id,
                "invite_code": new_secret(9),
                "created_at": now,
                # Its default channels (ChatService.workspace_joined); the array exists from the start, as the
                # embedded server's $addToSet on a missing field does nothing.
                "default_chat_ids": [],
            }
            if await self.store.workspaces.find_one({"name_key": {"$eq": workspace["name_key"]}}, {"_id": 1}):
                raise conflict("workspace_taken", "a workspace with this name exists")
        given = normalize_username(body.username) if body.username is not None else None
        if given in ALL_NAMES:
            raise invalid("username", f"@{given} would mention everyone in a chat: choose another username")
        user = {
            "_id": user_id,
            "workspace_id": workspace["_id"],
            "fullname": body.fullname.strip(),
            "name_key": user_name_key(body.fullname.strip(), user_id),
            "email": email,
            "password_hash": await self.passwords.hash(body.password),
            "created_at": now,
        }
        # The user first: a duplicate email must not leave an ownerless workspace behind. The unique indexes
        # tell a taken email from a taken username (given: a 409; derived: the next one to try).
        for attempt in range(USERNAME_ATTEMPTS):
            user["username"] = given or await free_username(self.store, workspace["_id"], email, attempt)
            try:
                await self.store.users.insert_one(user)
                break
            except DuplicateKeyError as e:
                if not is_username_clash(e):
                    raise conflict("email_taken", "an account with this email exists") from None
                if given is not None:
                    raise conflict("username_taken", "someone in this workspace has this username") from None
        else:
            raise conflict("username_taken", "no free username could be derived; give one")
        if body.invite_code is None:
            try:
                await self.store.workspaces.insert_one(workspace)
            except DuplicateKeyError:
                await self.store.users.delete_one({"_id": user_id})
                raise conflict("workspace_taken", "a workspace with this name exists") from None
            except BaseException:
                await self.store.users.delete_one({"_id": user_id})
                raise
        if self.on_signup is not None:
            await self.on_signup(user, workspace, body.invite_code is None)
        return await self._session(user, workspace)

    async def signin(self, email: str, password: str, client_ip: str) -> AuthOut:
        email = normalize_email(email)
        # Per IP against spraying many accounts; per (account, IP) against guessing one password; per
        # account only a high ceiling against many IPs: a low one would let any stranger lock the owner out.
        await self.limiter.hit(
            f"signin:ip:{client_ip}", limit=self.limits.signin_per_minute_per_ip, window=60, what="sign-in attempts"
        )
        await self.limiter.hit(
            f"signin:ip-account:{client_ip}/{email}", limit=self.limits.signin_per_minute_per_account_per_ip,
            window=60, what="sign-in attempts",
        )
        await self.limiter.hit(
            f"signin:account:{email}", limit=self.limits.signin_per_minute_per_account, window=60,
            what="sign-in attempts",
        )
        user = await self.store.users.find_one({"email": {"$eq": email}})
        # Verify against a dummy hash for unknown emails: same answer, same time.
        ok = await self.passwords.verify(user["password_hash"] if user else None, password)
        if not ok or user is None:
            raise APIError(401, "invalid_credentials", INVALID_CREDENTIALS)
        if self.passwords.needs_rehash(user["password_hash"]):
            # Only now is the password at hand: old-parameter hashes (parallelism 4) move to today's.
            new_hash = await self.passwords.hash(password)
            await self.store.users.update_one(
                {"_id": user["_id"], "password_hash": {"$eq": user["password_hash"]}},
                {"$set": {"password_hash": new_hash}},
            )
        workspace = await self.store.workspaces.find_one({"_id": user["workspace_id"]})
        if workspace is None:
            raise APIError(401, "invalid_credentials", INVALID_CREDENTIALS)
        return await self._session(user, workspace)

    async def refresh(self, refresh_token: str) -> AuthOut:
        """Rotation: each refresh token works once; showing a used one again revokes them all."""
        key = _token_key(refresh_token)
        record = await self.store.refresh_tokens.find_one_and_update(
            {"_id": key, "used": {"$exists": False}}, {"$set": {"used": 1}, "$currentDate": {"used_at": True}}
        )
        if record is None:
            stale = await self.store.refresh_tokens.find_one({"_id": key}, {"user_id": 1})
            if stale is not None:
                # A rotated token shown again: one of its holders is a thief, and which is unknown, so
                # every session ends, the access tokens it may have handed out as well.
                await self.end_sessions(stale["user_id"])
                raise APIError(401, "refresh_token_reused", "this refresh token was already used; sign in again")
            raise APIError(401, "invalid_refresh_token", "the refresh token is not valid; sign in again")
        if record["expires_at"] <= utcnow():
            raise APIError(401, "invalid_refresh_token", "the refresh token has expired; sign in again")
        user = await self.store.users.find_one({"_id": record["user_id"]})
        workspace = user and await self.store.workspaces.find_one({"_id": user["workspace_id"]})
        if not user or not workspace:
            raise APIError(401, "invalid_refresh_token", "the refresh token is not valid; sign in again")
        return await self._session(user, workspace, family_id=record["family_id"])

    async def logout(self, user_id: str, refresh_token: str) -> None:
        await self.store.refresh_tokens.delete_one({"_id": _token_key(refresh_token), "user_id": {"$eq": user_id}})

    async def logout_all(self, user_id: str) -> None:
        """Every session of the user ends: refresh tokens now, access tokens issued until now on every
        api process (their cached instant) and open streams on every notify process (the event)."""
        await self.end_sessions(user_id)

    async def end_sessions(self, user_id: str, keep_refresh_token: str | None = None) -> float:
        """Refresh tokens deleted (but `keep_refresh_token`, the caller's own, on a password change), then
        "tokens valid after" = now, published as `sessions.revoked`.

        Also what a password change calls. The instant is a number (the embedded server would
        store a `$set` datetime as a string), and `$max` so two calls racing never move it back.
        """
        # Whole milliseconds, as tokens carry `iat`: a sign-in in the same millisecond still counts.
        valid_after = math.floor(time.time() * 1000) / 1000

        async def change() -> None:
            revoked: dict[str, Any] = {"user_id": {"$eq": user_id}}
            if keep_refresh_token is not None:
                revoked["_id"] = {"$ne": _token_key(keep_refresh_token)}
            await self.store.refresh_tokens.delete_many(revoked)
            await self.store.users.update_one({"_id": user_id}, {"$max": {VALID_AFTER_FIELD: valid_after}})

        if self.outbox is None:
            await change()
        else:
            event = events.make_event(
                events.SESSIONS_REVOKED, {"user_id": user_id, "valid_after": valid_after}, user_id=user_id)
            await self.outbox.apply(event, Check("users", user_id, "gte", VALID_AFTER_FIELD, valid_after), change)
        if self.sessions is not None:
            self.sessions.learned(user_id, valid_after)
        return valid_after

    async def _session(self, user: dict[str, Any], workspace: dict[str, Any], family_id: str | None = None) -> AuthOut:
        refresh_token = new_secret(32)
        now = utcnow()
        await self.store.refresh_tokens.insert_one(
            {
                "_id": _token_key(refresh_token),
                "user_id": user["_id"],
                "family_id": family_id or new_id(),
                "created_at": now,
                "expires_at": now + datetime.timedelta(seconds=self.config.refresh_token_ttl_seconds),
            }
        )
        return AuthOut(
            access_token=self.issuer.issue(user["_id"], workspace["_id"]),
            refresh_token=refresh_token,
            token_type="Bearer",
            expires_in=self.issuer.ttl,
            user=me_out(user, self.avatars),
            workspace=workspace_out(workspace, user["_id"]),
        )

    async def me(self, user_id: str) -> MeOut:
        user = await self.store.users.find_one({"_id": user_id})
        if user is None:
            raise not_found("user")
        return me_out(user, self.avatars)

    async def workspace(self, workspace_id: str, viewer_id: str) -> WorkspaceOut:
        doc = await self.store.workspaces.find_one({"_id": workspace_id})
        if doc is None:
            raise not_found("workspace")
        return workspace_out(doc, viewer_id)
