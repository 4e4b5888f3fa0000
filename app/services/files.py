"""Files in GridFS: uploads bounded by config files.max_bytes, readable only within the uploader's workspace."""

from __future__ import annotations

import re
import unicodedata

from app.auth import Identity
from app.errors import APIError, invalid, not_found
from app.schemas.common import valid_id
from app.schemas.messages import FileOut, file_out
from app.store import Store, new_id

_CONTENT_TYPE = re.compile(r"^[\w.+-]+/[\w.+-]+$")
DEFAULT_CONTENT_TYPE = "application/octet-stream"
# Shown inline by browsers; everything else downloads, so an uploaded page never runs on our origin.
INLINE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp", "text/plain", "application/pdf"})


def clean_filename(name: str) -> str:
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in unicodedata.normalize("NFC", name) if unicodedata.category(ch)[0] != "C")
    return name.strip()[:255] or "file"


def clean_content_type(value: str | None) -> str:
    value = (value or "").split(";", 1)[0].strip().lower()
    return value if _CONTENT_TYPE.match(value) else DEFAULT_CONTENT_TYPE


class FileService:
    def __init__(self, store: Store, max_bytes: int):
        self.store = store
        self.max_bytes = max_bytes

    async def upload(self, user: Identity, filename: str, content_type: str | None, data: bytes) -> FileOut:
        if len(data) > self.max_bytes:
            raise APIError(413, "payload_too_large", f"the file is larger than {self.max_bytes} bytes")
        file_id = new_id()
        metadata = {
            "workspace_id": user.workspace_id,
            "uploader_id": user.user_id,
            "name": clean_filename(filename),
            "content_type": clean_content_type(content_type),
            "size": len(data),
        }
        await self.store.file_bucket.upload_from_stream_with_id(file_id, metadata["name"], data, metadata=metadata)
        return file_out(file_id, metadata)

    async def read(self, user: Identity, file_id: str) -> tuple[FileOut, bytes]:
        """The file's description and bytes; 404 unless it was uploaded in the caller's workspace."""
        if not valid_id(file_id):
            raise not_found("file")
        doc = await self.store.files.find_one({"_id": file_id, "metadata.workspace_id": user.workspace_id})
        if doc is None:
            raise not_found("file")
        stream = await self.store.file_bucket.open_download_stream(file_id)
        return file_out(file_id, doc["metadata"]), await stream.read()

    async def check_ids(self, workspace_id: str, file_ids: list[str]) -> None:
        # find, not count_documents: nx-27017 fails to count a collection that has no document yet.
        cursor = self.store.files.find({"_id": {"$in": file_ids}, "metadata.workspace_id": workspace_id}, {"_id": 1})
        if len(await cursor.to_list()) != len(file_ids):
            raise invalid("files", "every file must be uploaded in your workspace")

    @staticmethod
    def disposition(content_type: str) -> str:
        """`inline` for the types browsers show safely, else `attachment` (a download)."""
        return "inline" if content_type in INLINE_TYPES else "attachment"
