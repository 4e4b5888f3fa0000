"""Handlers for uploading files to GridFS and reading them back."""

from __future__ import annotations

from urllib.parse import quote

from app.errors import APIError
from app.openapi import Operation
from app.schemas.messages import FileOut, FileUploadIn
from app.web import authenticated, route
from roles.api.base import ApiHandler

TAGS = ("files",)
# Room for the multipart envelope around the file itself.
MULTIPART_OVERHEAD = 16384


class FilesHandler(ApiHandler):
    api_doc = {
        "post": Operation(
            "Upload a file (multipart field `file`, size limit config files.max_bytes)",
            body=FileUploadIn, body_content_type="multipart/form-data", responses={201: FileOut},
            errors=(400, 413, 422), tags=TAGS,
        )
    }

    @property
    def max_body_bytes(self) -> int:  # type: ignore[override]
        return self.config.files.max_bytes + MULTIPART_OVERHEAD

    @authenticated
    async def post(self) -> None:
        parts = self.request.files.get("file")
        if not parts:
            raise APIError(422, "validation_failed", "a multipart/form-data body with a `file` part is required",
                           fields={"file": "required"})
        if len(parts) > 1 or len(self.request.files) > 1:
            raise APIError(422, "validation_failed", "send one file per request", fields={"file": "one file"})
        part = parts[0]
        out = await self.services.files.upload(self.current_user, part.filename or "", part.content_type, part.body)
        self.write_json(out, status=201)


class FileHandler(ApiHandler):
    api_doc = {
        "get": Operation(
            "The file's bytes; only for users of the uploader's workspace",
            responses={200: bytes}, response_content_type="application/octet-stream", errors=(404,), tags=TAGS,
        )
    }

    @authenticated
    async def get(self, file_id: str) -> None:
        meta, data = await self.services.files.read(self.current_user, file_id)
        disposition = self.services.files.disposition(meta.content_type)
        self.set_header("Content-Type", meta.content_type)
        self.set_header("Content-Disposition", f"{disposition}; filename*=UTF-8''{quote(meta.name, safe='')}")
        # Whatever the file is, it never runs scripts on the API's origin.
        self.set_header("Content-Security-Policy", "sandbox; default-src 'none'")
        self.set_header("Cache-Control", "private, max-age=3600")
        self.finish(data)


routes = [
    route("/api/files", FilesHandler),
    route("/api/files/{file_id}", FileHandler),
]
