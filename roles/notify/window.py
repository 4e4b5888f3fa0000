"""The replay window: recent events with their frames, so a reconnecting client gets what it missed."""

from __future__ import annotations

import bisect
import heapq
from typing import Iterable, Iterator

from app import events
from app.services import delivery

# Typing and presence say what is true now, not what happened: they are kept apart, in a small ring of
# their own, so a flood of them never pushes a durable event (a message, a join) out of the window.
EPHEMERAL_TYPES = frozenset({events.TYPING, events.PRESENCE})


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


def _seq(entry: WindowEntry) -> int:
    return entry.seq


class _Ring:
    """Entries in seq order, bounded by count; a list with a moving head: O(log n) lookup, amortised O(1) eviction."""

    def __init__(self, max_events: int):
        self.max_events = max_events
        self.entries: list[WindowEntry] = []
        self.head = 0

    def __len__(self) -> int:
        return len(self.entries) - self.head

    def append(self, entry: WindowEntry) -> int:
        """Adds `entry`; how many entries are now over the count bound (for the caller to evict)."""
        self.entries.append(entry)
        return max(0, len(self) - self.max_events)

    def count_older_than(self, oldest: float) -> int:
        # Stream timestamps rise with the sequence: the first entry young enough ends the walk.
        entries, count = self.entries, 0
        for i in range(self.head, len(entries)):
            if entries[i].ts >= oldest:
                break
            count += 1
        return count

    def oldest(self, count: int) -> list[WindowEntry]:
        return self.entries[self.head:self.head + count]

    def evict(self, count: int) -> WindowEntry:
        self.head += count
        last = self.entries[self.head - 1]
        if self.head > 1024 and self.head * 2 > len(self.entries):
            del self.entries[: self.head]
            self.head = 0
        return last

    def after(self, seq: int) -> Iterator[WindowEntry]:
        entries = self.entries
        start = bisect.bisect_right(entries, seq, lo=self.head, key=_seq)
        for i in range(start, len(entries)):
            yield entries[i]


