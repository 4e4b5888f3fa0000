"""People: profiles, usernames, avatars, password changes, the users directory and `user.updated`."""

from __future__ import annotations

import asyncio
import functools
import re
import zoneinfo
from dataclasses import dataclass
from typing import Any

import msgspec
from bson import Binary
from pymongo.errors import DuplicateKeyError

from app import events, images
from app.auth import Identity
from app.errors import APIError, conflict, invalid, not_found
from app.outbox import Check, Outbox
from app.schemas.accounts import USER_FIELDS, MeOut, UserOut, UsersQuery, avatar_version, me_out, user_out
from app.schemas.common import valid_id
from app.schemas.people import AVATAR_MAX_BYTES, AVATAR_SIZES, AvatarQuery, PasswordChangeIn, ProfileIn
from app.services import membership
from app.services.accounts import AccountService, normalize_username, user_name_key
from app.services.mentions import ALL_NAMES
from app.services.paging import Page, cursor_after, encode_cursor, key_range, page_size, prefix_range
from app.store import Store, new_id

# The id of the last user.updated event, compared-and-set by every profile change so events follow writes.
PROFILE_VERSION_FIELD = "profile_version"
PROFILE_ATTEMPTS = 5
# The fields of a user document every people read needs (the payload, and what authorizes it).
_PROJECTION = {**USER_FIELDS, "workspace_id": 1, "created_at": 1, PROFILE_VERSION_FIELD: 1}
# A versioned avatar URL names one picture for ever; an unversioned or stale one is checked each time.
IMMUTABLE = "private, max-age=31536000, immutable"
REVALIDATE = "private, no-cache"


@functools.cache
def _time_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


# The shape of an IANA name, for a system without a tz database (zoneinfo then knows no zone at all).
_ZONE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+){0,2}$")


def valid_time_zone(name: str) -> bool:
    """An IANA zone name as the system's tz database knows it ("Europe/Paris", "UTC")."""
    zones = _time_zones()
    return name in zones if zones else _ZONE_NAME.fullmatch(name) is not None


def initials_of(fullname: str) -> str:
    """Up to two initials: the first letters of the first and last words ("Ada King Lovelace" → "AL")."""
    words = [w for w in fullname.split() if w[:1].isalnum()]
    if not words:
        return ""
    return (words[0][0] + (words[-1][0] if len(words) > 1 else "")).upper()


@dataclass(frozen=True)
class Avatar:
    """One avatar image as served: its bytes, ETag and Cache-Control; `body` None for a 304."""

    body: bytes | None
    etag: str
    cache_control: str


