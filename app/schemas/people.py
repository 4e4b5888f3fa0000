"""Bodies of the people routes: profile edits, password change, avatar upload and query."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from app.schemas.accounts import Token, Username
from app.schemas.common import ONE_LINE, Password, PersonName, Request

StatusText = Annotated[str, msgspec.Meta(max_length=100, pattern=ONE_LINE, examples=["In a meeting"])]
# One emoji can be several code points (skin tone, joiners, flags): room for a sequence, not for a sentence.
StatusEmoji = Annotated[str, msgspec.Meta(max_length=16, pattern=ONE_LINE, examples=["📅"])]
TimeZone = Annotated[str, msgspec.Meta(max_length=64, description="An IANA time zone, \"\" to clear",
                                       examples=["Europe/Paris"])]
# The largest avatar upload, before it is re-encoded.
AVATAR_MAX_BYTES = 5 * 1024 * 1024
AVATAR_SIZES = (256, 64)


class ProfileIn(Request, omit_defaults=True):
    """Only the fields given change."""

    fullname: PersonName | None = None
    username: Username | None = None
    status_text: StatusText | None = None
    status_emoji: StatusEmoji | None = None
    timezone: TimeZone | None = None


class PasswordChangeIn(Request):
    current_password: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
    new_password: Password
    # The caller's own session, kept: its refresh token goes on working (every other one is revoked).
    refresh_token: Token | None = None


class AvatarUploadIn(msgspec.Struct):
    """multipart/form-data with one part `file`: a PNG, JPEG, GIF or WebP image of at most 5 MB."""

    file: bytes


class AvatarQuery(msgspec.Struct, kw_only=True):
    size: Literal[64, 256] = 256
    # What avatar_url carries: the picture's version and the signature that lets an <img> load it.
    v: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    sig: Annotated[str, msgspec.Meta(max_length=64)] | None = None
