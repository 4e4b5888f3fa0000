"""Files in GridFS: uploads bounded by config files.max_bytes, readable only within the uploader's workspace."""

from __future__ import annotations

import re
import unicodedata

from bson import Int64
from pymongo.errors import PyMongoError

from app.auth import Identity
from app.config import LimitsConfig
from app.errors import APIError, invalid, not_found
from app.schemas.common import valid_id
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


def clean_filename(name: str) -> str:
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in unicodedata.normalize("NFC", name) if unicodedata.category(ch)[0] != "C")
    return name.strip()[:255] or "file"


def clean_content_type(value: str | None) -> str:
    value = (value or "").split(";", 1)[0].strip().lower()
    return value if _CONTENT_TYPE.match(value) else DEFAULT_CONTENT_TYPE


# The user document's running total of bytes uploaded, kept at write time for the quota.
UPLOAD_BYTES_FIELD = "upload_bytes"


class FileService:
    def __init__(self, store: Store, max_bytes: int, *, limiter: RateLimiter | None = None,
                 limits: LimitsConfig | None = None):
        self.store = store
        self.max_bytes = max_bytes
        self.limiter = limiter
        self.limits = limits

    async def upload(self, user: Identity, filename: str, content_type: str | None, data: bytes) -> FileOut:
        if len(data) > self.max_bytes:
            raise APIError(413, "payload_too_large", f"the file is larger than {self.max_bytes} bytes")
        limits = self.limits if self.limiter is not None and self.limiter.enabled else None
        if limits is not None:
            await self.limiter.hit(f"uploads:user:{user.user_id}", limit=limits.uploads_per_minute_per_user,
                                   window=60, what="uploads")
        reserved = await self._reserve(user, len(data), limits.upload_quota_bytes_per_user) if limits else 0
        file_id = new_id()
        metadata = {
            "workspace_id": user.workspace_id,
            "uploader_id": user.user_id,
            "name": clean_filename(filename),
            "content_type": clean_content_type(content_type),
            "size": len(data),
        }
        try:
            await self._write_gridfs(file_id, metadata, data)
        except BaseException:
            if reserved:
                await self._release(user, reserved)
            raise
        return file_out(file_id, metadata)

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

    async def read(self, user: Identity, file_id: str) -> tuple[FileOut, bytes]:
        """The file's description and bytes; 404 unless it was uploaded in the caller's workspace."""
        if not valid_id(file_id):
            raise not_found("file")
        doc = await self.store.files.find_one({"_id": file_id, "metadata.workspace_id": {"$eq": user.workspace_id}})
        if doc is None:
            raise not_found("file")
        stream = await self.store.file_bucket.open_download_stream(file_id)
        return file_out(file_id, doc["metadata"]), await stream.read()

    async def check_ids(self, workspace_id: str, file_ids: list[str]) -> None:
        # find, not count_documents: nx-27017 fails to count a collection that has no document yet.
        cursor = self.store.files.find(
            {"_id": {"$in": file_ids}, "metadata.workspace_id": {"$eq": workspace_id}}, {"_id": 1}
        )
        if len(await cursor.to_list()) != len(file_ids):
            raise invalid("files", "every file must be uploaded in your workspace")

    @staticmethod
    def disposition(content_type: str) -> str:
        """`inline` for the types browsers show safely, else `attachment` (a download)."""
        return "inline" if content_type in INLINE_TYPES else "attachment"
