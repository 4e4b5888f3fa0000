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
Password = Annotated[str, msgspec.Meta(min_length=8, max_length=256)]
# Characters that show nothing: whitespace, controls, zero-widths and joiners, bidi controls, fillers,
# variation selectors and tags. A name made only of these looks blank in every list, so it is refused.
_INVISIBLE = (
    "\\s\\x00-\\x1f\\x7f-\\x9f\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f"
    "\u202a-\u202e\u2060-\u206f\u2800\u3164\ufe00-\ufe0f\ufeff\uffa0"
    "\U0001d173-\U0001d17a\U000e0000-\U000e007f\U000e0100-\U000e01ef"
)
# One character outside that set: the pattern of every name (people, workspaces, chats).
VISIBLE = f"[^{_INVISIBLE}]"
# A line of text without control characters ("" allowed).
ONE_LINE = r"^[^\x00-\x1f\x7f]*$"
PersonName = Annotated[str, msgspec.Meta(min_length=1, max_length=100, pattern=VISIBLE)]
# No invisible character anywhere in an address: `ada\u200b@example.com` would show as Ada's own in every
# list of users, a different account that looks the same. (Sign-in takes any string: nothing to refuse there.)
_EMAIL_CHAR = f"[^@{_INVISIBLE}]"
EMAIL_PATTERN = f"^{_EMAIL_CHAR}+@{_EMAIL_CHAR}+\\.{_EMAIL_CHAR}+$"
Email = Annotated[str, msgspec.Meta(min_length=3, max_length=254, pattern=EMAIL_PATTERN, examples=["ada@example.com"])]
Timestamp = Annotated[str, msgspec.Meta(description="RFC 3339 UTC", examples=["2026-11-22T15:33:14.123Z"])]


def valid_id(value: str) -> bool:
    """Ids in paths: anything else is a 404 without asking MongoDB."""
    return 0 < len(value) <= ID_MAX_LENGTH and _VALID_ID.fullmatch(value) is not None


PageLimit = Annotated[
    int, msgspec.Meta(ge=1, le=200, description="Rows per page (1..200). Without limit and cursor: the unpaged array")
]
Cursor = Annotated[
    # Short enough that any string of this length, percent-encoded, fits in Tornado's 64 KiB request head.
    str, msgspec.Meta(min_length=1, max_length=4096, description="The next_cursor of the previous page (opaque)")
]


class PageQuery(msgspec.Struct, kw_only=True):
    """?limit=&cursor=: either one asks for a page `{<items>, next_cursor}`; neither, the old unpaged array."""

    limit: PageLimit | None = None
    cursor: Cursor | None = None

    @property
    def paged(self) -> bool:
        return self.limit is not None or self.cursor is not None
