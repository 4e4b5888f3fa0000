"""Keyset pages: one index range per page, opaque cursors naming the last key handed out, and the unpaged bound."""

from __future__ import annotations

import base64
import binascii
import zlib
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import msgspec
from pymongo.asynchronous.collection import AsyncCollection

from app.errors import APIError
from app.schemas.common import PageQuery

T = TypeVar("T")

# A request without `limit` (an old client) gets today's unpaged array, cut at this many rows.
UNPAGED_MAX = 1000
# The page size of a request that gives a cursor but no limit, and the largest page (schemas.common.PageLimit).
DEFAULT_PAGE = 100
MAX_PAGE = 200
# Sorts below every character a name can hold, so "ada" + SEP + id comes before "ada b" + SEP + id.
# Not "\x00": neosqlite cuts a bound string parameter at a NUL, which silently skips rows.
SEP = "\x01"
# A forged cursor must not make the server inflate megabytes.
_MAX_DECODED_BYTES = 65536


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a listing; `next_cursor` is None at the end."""

    items: list[T]
    next_cursor: str | None


def page_size(query: PageQuery) -> int:
    if query.paged:
        return query.limit or DEFAULT_PAGE
    return UNPAGED_MAX


def sort_key(name: str, unique: str) -> str:
    """A unique key ordering by name, case-insensitively: casefold(name) + SEP + a unique id."""
    return name.casefold().replace("\x00", "") + SEP + unique


def prefix_range(prefix: str) -> tuple[str, str | None] | None:
    """[lo, hi) holding exactly the keys that start with casefold(prefix): an index range where `^p` scans."""
    lo = prefix.casefold().replace("\x00", "")
    if not lo:
        return None
    hi = lo
    while hi and ord(hi[-1]) == 0x10FFFF:
        hi = hi[:-1]
    if not hi:
        return lo, None  # only strings starting with lo are >= lo
    nxt = ord(hi[-1]) + 1
    if 0xD800 <= nxt <= 0xDFFF:  # surrogates cannot be encoded: skip over them
        nxt = 0xE000
    return lo, hi[:-1] + chr(nxt)


def bad_cursor() -> APIError:
    return APIError(422, "validation_failed", "invalid query: cursor: not a cursor of this listing",
                    fields={"cursor": "not a cursor of this listing; start again without it"})


def encode_cursor(kind: str, value: Any) -> str:
    """base64url of [kind, value] as JSON, deflated when that is shorter (a search cursor names many chats)."""
    raw = msgspec.json.encode([kind, value])
    packed = zlib.compress(raw, 9)
    data = b"z" + packed if len(packed) + 1 < len(raw) + 1 else b"j" + raw
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def decode_cursor(kind: str, cursor: str, type_: Any) -> Any:
    """The value `encode_cursor(kind, value)` wrapped; a 422 for anything else, never a 5xx."""
    try:
        data = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True)
        if data[:1] == b"z":
            inflater = zlib.decompressobj()
            raw = inflater.decompress(data[1:], _MAX_DECODED_BYTES)
            if inflater.unconsumed_tail or inflater.unused_data or not inflater.eof:
                raise ValueError("cursor too large or truncated")
        elif data[:1] == b"j":
            raw = data[1:]
        else:
            raise ValueError("unknown cursor format")
        got_kind, value = msgspec.json.decode(raw, type=tuple[str, type_])
    except (ValueError, TypeError, binascii.Error, zlib.error, msgspec.DecodeError):
        raise bad_cursor() from None
    if got_kind != kind:
        raise bad_cursor()
    return value


def cursor_after(kind: str, query: PageQuery, type_: Any = str) -> Any:
    """The key the page before handed out last (its `next_cursor`), None for a first page; 422 for another's."""
    return decode_cursor(kind, query.cursor, type_) if query.cursor is not None else None


async def key_page(
    collection: AsyncCollection,
    kind: str,
    query: PageQuery,
    equal: dict[str, Any],
    key: str,
    *,
    type_: Any = str,
    lo: Any = None,
    hi: Any = None,
    projection: dict[str, Any] | None = None,
) -> Page[dict[str, Any]]:
    """The page of documents `query` asks for, one `key_range`, its next_cursor naming the last key."""
    docs, more = await key_range(collection, equal, key, after=cursor_after(kind, query, type_), lo=lo, hi=hi,
                                 limit=page_size(query), projection=projection)
    return Page(docs, encode_cursor(kind, docs[-1][key]) if more else None)


async def key_range(
    collection: AsyncCollection,
    equal: dict[str, Any],
    key: str,
    *,
    after: Any = None,
    lo: Any = None,
    hi: Any = None,
    limit: int,
    projection: dict[str, Any] | None = None,
) -> tuple[list[dict[str, Any]], bool]:
    """Up to `limit` documents in ascending `key` after `after` within [lo, hi), and whether more follow.

    One range of the index (equal fields..., key): every equality as $eq and the key as a range, the
    shape both the embedded server and MongoDB serve from the index, sorted, stopping at the limit.
    """
    query: dict[str, Any] = {field: {"$eq": value} for field, value in equal.items()}
    bound: dict[str, Any] = {}
    if after is not None and (lo is None or after >= lo):
        bound["$gt"] = after
    elif lo is not None:
        bound["$gte"] = lo
    if hi is not None:
        bound["$lt"] = hi
    if bound:
        query[key] = bound
    cursor = collection.find(query, projection).sort([(key, 1)]).limit(limit + 1)
    docs = await cursor.to_list()
    return docs[:limit], len(docs) > limit
