"""The services holding Fechatter's business rules, and the api role's set of them built from Deps."""

from __future__ import annotations

from dataclasses import dataclass

from app.file_links import FileLinks
from app.auth import PasswordHashing
from app.deps import Deps
from app.outbox import Outbox
from app.richtext import Renderer
from app.services.accounts import AccountService
from app.services.bots import BotService
from app.services.chats import ChatService
from app.services.export import Exporter
from app.services.files import FileService
from app.services.membership import ChatAccess
from app.services.mentions import MentionService
from app.services.people import PeopleService
from app.services.messages import MessageService
from app.services.ratelimit import RateLimiter
from app.services.reactions import MessageMarks, PinService, ReactionService
from app.services.search import SearchService
from app.services.sequence import ChatSequence
from app.services.sessions import SessionCutoffs
from app.services.system import SystemMessages
from app.services.webhooks_in import IncomingWebhooks
from app.services.webhooks_out import WebhookService


@dataclass(frozen=True)
class ApiServices:
    """What the api role's handlers call; `outbox` (drainer) and `limiter` (purge) are also its background tasks."""

    limiter: RateLimiter
    outbox: Outbox
    access: ChatAccess
    sequence: ChatSequence
    accounts: AccountService
    chats: ChatService
    files: FileService
    messages: MessageService
    mentions: MentionService
    people: PeopleService
    search: SearchService
    sessions: SessionCutoffs
    # A page's reactions and pins (MessageMarks.decorate), and the routes that change them.
    marks: MessageMarks
    reactions: ReactionService
    pins: PinService
    bots: BotService
    incoming_webhooks: IncomingWebhooks
    # Outgoing webhooks (the worker role delivers them).
    webhooks: WebhookService
    # The workspace export (GET /api/workspace/export).
    export: Exporter


def build_api_services(deps: Deps) -> ApiServices:
    """Each service from the ones below it; the sequence first, so the outbox's hook can be bound to it."""
    config, store = deps.config, deps.store
    limiter = RateLimiter(store, config.limits.enabled)
    # Signs file and thumbnail URLs; passed to every service that serves messages.
    links = FileLinks(deps.require_issuer().url_signer("files"), config.files.url_ttl_seconds)
    sequence = ChatSequence(store, config.api.outbox_grace_seconds, links)
    outbox = Outbox(store, deps.bus, config.api, on_abandoned=sequence.on_abandoned)
    access = ChatAccess(store)
    files = FileService(store, config.files.max_bytes, limiter=limiter, limits=config.limits, links=links)
    sessions = SessionCutoffs(store, config.auth.session_cache_seconds, bus=deps.bus)
    marks = MessageMarks(store)
    mentions = MentionService(store, marks, links)
    chats = ChatService(store, outbox, access, limiter=limiter, limits=config.limits, mentions=mentions,
                        system=SystemMessages(store, outbox, sequence))
    accounts = AccountService(
        store, deps.require_issuer(),
        PasswordHashing(config.auth.password_hash_concurrency, config.auth.password_hash_parallelism),
        config.auth, config.limits, limiter, outbox=outbox, sessions=sessions, on_signup=chats.workspace_joined,
    )
    messages = MessageService(store, outbox, access, sequence, files, limiter, config, mentions=mentions,
                              renderer=Renderer(), marks=marks)
    bots = BotService(store, deps.require_issuer(), accounts)
    return ApiServices(
        limiter=limiter,
        outbox=outbox,
        access=access,
        sequence=sequence,
        accounts=accounts,
        chats=chats,
        files=files,
        messages=messages,
        mentions=mentions,
        people=PeopleService(store, outbox, accounts),
        search=SearchService(store, config, limiter=limiter, marks=marks, links=links),
        sessions=sessions,
        marks=marks,
        reactions=ReactionService(store, outbox, access, limiter, config.limits, marks),
        pins=PinService(store, outbox, access, limiter, config.limits, marks, links),
        bots=bots,
        incoming_webhooks=IncomingWebhooks(store, access, chats, messages, bots),
        webhooks=WebhookService(store, config),
        export=Exporter(store),
    )
