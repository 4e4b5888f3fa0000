"""Handlers for people: a user, one's profile, avatars, password change."""

from __future__ import annotations

from tornado.httputil import HTTPFile, HTTPInputError, parse_body_arguments

from app.auth import Identity
from app.errors import APIError
from app.openapi import Operation
from app.schemas.accounts import MeOut, UserOut
from app.schemas.people import AVATAR_MAX_BYTES, AvatarQuery, AvatarUploadIn, PasswordChangeIn
from app.web import authenticated, route
from roles.api.base import ApiHandler

TAGS = ("users",)
# Room for the multipart envelope around the picture itself.
MULTIPART_OVERHEAD = 16384


class UserHandler(ApiHandler):
    api_doc = {
        "get": Operation("A user of the caller's workspace", responses={200: UserOut}, errors=(404,), tags=TAGS)
    }

    @authenticated
    async def get(self, user_id: str) -> None:
        self.write_json(await self.services.people.user(self.current_user, user_id))


class MyAvatarHandler(ApiHandler):
    api_doc = {
        "put": Operation(
            "Set the caller's picture (multipart field `file`: PNG, JPEG, GIF or WebP, at most 5 MB); it is "
            "re-encoded as square PNGs of 256 and 64 pixels and the upload itself is not kept",
            body=AvatarUploadIn, body_content_type="multipart/form-data", responses={200: MeOut},
            errors=(400, 413, 422, 429), tags=TAGS,
        )
    }
    max_body_bytes = AVATAR_MAX_BYTES + MULTIPART_OVERHEAD

    def body_timeout(self) -> float:
        return self.config.files.body_timeout_seconds

    @authenticated
    async def put(self) -> None:
        arguments: dict[str, list[bytes]] = {}
        files: dict[str, list[HTTPFile]] = {}
        try:
            parse_body_arguments(self.request.headers.get("Content-Type", ""), self.body, arguments, files,
                                 self.request.headers)
        except HTTPInputError as e:
            raise APIError(400, "bad_request", f"invalid multipart body: {e}") from None
        parts = files.get("file")
        if not parts or len(parts) > 1:
            message = "Choose one picture to upload (a multipart/form-data part named file)"
            raise APIError(422, "validation_failed", message, fields={"file": message})
        self.write_json(await self.services.people.set_avatar(self.current_user, parts[0].body))


class AvatarHandler(ApiHandler):
    api_doc = {
        "get": Operation(
            "A user's picture as PNG (the initials on a colour when none is set), with ETag and Cache-Control. "
            "Authorized by the caller's token, or by the signature in the user's avatar_url (for <img>)",
            query=AvatarQuery, responses={200: bytes, 304: None}, response_content_type="image/png",
            errors=(404,), tags=TAGS,
        )
    }

    async def optional_user(self) -> Identity | None:
        """The caller when a token is given and live; an <img> sends none and is authorized by the URL."""
        if self.bearer_token() is None:
            return None
        try:
            return await self.require_live_user()
        except APIError:
            return None

    async def get(self, user_id: str) -> None:
        query = self.parse_query(AvatarQuery)
        avatar = await self.services.people.avatar(
            await self.optional_user(), user_id, query, self.request.headers.get("If-None-Match"))
        self.set_header("ETag", avatar.etag)
        self.set_header("Cache-Control", avatar.cache_control)
        if avatar.body is None:
            self.clear_header("Content-Type")
            self.set_status(304)
            self.finish()
            return
        self.set_header("Content-Type", "image/png")
        self.set_header("Content-Security-Policy", "sandbox; default-src 'none'")
        self.finish(avatar.body)

    def compute_etag(self) -> None:
        return None  # ours is the picture's version, set above


class PasswordHandler(ApiHandler):
    api_doc = {
        "post": Operation(
            "Change the caller's password: every other session ends (refresh tokens but the given one revoked, "
            "access tokens issued until now refused on both roles, their streams closed)",
            body=PasswordChangeIn, responses={204: None}, errors=(429,), tags=TAGS,
        )
    }

    @authenticated
    async def post(self) -> None:
        body = self.parse_body(PasswordChangeIn)
        await self.services.people.change_password(self.current_user, body)
        self.no_content()


routes = [
    route("/api/users/me/avatar", MyAvatarHandler),
    route("/api/users/me/password", PasswordHandler),
    route("/api/users/{user_id}/avatar", AvatarHandler),
    route("/api/users/{user_id}", UserHandler),
]
