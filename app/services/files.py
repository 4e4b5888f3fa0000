"""Files in GridFS: uploads bounded by config files.max_bytes, readable only within the uploader's workspace."""

from __future__ import annotations

import re
import unicodedata
from typing import AsyncIterator

from bson import Int64
from gridfs.errors import CorruptGridFile
from pymongo.errors import PyMongoError

from app import images
from app.auth import Identity
from app.file_links import FileLinks, Purpose
from app.config import LimitsConfig
from app.errors import APIError, invalid, not_found
from app.schemas.common import VISIBLE, valid_id
from app.schemas.messages import FileOut, file_out
from app.services.ratelimit import RateLimiter
from app.store import Store, new_id, utcnow

# ASCII only: \w would take `image/png中`, which no response header can carry.
_CONTENT_TYPE = re.compile(r"^[\w.+-]+/[\w.+-]+$", re.ASCII)
DEFAULT_CONTENT_TYPE = "application/octet-stream"
# Shown inline by browsers; everything else downloads, so an uploaded page never runs on our origin.
INLINE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp", "text/plain", "application/pdf"})
# GridFS's default chunk size (pymongo's gridfs.DEFAULT_CHUNK_SIZE, 255 KiB).
CHUNK_SIZE = 255 * 1024
# The bytes of chunks a download reads at a time (4 default chunks): about what one download holds.
DOWNLOAD_BATCH_BYTES = 4 * CHUNK_SIZE


def thumbnail_id(file_id: str) -> str:
    """Where a file's thumbnail is stored: not an id a message or a download can name."""
    return f"{file_id}.thumb"


# The name a file is stored under when what it was sent with shows nothing.
DEFAULT_FILENAME = "file"
# One visible character: the check of every other name (people, workspaces, chats).
_VISIBLE = re.compile(VISIBLE)


def clean_filename(name: str) -> str:
    """The last path segment, NFC, without controls or format characters (U+200B, bidi overrides), line
    and paragraph separators as spaces; `file` when nothing visible is left (only invisible characters,
    dots or nothing). Sanitized rather than refused, as an empty name already was: the name comes from
    the sender's file system, not from something the person typed."""
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(" " if unicodedata.category(ch) in ("Zl", "Zp") else ch
                   for ch in unicodedata.normalize("NFC", name) if unicodedata.category(ch)[0] != "C")
    name = name.strip()[:255].strip()
    # Dots alone are no name either (`..` is a path step).
    return name if _VISIBLE.search(name.replace(".", "")) else DEFAULT_FILENAME


def clean_content_type(value: str | None) -> str:
    value = (value or "").split(";", 1)[0].strip().lower()
    return value if _CONTENT_TYPE.match(value) else DEFAULT_CONTENT_TYPE


# What of a file's metadata a message copies (or a page looks up) to describe it.
DESCRIBED = ("name", "size", "content_type", "thumbnail", "thumb_w", "thumb_h")
# The user document's running total of bytes uploaded, kept at write time for the quota.
UPLOAD_BYTES_FIELD = "upload_bytes"


