"""The replay window: recent events with their frames, so a reconnecting client gets what it missed."""

from __future__ import annotations

import bisect
import heapq
import itertools
import operator
from typing import Iterable

from app import events
from app.services import delivery

# Typing and presence say what is true now, not what happened: they are kept apart, in a small ring of
# their own, so a flood of them never pushes a durable event (a message, a join) out of the window.
EPHEMERAL_TYPES = frozenset({events.TYPING, events.PRESENCE})
# A resume's candidates up to this many are sorted at once (fast, in C); more are merged lazily.
SORT_AT_MOST = 4096


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


_seq = operator.attrgetter("seq")


class _Ring:
    """Entries in seq order: a list with a moving head, O(log n) lookup, amortised O(1) eviction.

    An evicted entry's slot is cleared at once, so the ring holds no entry (and no frame) past its
    eviction; the dead slots go once they outnumber the live ones.
    """

    __slots__ = ("entries", "head")

    def __init__(self) -> None:
        # entries[:head] are None; bisect and tail never look at them.
        self.entries: list[WindowEntry] = []
        self.head = 0

    def __len__(self) -> int:
        return len(self.entries) - self.head

    def count_older_than(self, oldest: float) -> int:
        # Stream timestamps rise with the sequence: the first entry young enough ends the walk.
        entries, count = self.entries, 0
        for i in range(self.head, len(entries)):
            if entries[i].ts >= oldest:
                break
            count += 1
        return count

    def evict(self, count: int) -> None:
        head = self.head
        self.head = head + count
        if self.head * 2 < len(self.entries):
            self.entries[head:self.head] = [None] * count  # type: ignore[list-item]
        else:
            del self.entries[: self.head]
            self.head = 0

    def tail(self, seq: int) -> list[WindowEntry]:
        """The held entries after `seq`, in order."""
        return self.entries[bisect.bisect_right(self.entries, seq, lo=self.head, key=_seq):]


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
        self.max_ephemeral = (max_ephemeral_events if max_ephemeral_events is not None
                              else max(1, min(max_events, 1000)))
        self._durable = _Ring()
        self._ephemeral = _Ring()
        # The durable entries by the chats they may be for and by the users they name (explicit
        # recipients, membership changes): a resume reads the rings of one user's chats and their own,
        # so it costs what that user missed, not the window's size. Derived from _durable, evicted with it.
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
            self._ephemeral.entries.append(entry)
            if len(self._ephemeral) > self.max_ephemeral:
                self._ephemeral.evict(1)
            return
        by_key = self._by_key
        for key in _keys(entry):
            ring = by_key.get(key)
            if ring is None:
                ring = by_key[key] = _Ring()
            ring.entries.append(entry)
        self._durable.entries.append(entry)
        if len(self._durable) > self.max_events:
            self._evict(1)

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
        durable, by_key = self._durable, self._by_key
        for i in range(durable.head, durable.head + count):
            for key in _keys(durable.entries[i]):
                ring = by_key[key]  # in seq order, so this entry is its oldest too
                if len(ring) == 1:
                    del by_key[key]
                else:
                    ring.evict(1)
        self.floor = durable.entries[durable.head + count - 1].seq
        durable.evict(count)

    def covers(self, seq: int) -> bool:
        return self.floor is not None and self.floor <= seq <= self.last_seq

    def _candidates(self, chats: Iterable[str], own: list[WindowEntry], seq: int) -> Iterable[WindowEntry]:
        """The held entries after `seq` that may be for a user whose chats, at any point of the window,
        are `chats` and whose own entries after `seq` are `own`, in stream order: the durable ones of
        those chats, `own`, and the few ephemeral ones. An entry both in a chat and the user's own comes
        twice, side by side."""
        by_key = self._by_key
        tails = [by_key[chat].tail(seq) for chat in chats if chat in by_key]
        tails.append(own)
        tails.append(self._ephemeral.tail(seq))
        if sum(map(len, tails)) <= SORT_AT_MOST:
            # Each tail is in order: sorting their concatenation merges the runs, in C.
            return sorted(itertools.chain.from_iterable(tails), key=_seq)
        # More than a page is likely to need: merged lazily, so the walk stops with the page.
        return heapq.merge(*tails, key=_seq)

    def replay(self, user_id: str, current_chats: Iterable[str], after_seq: int,
               max_bytes: int | None = None) -> list[bytes]:
        """The frames `user_id` would have received live after `after_seq`, in order.

        Membership at the resume point is rebuilt from the current one: a chat whose first change in
        the window is a join was not theirs yet, one whose first change is a leave still was.
        With `max_bytes`, it stops after the frame that passes it: the caller sends a page and the
        client resumes from there.
        """
        mine = self._by_key.get(("u", user_id))
        own = mine.tail(after_seq) if mine is not None else []  # naming the user: changes, addressed
        first_change: dict[str, bool] = {}
        for entry in own:
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
        last = None
        for entry in self._candidates(ever, own, after_seq):
            if entry is last:
                continue
            last = entry
            if entry.changes and entry.changes_first:
                _apply(chats, user_id, entry.changes)
            # The common case, a chat event with no explicit recipients, without building a set.
            if entry.chat_ids is None and not entry.recipients:
                wanted = entry.chat_id in chats
            else:
                wanted = delivery.is_for(entry, user_id, chats)
            if wanted:
                frames.append(entry.frame)
                size += len(entry.frame)
            if entry.changes and not entry.changes_first:
                _apply(chats, user_id, entry.changes)
            if max_bytes is not None and size > max_bytes:
                break
        return frames


def _keys(entry: WindowEntry) -> Iterable[str | tuple[str, str]]:
    """Where a durable entry is indexed: every chat whose members it may be for, and the users it names."""
    if entry.chat_ids is None and not entry.recipients and not entry.changes:  # most entries: one chat
        return (entry.chat_id,) if entry.chat_id is not None else ()
    keys: list[str | tuple[str, str]] = list(entry.chat_ids) if entry.chat_ids is not None else (
        [entry.chat_id] if entry.chat_id is not None else [])
    keys.extend(("u", user) for user in entry.recipients or ())
    keys.extend(("u", user) for user, _, _ in entry.changes)
    return dict.fromkeys(keys)


def _apply(chats: set[str], user_id: str, changes: tuple[tuple[str, str, bool], ...]) -> None:
    for user, chat, member_after in changes:
        if user == user_id:
            if member_after:
                chats.add(chat)
            else:
                chats.discard(chat)
