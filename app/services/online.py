"""Who may see whom online: a chat of the caller's, their own workspace, or by default everyone sharing a chat."""

from __future__ import annotations

from app.auth import Identity
from app.errors import APIError, not_found
from app.services import membership
from app.services.presence import Presence
from app.store import Store


class OnlineUsers:
    """Answers online-users within what the caller may see; a chat or workspace not theirs does not exist."""

    def __init__(self, store: Store, presence: Presence):
        self.store = store
        self.presence = presence

    async def visible_to(self, identity: Identity, *, chat_id: str | None = None,
                         workspace_id: str | None = None) -> list[dict[str, str]]:
        """[{id, fullname}] of the users online in that scope, named only within the caller's workspace."""
        if chat_id and workspace_id:
            raise APIError(422, "validation_failed", "give chat_id or workspace_id, not both",
                           fields={"chat_id": "not with workspace_id"})
        presence = self.presence
        if chat_id is not None:
            if not await membership.is_member(self.store, chat_id, identity.user_id):
                raise not_found("chat")
            online = await presence.online_in_chats([chat_id])
        elif workspace_id is not None:
            if workspace_id != identity.workspace_id:
                raise not_found("workspace")
            online = presence.online_in_workspace(workspace_id)
        else:
            online = await presence.online_in_chats(await presence.chats_of(identity.user_id))
        return await membership.user_names(self.store, online, identity.workspace_id)
