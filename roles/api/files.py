"""Handlers for uploading files to GridFS and reading them back."""

from __future__ import annotations

import contextlib
from urllib.parse import quote

from tornado.httputil import HTTPFile, HTTPInputError, parse_body_arguments
from tornado.iostream import StreamClosedError

from app.auth import Identity
from app.errors import APIError
from app.openapi import Operation
from app.file_links import Purpose
from app.schemas.messages import FileOut, FileQuery, FileUploadIn, valid_media_type
from app.services.files import DEFAULT_CONTENT_TYPE, DEFAULT_FILENAME
from app.web import authenticated, route
from roles.api.base import ApiHandler

TAGS = ("files",)
# Room for the multipart envelope around the file itself.
MULTIPART_OVERHEAD = 16384


def content_disposition(disposition: str, name: str) -> str:
    """RFC 6266: an ASCII `filename` for old clients and the exact name as UTF-8 in `filename*` (RFC 5987).

    Whatever the stored name holds (a file stored before names were cleaned may have quotes, CR/LF or
    anything), the header stays one line with one quoted string: the fallback keeps printable ASCII but
    `"`, `\\` and `%` (which some clients percent-decode, RFC 6266 appendix D), and `filename*`
    percent-encodes everything but letters, digits and `_.-~`."""
    name = name or DEFAULT_FILENAME
    fallback = "".join(ch if " " <= ch <= "~" and ch not in '"\\%' else "_" for ch in name).strip() or DEFAULT_FILENAME
    encoded = quote(name.encode("utf-8", "replace"), safe="")
    return f'{disposition}; filename="{fallback}"; filename*=UTF-8\'\'{encoded}'


class FilesHandler(ApiHandler):
    api_doc = {
        "post": Operation(
            "Upload a file (multipart field `file`, size limit config files.max_bytes)",
            body=FileUploadIn, body_content_type="multipart/form-data", responses={201: FileOut},
            errors=(400, 413, 422, 429), tags=TAGS,
        )
    }

    @property
    def max_body_bytes(self) -> int:  # type: ignore[override]
        return self.config.files.max_bytes + MULTIPART_OVERHEAD

    def body_timeout(self) -> float:
        return self.config.files.body_timeout_seconds

    def multipart_files(self) -> dict[str, list[HTTPFile]]:
        """The parts of a multipart body (a streamed body is not parsed by Tornado); 400 when malformed."""
        arguments: dict[str, list[bytes]] = {}
        files: dict[str, list[HTTPFile]] = {}
        try:
            parse_body_arguments(self.request.headers.get("Content-Type", ""), self.body, arguments, files,
                                 self.request.headers)
        except HTTPInputError as e:
            raise APIError(400, "bad_request", f"invalid multipart body: {e}") from None
        return files

    async def admit_body(self, identity: Identity) -> None:
        # On the headers, after the token and session: past the upload rate limit, the body is never read.
        # Without a body prepare() asks nothing, and post() refuses it before upload (no file part).
        await self.services.files.admit(identity)

    # The token and session are checked on the headers (prepare), so no stranger's upload is ever read.
    @authenticated
    async def post(self) -> None:
        files = self.multipart_files()
        parts = files.get("file")
        if not parts:
            raise APIError(422, "validation_failed", "a multipart/form-data body with a `file` part is required",
                           fields={"file": "Choose a file to upload"})
        if len(parts) > 1 or len(files) > 1:
            raise APIError(422, "validation_failed", "send one file per request", fields={"file": "Send one file per upload"})
        part = parts[0]
        if not valid_media_type(part.content_type):
            # It would be stored, and every download would then fail to set its Content-Type header.
            raise APIError(422, "validation_failed", "the file part's Content-Type must be an ASCII type/subtype",
                           fields={"file": "The file's type must be an ASCII type/subtype, like image/png"})
        out = await self.services.files.upload(self.current_user, part.filename or "", part.content_type, part.body)
        self.write_json(out, status=201)


class FileHandler(ApiHandler):
    api_doc = {
        "get": Operation(
            "The file's bytes; for users of the uploader's workspace (Bearer token), or for anyone holding its "
            "signed `url` (exp and sig) until it expires. Images inline, other files as attachments",
            query=FileQuery, responses={200: bytes}, response_content_type="application/octet-stream",
            errors=(401, 404), tags=TAGS,
        )
    }
    purpose: Purpose = "file"

    async def optional_user(self) -> Identity | None:
        """The caller when a token is given and live; an <img> sends none and is authorized by the URL."""
        if self.bearer_token() is None:
            return None
        try:
            return await self.require_live_user()
        except APIError:
            return None

    async def get(self, file_id: str) -> None:
        query = self.parse_query(FileQuery)
        meta, length, chunks = await self.services.files.open(
            await self.optional_user(), file_id, purpose=self.purpose, exp=query.exp, sig=query.sig)
        # A type stored before uploads were checked (`image/png中`) cannot be a header: serve bytes.
        content_type = meta.content_type if valid_media_type(meta.content_type) else DEFAULT_CONTENT_TYPE
        disposition = self.services.files.disposition(content_type)
        self.set_header("Content-Type", content_type)
        self.set_header("Content-Disposition", content_disposition(disposition, meta.name))
        # Whatever the file is, it never runs scripts on the API's origin.
        self.set_header("Content-Security-Policy", "sandbox; default-src 'none'")
        self.set_header("Cache-Control", "private, max-age=3600")
        self.set_header("Content-Length", str(length))  # Tornado drops it when it compresses
        # Chunk by chunk, each written once the last left: a download holds a few GridFS chunks, not the
        # file (concurrent downloads of a 10 MiB file once held 20 MiB each until their readers took it all).
        async with contextlib.aclosing(chunks):
            try:
                async for chunk in chunks:
                    self.write(chunk)
                    await self.flush()
            except StreamClosedError:
                return  # the reader went away
        self.finish()


class ThumbnailHandler(FileHandler):
    api_doc = {
        "get": Operation(
            "An image file's preview (PNG or JPEG, at most 400 px wide), made at upload; signed "
            "`thumbnail_url` or Bearer token. 404 for a file without one",
            query=FileQuery, responses={200: bytes}, response_content_type="image/png",
            errors=(401, 404), tags=TAGS,
        )
    }
    purpose: Purpose = "thumb"


routes = [
    route("/api/files", FilesHandler),
    route("/api/files/{file_id}", FileHandler),
    route("/api/files/{file_id}/thumbnail", ThumbnailHandler),
]
