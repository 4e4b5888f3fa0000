"""Bodies of messages, read marks, search and files."""

from __future__ import annotations

import re
from typing import Annotated, Any

import msgspec

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


class MessageOut(Response):
    id: Id
    chat_id: Id
    seq: int
    # None only for the tombstone that fills a seq left by a send that crashed half-way.
    sender_id: Id | None
    content: str
    files: list[Id]
    reply_to: Id | None
    created_at: Timestamp
    edited_at: Timestamp | None
    deleted: bool
    # Members of the chat the content mentions by @username (the sender never, at most 50), and whether
    # it has @channel, @here or @everyone (app.services.mentions).
    mentions: list[Id] = []
    mentions_all: bool = False


def message_out(doc: dict[str, Any]) -> MessageOut:
    return MessageOut(
        id=doc["_id"],
        chat_id=doc["chat_id"],
        seq=doc["seq"],
        sender_id=doc.get("sender_id"),
        content=doc.get("content", ""),
        files=list(doc.get("files") or []),
        reply_to=doc.get("reply_to"),
        created_at=isoformat(doc["created_at"]),
        edited_at=isoformat(doc.get("edited_at")),
        deleted=bool(doc.get("deleted")),
        mentions=list(doc.get("mentions") or []),
        mentions_all=bool(doc.get("mentions_all")),
    )


def stored_message(doc: dict[str, Any]) -> dict[str, Any]:
    """A message as served, as a chat keeps it for its last message; without `seq` while `doc` has none
    (a send's draft: the take that sets it also gives the seq, the chat's `last_seq`)."""
    stored = msgspec.to_builtins(message_out({**doc, "seq": doc.get("seq", 0)}))
    if "seq" not in doc:
        del stored["seq"]
    return stored


class MessageListQuery(msgspec.Struct, kw_only=True):
    limit: Annotated[int, msgspec.Meta(ge=1, le=200)] = 50
    before: Seq | None = None
    after: Annotated[int, msgspec.Meta(ge=0, le=2**53)] | None = None


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


class SearchQuery(msgspec.Struct, kw_only=True):
    # The upper bound is config limits.search_query_max_chars, checked by the service.
    q: Annotated[str, msgspec.Meta(min_length=1, max_length=1000, description="Words that must all appear, any case")]
    chat_id: Id | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=100)] = 20
    cursor: Cursor | None = None


class SearchOut(Response):
    messages: list[MessageOut]
    # Null when every match was returned; a page may be short (even empty) when the scan budget ran out.
    next_cursor: str | None = None


class FileOut(Response):
    id: Id
    name: str
    size: int
    content_type: str
    url: str


def file_out(file_id: str, metadata: dict[str, Any]) -> FileOut:
    return FileOut(
        id=file_id, name=metadata["name"], size=metadata["size"], content_type=metadata["content_type"],
        url=f"/api/files/{file_id}",
    )


# RFC 6838 section 4.2: type/subtype of restricted-name characters, ASCII only (a header must carry it),
# then any parameters in printable ASCII.
_RESTRICTED_NAME = r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
_MEDIA_TYPE = re.compile(rf"{_RESTRICTED_NAME}/{_RESTRICTED_NAME}(?:[ \t]*;[\x20-\x7e]*)?", re.ASCII)


def valid_media_type(value: str) -> bool:
    """True for a media type a Content-Type header can carry (`image/png`, `text/plain; charset=utf-8`)."""
    return len(value) <= 255 and _MEDIA_TYPE.fullmatch(value.strip()) is not None


class FileUploadIn(msgspec.Struct, forbid_unknown_fields=True):
    """multipart/form-data with one part named `file` (for the OpenAPI document)."""

    file: Annotated[str, msgspec.Meta(extra_json_schema={"format": "binary"})]