class PeopleService:
    def __init__(self, store: Store, outbox: Outbox, accounts: AccountService):
        self.store = store
        self.outbox = outbox
        self.accounts = accounts
        self.signer = accounts.avatars
        self.limiter = accounts.limiter
        self.limits = accounts.limits

    # -- reading --------------------------------------------------------------------------------

    async def _user(self, user_id: str, workspace_id: str) -> dict[str, Any]:
        """One point read; 404 for an id outside the caller's workspace, as for one that does not exist."""
        if not valid_id(user_id):
            raise not_found("user")
        doc = await self.store.users.find_one({"_id": user_id}, _PROJECTION)
        if doc is None or doc.get("workspace_id") != workspace_id:
            raise not_found("user")
        return doc

    async def user(self, viewer: Identity, user_id: str) -> UserOut:
        return user_out(await self._user(user_id, viewer.workspace_id), self.signer)

    async def users(self, viewer: Identity, query: UsersQuery) -> Page[UserOut]:
        """The workspace's users by name (index workspace_id, name_key); `q` a prefix of the username or
        of the fullname, each one range of its own index, merged (see `_matching`). Unpaged: by fullname."""
        limit = page_size(query)
        equal = {"workspace_id": viewer.workspace_id}
        # Only leading spaces go: "ada " is a prefix of "ada king" and not of "adam".
        prefix = prefix_range(query.q.lstrip()) if query.q and query.q.strip() else None
        if prefix is None:
            # lo "": a range of the index (a document without name_key yet is not in it, nor listed).
            docs, more = await key_range(self.store.users, equal, "name_key", after=cursor_after("users", query),
                                         lo="", limit=limit, projection={**_PROJECTION, "name_key": 1})
            cursor = encode_cursor("users", docs[-1]["name_key"]) if more and docs else None
        else:
            docs, cursor = await self._matching(equal, prefix, query, limit)
        if not query.paged:
            docs.sort(key=lambda doc: (doc["fullname"], doc["_id"]))
        return Page([user_out(doc, self.signer) for doc in docs], cursor)

    async def _matching(self, equal: dict[str, Any], prefix: tuple[str, str | None], query: UsersQuery,
                        limit: int) -> tuple[list[dict[str, Any]], str | None]:
        """Users whose fullname or username starts with the prefix: two index ranges, merged in key order.

        Both keys are lower-case (name_key is the casefolded fullname, usernames are stored lower-case). A
        user matched by both comes from the fullname range alone: the username range skips anyone whose
        name_key also starts with the prefix, so each user is served once over all pages. The cursor is
        the last key taken from each range.
        """
        lo, hi = prefix
        after_name, after_username = cursor_after("users-q", query, tuple[str | None, str | None]) or (None, None)
        projection = {**_PROJECTION, "name_key": 1}
        by_name, more_names = await key_range(self.store.users, equal, "name_key", after=after_name, lo=lo, hi=hi,
                                              limit=limit, projection=projection)
        by_username, more_usernames = await key_range(self.store.users, equal, "username", after=after_username,
                                                      lo=lo, hi=hi, limit=limit, projection=projection)
        # Past the last row read of a range that has more, its unread rows might come first: stop there.
        bounds = [rows[-1][key] for rows, more, key in ((by_name, more_names, "name_key"),
                                                        (by_username, more_usernames, "username")) if more]
        bound = min(bounds) if bounds else None
        merged = sorted([(doc["name_key"], 0, doc) for doc in by_name]
                        + [(doc["username"], 1, doc) for doc in by_username], key=lambda row: row[0])
        out: list[dict[str, Any]] = []
        last = [after_name, after_username]
        stopped = False
        for key, source, doc in merged:
            if len(out) == limit or (bound is not None and key > bound):
                stopped = True
                break
            last[source] = key
            if source == 1 and doc.get("name_key", "").startswith(lo):
                continue  # served by the fullname range
            out.append(doc)
        more = stopped or more_names or more_usernames
        return out, encode_cursor("users-q", last) if more else None

    # -- changing one's profile -----------------------------------------------------------------

    async def update_me(self, me: Identity, body: ProfileIn) -> MeOut:
        fields: dict[str, Any] = {}
        if body.fullname is not None:
            fields["fullname"] = body.fullname.strip()
            fields["name_key"] = user_name_key(fields["fullname"], me.user_id)
        if body.username is not None:
            username = normalize_username(body.username)
            if username in ALL_NAMES:
                raise invalid("username", f"@{username} would mention everyone in a chat: choose another username")
            fields["username"] = username
        if body.status_text is not None:
            fields["status_text"] = body.status_text.strip()
        if body.status_emoji is not None:
            fields["status_emoji"] = body.status_emoji.strip()
        if body.timezone is not None:
            zone = body.timezone.strip()
            if zone and not valid_time_zone(zone):
                raise invalid("timezone", f"Time zone {zone[:64]!r} is not a known IANA time zone, like Europe/Paris")
            fields["timezone"] = zone
        if self.limiter.enabled:
            await self.limiter.per_user("profile", me.user_id, limit=self.limits.chat_updates_per_minute_per_user,
                                        window=60, what="profile changes")
        return me_out(await self._change(me, fields), self.signer)

    async def _change(self, me: Identity, fields: dict[str, Any]) -> dict[str, Any]:
        """`fields` set on the caller's document with one `user.updated` event; the document after.

        Compare-and-set on the profile version, so two changes racing publish their events in the order
        their writes landed, each carrying the user as that write left it."""
        for _ in range(PROFILE_ATTEMPTS):
            doc = await self.store.users.find_one({"_id": me.user_id}, _PROJECTION)
            if doc is None:
                raise not_found("user")
            after = {**doc, **fields}
            if all(doc.get(k) == v for k, v in fields.items()):
                return doc  # nothing changes: no write, no event
            chats = sorted(await membership.user_chat_ids(self.store, me.user_id))
            event = events.make_event(
                events.USER_UPDATED, msgspec.to_builtins(user_out(after, self.signer)), user_id=me.user_id,
                workspace_id=doc["workspace_id"], actor_id=me.user_id, chat_ids=chats, recipients=[me.user_id])
            previous = doc.get(PROFILE_VERSION_FIELD)
            guard: dict[str, Any] = {"_id": me.user_id, PROFILE_VERSION_FIELD: (
                {"$eq": previous} if previous is not None else {"$exists": False})}
            update = {"$set": {**fields, PROFILE_VERSION_FIELD: event.id}}

            async def change() -> int:
                try:
                    result = await self.store.users.update_one(guard, update)
                except DuplicateKeyError:
                    raise conflict("username_taken", "Someone in this workspace already has this username") from None
                if result.matched_count == 0:
                    raise _Raced()
                return result.matched_count

            try:
                await self.outbox.apply(
                    event, Check("users", me.user_id, "eq", PROFILE_VERSION_FIELD, event.id), change)
            except _Raced:
                continue
            return {**after, PROFILE_VERSION_FIELD: event.id}
        raise APIError(409, "conflict", "Your profile is being changed elsewhere at the same time; try again")

    # -- avatars --------------------------------------------------------------------------------

    async def set_avatar(self, me: Identity, data: bytes) -> MeOut:
        """The upload re-encoded as square PNGs of AVATAR_SIZES (its own bytes are never kept); the old
        picture's documents deleted once the user names the new one."""
        if len(data) > AVATAR_MAX_BYTES:
            raise invalid("file", f"The picture must be at most {AVATAR_MAX_BYTES // (1024 * 1024)} MB")
        if self.limiter.enabled:
            await self.limiter.per_user("avatars", me.user_id, limit=self.limits.uploads_per_minute_per_user,
                                        window=60, what="picture uploads")
        try:
            # Decoding and resizing are CPU work: off the event loop.
            pngs = await asyncio.to_thread(images.square_pngs, data, AVATAR_SIZES)
        except images.ImageRefused as e:
            raise invalid("file", str(e)) from None
        avatar_id = new_id()
        await self.store.avatars.insert_many([
            {"_id": f"{avatar_id}.{size}", "user_id": me.user_id, "data": Binary(png)} for size, png in pngs.items()
        ])
        previous = await self.store.users.find_one({"_id": me.user_id}, {"avatar_id": 1})
        try:
            doc = await self._change(me, {"avatar_id": avatar_id})
        except BaseException:
            await self.store.avatars.delete_many({"_id": {"$in": [f"{avatar_id}.{s}" for s in AVATAR_SIZES]}})
            raise
        old = (previous or {}).get("avatar_id")
        if old and old != avatar_id:
            await self.store.avatars.delete_many({"_id": {"$in": [f"{old}.{s}" for s in AVATAR_SIZES]}})
        return me_out(doc, self.signer)

    async def avatar(self, viewer: Identity | None, user_id: str, query: AvatarQuery,
                     if_none_match: str | None) -> Avatar:
        """The user's picture (or initials image) at `query.size`. Loaded by an <img>, which sends no token,
        through avatar_url's signature; otherwise the caller's token, and only within its workspace."""
        signed = bool(query.v and query.sig and valid_id(user_id) and self.signer.valid(query.sig, user_id, query.v))
        if not signed and viewer is None:
            raise APIError(401, "unauthorized", "an access token (or the avatar_url's signature) is required",
                           headers={"WWW-Authenticate": "Bearer"})
        if not valid_id(user_id):
            raise not_found("user")
        doc = await self.store.users.find_one({"_id": user_id}, {"fullname": 1, "avatar_id": 1, "workspace_id": 1})
        if doc is None or (not signed and doc.get("workspace_id") != viewer.workspace_id):  # type: ignore[union-attr]
            raise not_found("user")
        version = avatar_version(doc)
        etag = f'"{version}.{query.size}"'
        cache = IMMUTABLE if signed and query.v == version else REVALIDATE
        if if_none_match and etag in {tag.strip() for tag in if_none_match.split(",")}:
            return Avatar(None, etag, cache)
        if doc.get("avatar_id"):
            stored = await self.store.avatars.find_one({"_id": f"{doc['avatar_id']}.{query.size}"})
            if stored is not None:
                return Avatar(bytes(stored["data"]), etag, cache)
        png = images.initials_png(initials_of(doc.get("fullname", "")), user_id, query.size)
        return Avatar(png, etag, cache)

    # -- passwords ------------------------------------------------------------------------------

    async def change_password(self, me: Identity, body: PasswordChangeIn) -> None:
        """The new hash, then every session ended but the one whose refresh token is given: every other
        refresh token revoked, and every access token issued until now refused on both roles."""
        if self.limiter.enabled:
            await self.limiter.per_user("password", me.user_id, limit=self.limits.signin_per_minute_per_account,
                                        window=60, what="password attempts")
        user = await self.store.users.find_one({"_id": me.user_id}, {"password_hash": 1})
        if user is None:
            raise not_found("user")
        passwords = self.accounts.passwords
        if not await passwords.verify(user["password_hash"], body.current_password):
            raise APIError(422, "wrong_password", "The current password is not right",
                           fields={"current_password": "The current password is not right"})
        if body.new_password == body.current_password:
            raise invalid("new_password", "The new password must differ from the current one")
        new_hash = await passwords.hash(body.new_password)
        await self.store.users.update_one({"_id": me.user_id}, {"$set": {"password_hash": new_hash}})
        await self.accounts.end_sessions(me.user_id, keep_refresh_token=body.refresh_token)


class _Raced(Exception):
    """Another change of the same profile landed between the read and the write."""
