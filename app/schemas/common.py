"""Building blocks shared by every schema module."""

from __future__ import annotations

import re
from typing import Annotated

import msgspec

# The one id pattern: what new_id() makes, what a path may name, what a body may reference.
ID_PATTERN = r"^[A-Za-z0-9_-]+$"
ID_MAX_LENGTH = 64
_VALID_ID = re.compile(ID_PATTERN)


class Request(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A request body: unknown fields are refused so a typo is never silently ignored."""


class Response(msgspec.Struct, kw_only=True):
    """A response body."""


Id = Annotated[str, msgspec.Meta(min_length=1, max_length=ID_MAX_LENGTH, pattern=ID_PATTERN)]
Email = Annotated[
    str, msgspec.Meta(min_length=3, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", examples=["ada@example.com"])
]
Password = Annotated[str, msgspec.Meta(min_length=8, max_length=256)]
PersonName = Annotated[str, msgspec.Meta(min_length=1, max_length=100, pattern=r"\S")]
Timestamp = Annotated[str, msgspec.Meta(description="RFC 3339 UTC", examples=["2026-11-22T15:33:14.123Z"])]


def valid_id(value: str) -> bool:
    """Ids in paths: anything else is a 404 without asking MongoDB."""
    return 0 < len(value) <= ID_MAX_LENGTH and _VALID_ID.fullmatch(value) is not None
