"""Who receives an event, and the membership changes it makes: one rule for live fan-out and for replay."""

from __future__ import annotations

from typing import Callable, Collection, Protocol

import msgspec

from app import events

# (user_id, chat_id, is_member_after)
Change = tuple[str, str, bool]
MembersOf = Callable[[str | None], Collection[str]]

NOBODY: frozenset[str] = frozenset()


class Routing(Protocol):
    """The routing fields of a consumed event."""

    chat_id: str | None
    # The user a user-scoped event (presence) is about.
    subject: str | None
    recipients: tuple[str, ...] | None
    # The chats of `subject`, for a user-scoped event; None for a chat event.
    chat_ids: tuple[str, ...] | None


def recipients(event: Routing, members_of: MembersOf) -> Collection[str]:
    """The users `event` is for, given each chat's members. Read-only: it may be members_of's own set.

    A user-scoped event (presence) goes to the members of the user's chats but not to the user (unless it
    names them in `recipients`: user.updated reaches their own tabs too); a chat
    event to the chat's members and to its explicit `recipients` (a removed member, a deleted chat's); a
    personal event (app.events.PERSONAL_EVENTS: no chat, its user the only recipient) to that user alone.
    """
    if event.chat_ids is not None:
        users: set[str] = set()
        for chat_id in event.chat_ids:
            users.update(members_of(chat_id))
        users.discard(event.subject)  # type: ignore[arg-type]
        if event.recipients:
            users.update(event.recipients)
        return users
    members = members_of(event.chat_id)
    if event.recipients:
        users = set(members)
        users.update(event.recipients)
        return users
    return members


def members_for(user_id: str, chats: Collection[str]) -> MembersOf:
    """members_of as one user sees it: themselves in their `chats` (read at each call), nobody elsewhere."""
    me = (user_id,)
    return lambda chat_id: me if chat_id in chats else NOBODY


def is_for(event: Routing, user_id: str, chats: Collection[str]) -> bool:
    """recipients() asked about one user who is a member of `chats`."""
    return user_id in recipients(event, members_for(user_id, chats))


def membership_changes(event_type: str, chat_id: str | None, data: bytes, recipients: Collection[str],
                       members_of: MembersOf) -> tuple[tuple[Change, ...], bool]:
    """The (user, chat, member_after) changes an event makes, and whether they apply before its delivery.

    Before for joins and creations (the new member hears of it), after for leaves and deletions (the
    leaving member hears of it too). On a deletion the chat's members as `members_of` knows them leave
    as well, should `recipients` miss someone.
    """
    if event_type not in events.MEMBERSHIP_EVENTS or not chat_id:
        return (), True
    if event_type == events.CHAT_DELETED:
        gone = set(recipients) | set(members_of(chat_id))
        return tuple((user, chat_id, False) for user in sorted(gone)), False
    payload = msgspec.json.decode(data)
    if event_type == events.MEMBER_JOINED and payload.get("user_id"):
        return ((payload["user_id"], chat_id, True),), True
    if event_type == events.MEMBER_LEFT and payload.get("user_id"):
        return ((payload["user_id"], chat_id, False),), False
    if event_type == events.CHAT_CREATED:
        return tuple((user, chat_id, True) for user in payload.get("members") or ()), True
    return (), True
