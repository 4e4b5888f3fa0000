"""Bodies of messages, read marks, search and files."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import msgspec

from app.file_links import FileLinks
from app.schemas.common import VISIBLE, Cursor, Id, Request, Response, Timestamp
from app.store import isoformat

# A message of zero-width characters only is an empty bubble: at least one character that shows.
Content = Annotated[
    str, msgspec.Meta(min_length=1, max_length=4000, pattern=VISIBLE, description="1..4000 characters")
]
IdempotencyKey = Annotated[
    str,
    msgspec.Meta(
        min_length=1, max_length=128,
        description="A retry with the same key from the same sender in the same chat returns the first message",
    ),
]
FileIds = Annotated[list[Id], msgspec.Meta(max_length=10)]
Seq = Annotated[int, msgspec.Meta(ge=1, le=2**53)]


class MessageCreateIn(Request):
    content: Content
    idempotency_key: IdempotencyKey | None = None
    reply_to: Id | None = None
    files: FileIds = []


class MessageUpdateIn(Request):
    content: Content


MessageKind = Literal["user", "system"]
USER_KIND, SYSTEM_KIND = "user", "system"
SystemType = Literal["joined", "left", "added", "removed", "renamed", "topic", "archived", "unarchived"]


class SystemOut(Response):
    """What a system message says happened: `type`, the people it was done to, a channel's new name or topic."""

    type: SystemType
    user_ids: list[Id] = []
    name: str | None = None


def system_out(stored: Any) -> SystemOut | None:
    if not isinstance(stored, dict) or not stored.get("type"):
        return None
    return SystemOut(type=stored["type"], user_ids=list(stored.get("user_ids") or []), name=stored.get("name"))


class ReactionOut(Response):
    """One emoji's reactions on a message: how many members, whether the caller is one, the first 20 of them."""

    emoji: str
    count: int
    me: bool
    user_ids: list[Id]


class MessageOut(Response):
    id: Id
    chat_id: Id
    seq: int
    # None only for the tombstone that fills a seq left by a send that crashed half-way.
    sender_id: Id | None
    content: str
    files: list[FileOut]
    reply_to: Id | None
    created_at: Timestamp
    edited_at: Timestamp | None
    deleted: bool
    # Members of the chat the content mentions by @username (the sender never, at most 50), and whether
    # it has @channel, @here or @everyone (app.services.mentions).
    mentions: list[Id] = []
    mentions_all: bool = False
    # "system": a line the server wrote about the chat (joined, renamed…), never unread; `system` says what.
    kind: MessageKind = USER_KIND
    system: SystemOut | None = None
    # Read per page at read time (app.services.reactions.MessageMarks), never stored in the message: by first
    # reaction time, at most 20 distinct emoji; and whether the message is pinned in its chat.
    reactions: list[ReactionOut] = []
    pinned: bool = False
    # `content` as safe HTML (CommonMark, no raw HTML, mentions as spans), rendered once when written (app.richtext).
    content_html: str = ""
    # A reply's thread (its reply_to's root, or reply_to itself); null for a root or a plain message.
    thread_root_id: Id | None = None
    # A root's replies not deleted, and when its latest reply was sent (kept when that reply is deleted).
    reply_count: int = 0
    last_reply_at: Timestamp | None = None


def message_out(doc: dict[str, Any], links: FileLinks | None = None) -> MessageOut:
    """A stored message as served; `links` signs its files' url/thumbnail_url (without it: the Bearer URL, no thumbnail)."""
    return MessageOut(
        id=doc["_id"],
        chat_id=doc["chat_id"],
        seq=doc["seq"],
        sender_id=doc.get("sender_id"),
        content=doc.get("content", ""),
        files=files_out(doc, links),
        reply_to=doc.get("reply_to"),
        created_at=isoformat(doc["created_at"]),
        edited_at=isoformat(doc.get("edited_at")),
        deleted=bool(doc.get("deleted")),
        mentions=list(doc.get("mentions") or []),
        mentions_all=bool(doc.get("mentions_all")),
        kind=doc.get("kind") or USER_KIND,
        system=system_out(doc.get("system")),
        # Stored by every write since rich text; the start-up backfill (app.services.rich_backfill) gives it to
        # older messages before the api serves: never rendered at read.
        content_html=doc.get("content_html") or "",
        thread_root_id=doc.get("thread_root_id"),
        reply_count=max(0, int(doc.get("reply_count") or 0)),
        last_reply_at=isoformat(doc.get("last_reply_at")),
    )


