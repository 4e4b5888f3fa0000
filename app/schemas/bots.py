"""Bodies of bot users and incoming webhooks (contract section 16)."""

from __future__ import annotations

from typing import Annotated

import msgspec

from app.schemas.accounts import Username, UserOut
from app.schemas.common import VISIBLE, Id, PersonName, Request, Response, Timestamp
from app.schemas.messages import Content, IdempotencyKey

HookName = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=VISIBLE)]


class BotCreateIn(Request):
    name: PersonName
    username: Username


class BotCreatedOut(Response):
    bot: UserOut
    # Shown this once; only its SHA-256 is stored.
    token: str


class WebhookCreateIn(Request):
    name: HookName


class WebhookOut(Response):
    id: Id
    chat_id: Id
    name: str
    bot_id: Id
    created_at: Timestamp


class WebhookCreatedOut(Response):
    id: Id
    # `/hooks/<secret>`: shown this once; only the secret's SHA-256 is stored.
    url: str
    name: str
    bot_id: Id


class HookPostIn(Request):
    content: Content
    idempotency_key: IdempotencyKey | None = None