class ReplayWindow:
    """Durable events in stream order, bounded by age and count; covers every sequence in (floor, last_seq].

    "Covers" is about durable events: a resume from any id in (floor, last_seq] gets every durable
    event after it. Ephemeral ones (EPHEMERAL_TYPES) are replayed too while their own ring still holds
    them, merged in stream order; past it they are simply not replayed. Events delivered to nobody
    (a stale presence, sessions.revoked, an unreadable one) take no slot at all.
    """

    def __init__(self, max_age_seconds: float, max_events: int, max_ephemeral_events: int | None = None):
        self.max_age = max_age_seconds
        self.max_events = max_events
        self._durable = _Ring(max_events)
        self._ephemeral = _Ring(max_ephemeral_events if max_ephemeral_events is not None
                                else max(1, min(max_events, 1000)))
        # Only the entries that change membership: replay's rebuild of the membership at the resume
        # point reads these, not every missed entry.
        self._changes = _Ring(max_events)
        # The durable entries by chat (and by explicit recipient): a resume walks the entries of the
        # user's chats only, so it costs what it returns, not the window's size.
        self._by_key: dict[str | tuple[str, str], _Ring] = {}
        # Every durable event with a sequence above floor (and up to last_seq) is held. None until known.
        self.floor: int | None = None
        self.last_seq = 0

    def __len__(self) -> int:
        return len(self._durable)

    @property
    def ephemeral_count(self) -> int:
        return len(self._ephemeral)

    def start_at(self, floor: int) -> None:
        if self.floor is None:
            self.floor = floor
            self.last_seq = max(self.last_seq, floor)

    def append(self, entry: WindowEntry) -> None:
        if self.floor is None:
            self.floor = entry.seq - 1
        self.last_seq = entry.seq
        if not entry.frame and not entry.changes:
            return  # for nobody: the sequence is covered without holding it
        if entry.type in EPHEMERAL_TYPES:
            over = self._ephemeral.append(entry)
            if over:
                self._ephemeral.evict(over)
            return
        if entry.changes:
            self._changes.append(entry)
        by_key = self._by_key
        if entry.chat_ids is None and not entry.recipients:  # most entries: one chat
            keys: Iterable[str | tuple[str, str]] = (entry.chat_id,) if entry.chat_id is not None else ()
        else:
            keys = _keys(entry)
        for key in keys:
            ring = by_key.get(key)
            if ring is None:
                ring = by_key[key] = _Ring(0)
            ring.entries.append(entry)
        over = self._durable.append(entry)
        if over:
            self._evict(over)

    def trim(self, now: float) -> None:
        """Drops events older than the window's age."""
        oldest = now - self.max_age
        count = self._ephemeral.count_older_than(oldest)
        if count:
            self._ephemeral.evict(count)
        count = self._durable.count_older_than(oldest)
        if count:
            self._evict(count)

    def _evict(self, count: int) -> None:
        by_key = self._by_key
        evicted: dict[str | tuple[str, str], int] = {}
        for entry in self._durable.oldest(count):
            if entry.chat_ids is None and not entry.recipients:  # most entries: one chat
                evicted[entry.chat_id] = evicted.get(entry.chat_id, 0) + 1  # type: ignore[index]
            else:
                for key in _keys(entry):
                    evicted[key] = evicted.get(key, 0) + 1
        evicted.pop(None, 0)  # type: ignore[call-overload]
        for key, n in evicted.items():
            ring = by_key[key]  # in seq order, so these are its oldest too
            if len(ring) == n:
                del by_key[key]
            else:
                ring.evict(n)
        last = self._durable.evict(count)
        self.floor = last.seq
        changes = self._changes
        start = bisect.bisect_right(changes.entries, last.seq, lo=changes.head, key=_seq)
        if start > changes.head:
            changes.evict(start - changes.head)

    def covers(self, seq: int) -> bool:
        return self.floor is not None and self.floor <= seq <= self.last_seq

    def after(self, seq: int) -> Iterator[WindowEntry]:
        """Held entries after `seq`, durable and ephemeral, in stream order."""
        return heapq.merge(self._durable.after(seq), self._ephemeral.after(seq), key=_seq)

    def _candidates(self, user_id: str, chats: Iterable[str], seq: int) -> Iterator[WindowEntry]:
        """The held entries after `seq` that may be for `user_id` (whose chats, at any point of the
        window, are `chats`), in stream order: the durable ones of those chats and addressed to them,
        and the few ephemeral ones."""
        by_key = self._by_key
        rings = [by_key[key] for key in (*chats, ("u", user_id)) if key in by_key]
        durable = heapq.merge(*(ring.after(seq) for ring in rings), key=_seq)
        last = None
        for entry in heapq.merge(durable, self._ephemeral.after(seq), key=_seq):
            if entry is not last:  # one entry may be both in a chat and addressed to the user
                last = entry
                yield entry

    def replay(self, user_id: str, current_chats: Iterable[str], after_seq: int,
               max_bytes: int | None = None) -> list[bytes]:
        """The frames `user_id` would have received live after `after_seq`, in order.

        Membership at the resume point is rebuilt from the current one: a chat whose first change in
        the window is a join was not theirs yet, one whose first change is a leave still was.
        With `max_bytes`, it stops after the frame that passes it: the caller sends a page and the
        client resumes from there, so the walk costs what one page holds, not the whole window.
        """
        first_change: dict[str, bool] = {}
        for entry in self._changes.after(after_seq):
            for user, chat, member_after in entry.changes:
                if user == user_id and chat not in first_change:
                    first_change[chat] = not member_after
        chats = set(current_chats)
        ever = chats.union(first_change)
        for chat, was_member in first_change.items():
            if was_member:
                chats.add(chat)
            else:
                chats.discard(chat)
        frames: list[bytes] = []
        size = 0
        members_of = delivery.members_for(user_id, chats)
        for entry in self._candidates(user_id, ever, after_seq):
            if entry.changes and entry.changes_first:
                _apply(chats, user_id, entry.changes)
            # The common case, a chat event with no explicit recipients, without building a set.
            if entry.chat_ids is None and not entry.recipients:
                wanted = entry.chat_id in chats
            else:
                wanted = user_id in delivery.recipients(entry, members_of)
            if wanted:
                frames.append(entry.frame)
                size += len(entry.frame)
            if entry.changes and not entry.changes_first:
                _apply(chats, user_id, entry.changes)
            if max_bytes is not None and size > max_bytes:
                break
        return frames


def _keys(entry: WindowEntry) -> Iterable[str | tuple[str, str]]:
    """Where an entry is indexed: every chat whose members it may be for, and its explicit recipients."""
    keys: list[str | tuple[str, str]] = list(entry.chat_ids) if entry.chat_ids is not None else (
        [entry.chat_id] if entry.chat_id is not None else [])
    if entry.recipients:
        keys.extend(("u", user) for user in entry.recipients)
    return dict.fromkeys(keys)


def _apply(chats: set[str], user_id: str, changes: tuple[tuple[str, str, bool], ...]) -> None:
    for user, chat, member_after in changes:
        if user == user_id:
            if member_after:
                chats.add(chat)
            else:
                chats.discard(chat)