def stored_message(doc: dict[str, Any]) -> dict[str, Any]:
    """A message as served, as a chat keeps it for its last message; without `seq` while `doc` has none
    (a send's draft: the take that sets it also gives the seq, the chat's `last_seq`)."""
    stored = msgspec.to_builtins(message_out({**doc, "seq": doc.get("seq", 0)}))
    if "seq" not in doc:
        del stored["seq"]
    return stored


class PinOut(Response):
    message: MessageOut
    # Who pinned it, and when.
    user_id: Id
    pinned_at: Timestamp


class PinsQuery(msgspec.Struct, kw_only=True):
    limit: Annotated[int, msgspec.Meta(ge=1, le=100)] = 50
    cursor: Cursor | None = None


class PinsPage(Response):
    # Newest pin first; `next_cursor` is the `cursor` of the next page, null on the last one.
    pins: list[PinOut]
    next_cursor: str | None = None


class MessageListQuery(msgspec.Struct, kw_only=True):
    limit: Annotated[int, msgspec.Meta(ge=1, le=200)] = 50
    before: Seq | None = None
    after: Annotated[int, msgspec.Meta(ge=0, le=2**53)] | None = None
    threads: Annotated[Literal["roots"], msgspec.Meta(description=(
        "roots: only messages that are not a reply in a thread (roots and plain messages), still in seq order"
    ))] | None = None


class RepliesQuery(msgspec.Struct, kw_only=True):
    limit: Annotated[int, msgspec.Meta(ge=1, le=200)] = 50
    after: Annotated[int, msgspec.Meta(ge=0, le=2**53, description="Replies with a seq above this one")] = 0


class MessageVersionOut(Response):
    """One version of a message's text: `edited_at` is when it was written (the message's created_at for the
    original)."""

    content: str
    content_html: str
    edited_at: Timestamp


class ThreadUpdatedOut(Response):
    """The data of a `thread.updated` event: the root's counters after a reply was sent or deleted."""

    chat_id: Id
    message_id: Id
    reply_count: int
    last_reply_at: Timestamp | None


class MessagePage(Response):
    messages: list[MessageOut]
    has_more: bool


class ReadIn(Request):
    seq: Annotated[int, msgspec.Meta(ge=0, le=2**53)]


class MentionsQuery(msgspec.Struct, kw_only=True):
    limit: Annotated[int, msgspec.Meta(ge=1, le=100)] = 20
    before: Annotated[Id, msgspec.Meta(description="A message id: the next_cursor of the previous page")] | None = None


class MentionsPage(Response):
    # Newest first; only messages of the caller's chats that mention them, never deleted, never their own.
    messages: list[MessageOut]
    # The `before` of the next page; null on the last one.
    next_cursor: str | None = None


SearchHas = Literal["file", "link", "mention"]
# An instant of the `after`/`before` filters: parsed by app.services.search (422 when it is none).
SearchInstant = Annotated[
    str,
    msgspec.Meta(
        min_length=10, max_length=40, examples=["2026-11-22", "2026-11-22T15:30:00+01:00"],
        description="An ISO 8601 date (midnight UTC) or date-time (without an offset: UTC), to the millisecond",
    ),
]


