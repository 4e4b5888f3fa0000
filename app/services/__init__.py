"""The services holding Fechatter's business rules, and the api role's set of them built from Deps."""

from __future__ import annotations

from dataclasses import dataclass

from app import file_links
from app.file_links import FileLinks
from app.auth import PasswordHashing
from app.deps import Deps
from app.outbox import Outbox
from app.richtext import Renderer
from app.services.accounts import AccountService
from app.services.chats import ChatService
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


def build_api_services(deps: Deps) -> ApiServices:
    """Each service from the ones below it; the sequence first, so the outbox's hook can be bound to it."""
    config, store = deps.config, deps.store
    limiter = RateLimiter(store, config.limits.enabled)
    sequence = ChatSequence(store, config.api.outbox_grace_seconds)
    outbox = Outbox(store, deps.bus, config.api, on_abandoned=sequence.on_abandoned)
    access = ChatAccess(store)
    links = FileLinks(deps.require_issuer().url_signer("files"), config.files.url_ttl_seconds)
    file_links.configure(links)
    files = FileService(store, config.files.max_bytes, limiter=limiter, limits=config.limits, links=links)
    sessions = SessionCutoffs(store, config.auth.session_cache_seconds, bus=deps.bus)
    marks = MessageMarks(store)
    mentions = MentionService(store, marks)
    chats = ChatService(store, outbox, access, limiter=limiter, limits=config.limits, mentions=mentions,
                        system=SystemMessages(store, outbox, sequence))
    accounts = AccountService(
        store, deps.require_issuer(),
        PasswordHashing(config.auth.password_hash_concurrency, config.auth.password_hash_parallelism),
        config.auth, config.limits, limiter, outbox=outbox, sessions=sessions, on_signup=chats.workspace_joined,
    )
    return ApiServices(
        limiter=limiter,
        outbox=outbox,
        access=access,
        sequence=sequence,
        accounts=accounts,
        chats=chats,
        files=files,
        messages=MessageService(store, outbox, access, sequence, files, limiter, config, mentions=mentions,
                                renderer=Renderer(), marks=marks),
        mentions=mentions,
        people=PeopleService(store, outbox, accounts),
        search=SearchService(store, config, limiter=limiter, marks=marks),
        sessions=sessions,
        marks=marks,
        reactions=ReactionService(store, outbox, access, limiter, config.limits, marks),
        pins=PinService(store, outbox, access, limiter, config.limits, marks),
    )
