"""The replay window: recent events with their frames, so a reconnecting client gets what it missed."""

from __future__ import annotations

import bisect
from typing import Iterable, Iterator

from app.services import delivery


class WindowEntry:
    """One consumed event: its routing (app.services.delivery.Routing), its frame, and its membership changes."""

    __slots__ = ("seq", "ts", "type", "chat_id", "subject", "recipients", "chat_ids", "frame", "changes",
                 "changes_first")

    def __init__(self, seq: int, ts: float, type: str, frame: bytes, *, chat_id: str | None = None,
                 subject: str | None = None, recipients: tuple[str, ...] | None = None,
                 chat_ids: tuple[str, ...] | None = None,
                 changes: tuple[tuple[str, str, bool], ...] = (), changes_first: bool = True):
        self.seq = seq
        self.ts = ts
        self.type = type
        self.frame = frame
        self.chat_id = chat_id
        # The user a presence event is about.
        self.subject = subject
        self.recipients = recipients
        self.chat_ids = chat_ids
        # (user_id, chat_id, is_member_after): applied before delivery for joins (the new member hears
        # of it), after delivery for leaves (the leaving member hears of it too).
        self.changes = changes
        self.changes_first = changes_first


class ReplayWindow:
    """Events in stream order, bounded by age and count; covers every sequence in (floor, last_seq]."""

    def __init__(self, max_age_seconds: float, max_events: int):
        self.max_age = max_age_seconds
        self.max_events = max_events
        # A list with a moving head: O(log n) lookup by sequence, amortised O(1) eviction.
        self._entries: list[WindowEntry] = []
        self._head = 0
        # Every event with a sequence above floor (and up to last_seq) is held. None until known.
        self.floor: int | None = None
        self.last_seq = 0

    def __len__(self) -> int:
        return len(self._entries) - self._head

    def start_at(self, floor: int) -> None:
        if self.floor is None:
            self.floor = floor
            self.last_seq = max(self.last_seq, floor)

    def append(self, entry: WindowEntry) -> None:
        if self.floor is None:
            self.floor = entry.seq - 1
        self._entries.append(entry)
        self.last_seq = entry.seq
        if len(self) > self.max_events:
            self._evict(len(self) - self.max_events)

    def trim(self, now: float) -> None:
        """Drops events older than the window's age."""
        oldest = now - self.max_age
        count = 0
        for i in range(self._head, len(self._entries)):
            if self._entries[i].ts >= oldest:
                break
            count += 1
        if count:
            self._evict(count)

    def _evict(self, count: int) -> None:
        self._head += count
        self.floor = self._entries[self._head - 1].seq
        if self._head > 1024 and self._head * 2 > len(self._entries):
            del self._entries[: self._head]
            self._head = 0

    def covers(self, seq: int) -> bool:
        return self.floor is not None and self.floor <= seq <= self.last_seq

    def after(self, seq: int) -> Iterator[WindowEntry]:
        start = bisect.bisect_right(self._entries, seq, lo=self._head, key=lambda entry: entry.seq)
        for i in range(start, len(self._entries)):
            yield self._entries[i]

    def replay(self, user_id: str, current_chats: Iterable[str], after_seq: int) -> list[bytes]:
        """The frames `user_id` would have received live after `after_seq`, in order.

        Membership at the resume point is rebuilt from the current one: a chat whose first change in
        the window is a join was not theirs yet, one whose first change is a leave still was.
        """
        missed = list(self.after(after_seq))
        first_change: dict[str, bool] = {}
        for entry in missed:
            for user, chat, member_after in entry.changes:
                if user == user_id and chat not in first_change:
                    first_change[chat] = not member_after
        chats = set(current_chats)
        for chat, was_member in first_change.items():
            if was_member:
                chats.add(chat)
            else:
                chats.discard(chat)
        frames = []
        members_of = delivery.members_for(user_id, chats)
        for entry in missed:
            if entry.changes and entry.changes_first:
                _apply(chats, user_id, entry.changes)
            if user_id in delivery.recipients(entry, members_of):
                frames.append(entry.frame)
            if entry.changes and not entry.changes_first:
                _apply(chats, user_id, entry.changes)
        return frames


def _apply(chats: set[str], user_id: str, changes: tuple[tuple[str, str, bool], ...]) -> None:
    for user, chat, member_after in changes:
        if user == user_id:
            if member_after:
                chats.add(chat)
            else:
                chats.discard(chat)