class SearchQuery(msgspec.Struct, kw_only=True):
    # The upper bound is config limits.search_query_max_chars, checked by the service. Empty (or only
    # spaces) is allowed when a filter is given; else 422.
    q: Annotated[str, msgspec.Meta(max_length=1000, description=(
        "Words that must all appear, any case; may be empty when from, has, after or before is given"))] = ""
    chat_id: Id | None = None
    from_: Annotated[Id, msgspec.Meta(description="Only messages sent by this user id")] | None = msgspec.field(
        default=None, name="from")
    has: Annotated[SearchHas, msgspec.Meta(description=(
        "Only messages with a file attached, a link (http://, https:// or www.) or a mention "
        "(@username of a member, or @channel/@here/@everyone)"))] | None = None
    after: Annotated[SearchInstant, msgspec.Meta(description="Sent at or after this instant (a date: from the "
                                                 "start of that day, inclusive)")] | None = None
    before: Annotated[SearchInstant, msgspec.Meta(description="Sent before this instant (a date: before the "
                                                  "start of that day, exclusive)")] | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=100)] = 20
    cursor: Cursor | None = None


Highlight = Annotated[list[int], msgspec.Meta(min_length=2, max_length=2)]


class SearchHitOut(MessageOut):
    """A message found by search, with where its words are in `content`."""

    highlights: Annotated[list[Highlight], msgspec.Meta(description=(
        "[start, end) offsets into `content` of every occurrence of each word of q, any case, merged where "
        "they overlap or touch, in order. Offsets count Unicode code points (Python str indices), not UTF-16 "
        "code units: a JavaScript client converts them, e.g. by slicing Array.from(content)"))] = []


class SearchOut(Response):
    messages: list[SearchHitOut]
    # Null when every match was returned; a page may be short (even empty) when the scan budget ran out.
    next_cursor: str | None = None


class FileOut(Response):
    id: Id
    name: str
    size: int
    content_type: str
    # Signed (app.file_links): they work without a token until their `exp`, and only for this file.
    url: str
    # Null for a file that is not an image (or one stored before thumbnails, or refused as too large).
    thumbnail_url: str | None = None
    # The thumbnail's size in pixels (at most 400 wide), so a page can hold its place while it loads.
    thumbnail_width: int | None = None
    thumbnail_height: int | None = None


def file_out(file_id: str, metadata: dict[str, Any], links: FileLinks | None = None) -> FileOut:
    url = links.url(file_id, "file") if links else f"/api/files/{file_id}"
    thumb = links.url(file_id, "thumb") if links and metadata.get("thumbnail") else None
    return FileOut(
        id=file_id, name=metadata.get("name") or "file", size=int(metadata.get("size") or 0),
        content_type=metadata.get("content_type") or "application/octet-stream", url=url, thumbnail_url=thumb,
        thumbnail_width=int(metadata["thumb_w"]) if thumb and metadata.get("thumb_w") else None,
        thumbnail_height=int(metadata["thumb_h"]) if thumb and metadata.get("thumb_h") else None,
    )


def files_out(doc: dict[str, Any], links: FileLinks | None = None) -> list[FileOut]:
    """A message's files from what its send copied into it (`file_info`: name, size and type never change)."""
    info = doc.get("file_info") or {}
    return [file_out(file_id, info.get(file_id) or {}, links) for file_id in doc.get("files") or []]


# RFC 6838 section 4.2: type/subtype of restricted-name characters, ASCII only (a header must carry it),
# then any parameters in printable ASCII.
_RESTRICTED_NAME = r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
_MEDIA_TYPE = re.compile(rf"{_RESTRICTED_NAME}/{_RESTRICTED_NAME}(?:[ \t]*;[\x20-\x7e]*)?", re.ASCII)


def valid_media_type(value: str) -> bool:
    """True for a media type a Content-Type header can carry (`image/png`, `text/plain; charset=utf-8`)."""
    return len(value) <= 255 and _MEDIA_TYPE.fullmatch(value.strip()) is not None


class FileQuery(msgspec.Struct, kw_only=True):
    # What a signed url/thumbnail_url carries (app.file_links): without both, the Bearer token is needed.
    exp: Annotated[str, msgspec.Meta(max_length=16)] | None = None
    sig: Annotated[str, msgspec.Meta(max_length=64)] | None = None


class FileUploadIn(msgspec.Struct, forbid_unknown_fields=True):
    """multipart/form-data with one part named `file` (for the OpenAPI document)."""

    file: Annotated[str, msgspec.Meta(extra_json_schema={"format": "binary"})]