class FileService:
    def __init__(self, store: Store, max_bytes: int, *, limiter: RateLimiter | None = None,
                 limits: LimitsConfig | None = None, links: FileLinks | None = None):
        self.links = links
        self.store = store
        self.max_bytes = max_bytes
        self.limiter = limiter
        self.limits = limits

    def _limits(self) -> LimitsConfig | None:
        return self.limits if self.limiter is not None and self.limiter.enabled else None

    async def admit(self, user: Identity) -> None:
        """One upload counted against the user's rate limit, or 429: asked on the request's headers,
        so that past the limit no upload body is read at all."""
        limits = self._limits()
        if limits is not None:
            await self.limiter.per_user("uploads", user.user_id, limit=limits.uploads_per_minute_per_user,
                                        window=60, what="uploads")

    async def upload(self, user: Identity, filename: str, content_type: str | None, data: bytes) -> FileOut:
        """Stores one file, counted against the user's quota; the rate limit is `admit`'s, asked before
        (POST /api/files asks it on the headers of every upload with a body)."""
        if len(data) > self.max_bytes:
            raise APIError(413, "payload_too_large", f"the file is larger than {self.max_bytes} bytes")
        limits = self._limits()
        reserved = await self._reserve(user, len(data), limits.upload_quota_bytes_per_user) if limits else 0
        file_id = new_id()
        metadata = {
            "workspace_id": user.workspace_id,
            "uploader_id": user.user_id,
            "name": clean_filename(filename),
            "content_type": clean_content_type(content_type),
            "size": len(data),
        }
        # Made at upload, stored as a file of its own beside the original (`<id>.thumb`, same workspace); a
        # picture refused (a decompression bomb, unreadable) is stored all the same, without a thumbnail.
        # Which is decided by the bytes, never the Content-Type sent: a picture sent as octet-stream gets one,
        # and is stored (and served inline) as the image it is.
        sniffed = images.sniff(data)
        thumb = images.thumbnail(data) if sniffed else None
        if sniffed:
            metadata["content_type"] = sniffed
        try:
            if thumb is not None:
                await self._write_gridfs(thumbnail_id(file_id), {**metadata, "name": "thumbnail", "content_type": thumb[1],
                                                                 "size": len(thumb[0]), "thumbnail_of": file_id}, thumb[0])
                metadata["thumbnail"] = True
                # Its size, so a page can hold the thumbnail's place before it loads.
                size = images.dimensions(thumb[0])
                if size:
                    metadata["thumb_w"], metadata["thumb_h"] = size
            await self._write_gridfs(file_id, metadata, data)
        except BaseException:
            if reserved:
                await self._release(user, reserved)
            raise
        return file_out(file_id, metadata, self.links)

    async def _reserve(self, user: Identity, size: int, quota: int) -> int:
        """Counts `size` bytes against the user's quota before they are written (the bytes reserved), or 413.

        One conditional `$inc` on the user's own document: concurrent uploads cannot both take the
        last bytes, and nothing is summed over the user's files on the request path. A user's first
        upload starts the total at its size (two commands); one racing it counts on that total.
        """
        if quota <= 0 or size == 0:
            return 0
        users = self.store.users
        within = {"_id": user.user_id, UPLOAD_BYTES_FIELD: {"$lte": quota - size}}
        add = {"$inc": {UPLOAD_BYTES_FIELD: size}}
        if (await users.update_one(within, add)).matched_count:
            return size
        if size <= quota:
            started = await users.update_one({"_id": user.user_id, UPLOAD_BYTES_FIELD: {"$exists": False}},
                                             {"$set": {UPLOAD_BYTES_FIELD: size}})
            if started.matched_count or (await users.update_one(within, add)).matched_count:
                return size
        raise APIError(413, "upload_quota_exceeded",
                       f"this upload would pass your quota of {quota} bytes in all")

    async def _release(self, user: Identity, size: int) -> None:
        try:
            await self.store.users.update_one({"_id": user.user_id}, {"$inc": {UPLOAD_BYTES_FIELD: -size}})
        except PyMongoError:
            pass  # the file was not stored; the total overstates it by `size`, in the user's favour never

    async def _write_gridfs(self, file_id: str, metadata: dict, data: bytes) -> None:
        """The file in the GridFS layout, as pymongo's uploader writes it: chunks, then the files document.

        Not pymongo's uploader: before its first chunk it runs `find_one({})` on files.files to
        decide whether to create indexes, which nx-27017 answers by reading every file's id
        (docs/embedded-mongo.md). Store.ensure_indexes creates the chunks index instead. The files
        document comes last, so a file is readable only once all its bytes are stored; if it cannot
        be written, the chunks go (best effort; a retry uses a new id anyway).
        """
        chunks = [{"files_id": file_id, "n": n, "data": data[start:start + CHUNK_SIZE]}
                  for n, start in enumerate(range(0, len(data), CHUNK_SIZE))]
        if chunks:
            await self.store.file_chunks.insert_many(chunks)
        document = {
            "_id": file_id,
            "length": Int64(len(data)),
            "chunkSize": CHUNK_SIZE,
            "uploadDate": utcnow(),
            "filename": metadata["name"],
            "metadata": metadata,
        }
        try:
            await self.store.files.insert_one(document)
        except PyMongoError:
            if chunks:
                try:
                    await self.store.file_chunks.delete_many({"files_id": {"$eq": file_id}})
                except PyMongoError:
                    pass  # orphan chunks of an id nothing refers to
            raise

    async def open(self, user: Identity | None, file_id: str, *, purpose: Purpose = "file", exp: str | None = None,
                   sig: str | None = None) -> tuple[FileOut, int, AsyncIterator[bytes]]:
        """The file's (or its thumbnail's) description, its length and its bytes chunk by chunk (close the
        iterator with `contextlib.aclosing`). With a valid signature of this file and purpose (app.file_links)
        no user is needed; otherwise 401 without one, and 404 unless it was uploaded in the user's workspace."""
        signed = bool(self.links and valid_id(file_id) and self.links.valid(file_id, purpose, exp, sig))
        if not signed and user is None:
            raise APIError(401, "unauthorized", "an access token (or the url's signature) is required")
        if not valid_id(file_id):
            raise not_found("file")
        stored_id = thumbnail_id(file_id) if purpose == "thumb" else file_id
        query: dict = {"_id": stored_id}
        if not signed:
            query["metadata.workspace_id"] = {"$eq": user.workspace_id}  # type: ignore[union-attr]
        doc = await self.store.files.find_one(query)
        if doc is None:
            raise not_found("file")
        file_id = stored_id
        length = int(doc["length"])
        chunk_size = int(doc.get("chunkSize") or CHUNK_SIZE)  # pymongo's uploader takes any size
        return file_out(file_id, doc["metadata"], self.links), length, self._chunks(file_id, length, chunk_size)

    async def _chunks(self, file_id: str, length: int, chunk_size: int) -> AsyncIterator[bytes]:
        """The GridFS chunks in order, about DOWNLOAD_BATCH_BYTES per store read: what a download holds,
        not the file. One range read of the (files_id, n) index each, not one cursor: nx-27017 ignores
        batchSize on a `*.chunks` collection and sent a 10 MiB file's every chunk in its first reply (as
        pymongo's reader asks for up to 101 chunks at once anyway), so concurrent downloads held the
        whole file each until their readers took it; a stalled reader holds no server cursor either."""
        count = -(-length // chunk_size)
        step = max(1, DOWNLOAD_BATCH_BYTES // chunk_size)
        total = 0
        for first in range(0, count, step):
            last = min(first + step, count)
            docs = await self.store.file_chunks.find(
                {"files_id": {"$eq": file_id}, "n": {"$gte": first, "$lt": last}}, {"_id": 0, "n": 1, "data": 1},
                sort=[("n", 1)],
            ).to_list()
            if [doc.get("n") for doc in docs] != list(range(first, last)):
                raise CorruptGridFile(f"file {file_id}: chunks {first}..{last - 1} are not all stored")
            for doc in docs:
                data = bytes(doc["data"])
                total += len(data)
                yield data
            del docs  # before the next read: a download holds one batch, not two
        if total != length:
            raise CorruptGridFile(f"file {file_id}: {total} bytes stored of {length}")

    async def check_ids(self, workspace_id: str, file_ids: list[str]) -> dict[str, dict]:
        """Each file's name, size, type and whether it has a thumbnail (copied into the message at send: they
        never change, so a page of messages reads no file), or 422 unless all are in the workspace."""
        # find, not count_documents: nx-27017 fails to count a collection that has no document yet.
        cursor = self.store.files.find(
            {"_id": {"$in": file_ids}, "metadata.workspace_id": {"$eq": workspace_id}}, {"_id": 1, "metadata": 1}
        )
        docs = await cursor.to_list()
        if len(docs) != len(file_ids):
            raise invalid("files", "every file must be uploaded in your workspace")
        return {str(doc["_id"]): {key: doc["metadata"].get(key) for key in DESCRIBED} for doc in docs}

    async def describe(self, docs: list[dict]) -> None:
        """Fills in the `file_info` of messages whose files are bare ids (sent before it was copied at send),
        one store read for the page whatever it holds (none when every file is described); a file not
        found (or a store that fails) shows as `file` of unknown size rather than failing the page."""
        missing = list(dict.fromkeys(
            file_id for doc in docs for file_id in doc.get("files") or [] if file_id not in (doc.get("file_info") or {})))
        if not missing:
            return
        try:
            found = await self.store.files.find({"_id": {"$in": missing}}, {"_id": 1, "metadata": 1}).to_list()
        except PyMongoError:
            return
        info = {str(doc["_id"]): {key: (doc.get("metadata") or {}).get(key) for key in DESCRIBED} for doc in found}
        for doc in docs:
            extra = {file_id: info[file_id] for file_id in doc.get("files") or []
                     if file_id in info and file_id not in (doc.get("file_info") or {})}
            if extra:
                doc["file_info"] = {**(doc.get("file_info") or {}), **extra}

    @staticmethod
    def disposition(content_type: str) -> str:
        """`inline` for the types browsers show safely, else `attachment` (a download)."""
        return "inline" if content_type in INLINE_TYPES else "attachment"
