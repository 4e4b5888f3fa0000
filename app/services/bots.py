"""Bot users: made by the workspace owner, each with one Bearer token shown once and stored as its SHA-256."""

from __future__ import annotations

import hashlib
from typing import Any

from pymongo.errors import DuplicateKeyError

from app.auth import Identity, TokenIssuer
from app.errors import conflict, forbidden, invalid, not_found
from app.schemas.accounts import UserOut, user_out
from app.schemas.bots import BotCreatedOut, BotCreateIn
from app.services.accounts import ALL_NAMES, AccountService, normalize_username, user_name_key
from app.store import Store, new_id, new_secret, utcnow

# A bot's token is an access token of the api's own kind (so both roles verify it with the public key
# alone), long-lived; revoking it moves the bot's "tokens valid after" to now (app.services.sessions),
# which every api process and every notify stream hears at once through `sessions.revoked`.
BOT_TOKEN_TTL_SECONDS = 10 * 365 * 24 * 3600
BOT_EMAIL_DOMAIN = "bots.fechatter.invalid"


def token_hash(token: str) -> str:
    """SHA-256, not argon2: the token carries 256 random bits (its `jti`) and a signature, so no guessing
    or dictionary attack on a stolen hash is possible; a slow hash only protects low-entropy passwords."""
    return hashlib.sha256(token.encode()).hexdigest()


class BotService:
    """Create, list and revoke bot users; also makes the bot behind each incoming webhook."""

    def __init__(self, store: Store, issuer: TokenIssuer, accounts: AccountService):
        self.store = store
        self.issuer = issuer
        self.accounts = accounts

    async def _require_owner(self, me: Identity) -> dict[str, Any]:
        workspace = await self.store.workspaces.find_one({"_id": me.workspace_id}, {"owner_id": 1})
        if workspace is None:
            raise not_found("workspace")
        if workspace.get("owner_id") != me.user_id:
            raise forbidden("only the workspace's owner manages bots")
        return workspace

    async def make_bot(self, workspace_id: str, name: str, username: str, *, created_by: str,
                       extra: dict[str, Any] | None = None) -> tuple[dict[str, Any], str]:
        """(the bot's user document, its token): a user with no password, `is_bot: true`."""
        if username in ALL_NAMES:
            raise invalid("username", f"@{username} would mention everyone in a chat: choose another username")
        bot_id = new_id()
        token = self.issuer.issue(bot_id, workspace_id, ttl=BOT_TOKEN_TTL_SECONDS,
                                  extra={"bot": True, "jti": new_secret(32)})
        doc = {
            "_id": bot_id,
            "workspace_id": workspace_id,
            "fullname": name.strip(),
            "name_key": user_name_key(name.strip(), bot_id),
            "username": username,
            "email": f"{bot_id}@{BOT_EMAIL_DOMAIN}",
            "password_hash": None,
            "is_bot": True,
            "bot_token_hash": token_hash(token),
            "bot_created_by": created_by,
            "created_at": utcnow(),
            **(extra or {}),
        }
        try:
            await self.store.users.insert_one(doc)
        except DuplicateKeyError:
            raise conflict("username_taken", "someone in this workspace has this username") from None
        return doc, token

    async def create(self, me: Identity, body: BotCreateIn) -> BotCreatedOut:
        await self._require_owner(me)
        doc, token = await self.make_bot(me.workspace_id, body.name, normalize_username(body.username),
                                         created_by=me.user_id)
        return BotCreatedOut(bot=user_out(doc, self.accounts.avatars), token=token)

    async def list(self, me: Identity) -> list[UserOut]:
        await self._require_owner(me)
        cursor = self.store.users.find({"workspace_id": {"$eq": me.workspace_id}, "is_bot": {"$eq": True}})
        docs = [d async for d in cursor if not d.get("deactivated") and not d.get("webhook_id")]
        docs.sort(key=lambda d: d.get("name_key", ""))
        return [user_out(d, self.accounts.avatars) for d in docs]

    async def revoke(self, me: Identity, bot_id: str) -> None:
        await self._require_owner(me)
        doc = await self.store.users.find_one(
            {"_id": {"$eq": bot_id}, "workspace_id": {"$eq": me.workspace_id}, "is_bot": {"$eq": True}})
        if doc is None or doc.get("deactivated") or doc.get("webhook_id"):
            raise not_found("bot")
        await self.deactivate(bot_id)

    async def deactivate(self, bot_id: str) -> None:
        """The bot's token stops at once on every process, and its open streams end."""
        await self.store.users.update_one({"_id": bot_id}, {"$set": {"deactivated": True}})
        await self.accounts.end_sessions(bot_id)
