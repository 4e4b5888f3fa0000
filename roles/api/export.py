"""Handler for the workspace export: streamed NDJSON, a batch of lines written and flushed at a time."""

from __future__ import annotations

import contextlib

from tornado.iostream import StreamClosedError

from app.openapi import Operation
from app.web import authenticated, route
from roles.api.base import ApiHandler

TAGS = ("workspace",)


class WorkspaceExportHandler(ApiHandler):
    api_doc = {
        "get": Operation(
            "The caller's workspace as NDJSON (workspace owner only): one line per workspace, user (no password "
            "or token hashes), chat, membership and message (with reactions, pin, edit history and file "
            "metadata), in that order, each `{\"type\": ..., \"id\": ..., ...}`; streamed as it is read",
            responses={200: bytes}, response_content_type="application/x-ndjson", errors=(401, 403), tags=TAGS,
        )
    }

    @authenticated
    async def get(self) -> None:
        user = self.current_user
        exporter = self.services.export
        await exporter.owned_workspace(user.user_id, user.workspace_id)
        self.set_header("Content-Type", "application/x-ndjson; charset=UTF-8")
        self.set_header("Content-Disposition", f'attachment; filename="fechatter-{user.workspace_id}.ndjson"')
        self.set_header("Cache-Control", "no-store")
        lines = exporter.lines(user.workspace_id)
        async with contextlib.aclosing(lines):
            try:
                async for part in lines:
                    self.write(part.encode())
                    await self.flush()  # waits until the client took it: memory stays one batch
            except StreamClosedError:
                return  # the client went away: stop reading
        self.finish()


routes = [route("/api/workspace/export", WorkspaceExportHandler)]
