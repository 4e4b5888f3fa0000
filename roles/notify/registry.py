"""Who is connected: user -> open streams, user -> chats, chat -> connected members. All in memory."""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable, Iterable, Iterator, Protocol

# Streams are pinged in this many groups, one group per keepalive tick, so pings never go out in one burst.
KEEPALIVE_SLICES = 4

# Presence waits for the next tick: every change of a tick goes to a stream in one write (one
# coalesced frame), after the durable frames of that tick.
EPHEMERAL_TICK_SECONDS = 0.05
# The most streams one tick writes presence to; the rest wait (and coalesce) for the next tick.
EPHEMERAL_STREAMS_PER_TICK = 500


class TooManyStreams(Exception):
    """The user already holds the most streams allowed."""


class Stream(Protocol):
    """An open SSE stream as the registry and the fan-out see it."""

    user_id: str
    keepalive_slice: int
    wrote: bool
    issued_at: float  # of the stream's access token: a logout-all ends streams issued before it

    def send(self, frame: bytes, chunk: bytes | None = None) -> None: ...

    def defer_presence(self, user_id: str, data: bytes) -> None: ...

    def flush_ephemeral(self, built: dict) -> None: ...

    def end(self) -> None: ...


class UserEntry:
    """A user with streams open (or opening) on this process."""

    __slots__ = ("user_id", "workspace_id", "streams", "chats", "opening", "loading", "buffered")

    def __init__(self, user_id: str, workspace_id: str):
        self.user_id = user_id
        self.workspace_id = workspace_id
        self.streams: set[Stream] = set()
        self.chats: set[str] = set()
        # Streams between authentication and registration: they keep the entry alive.
        self.opening = 0
        # The Mongo load of this user's chats while it runs; membership events seen meanwhile are buffered.
        self.loading: asyncio.Future[None] | None = None
        self.buffered: list[tuple[str, bool]] | None = None


class Registry:
    """The notify process's view of its users; every lookup on the delivery path is a dict/set access."""

    def __init__(self, load_chats: Callable[[str], Awaitable[set[str]]], presence_max_members: int = 500):
        self._load_chats = load_chats
        self.presence_max_members = presence_max_members
        self.users: dict[str, UserEntry] = {}
        # Open streams by keepalive group, so a tick visits only its own group.
        self.keepalive_slices: list[set[Stream]] = [set() for _ in range(KEEPALIVE_SLICES)]
        # chat -> users with an entry here who are members; what a chat event is delivered to.
        self.chat_members: dict[str, set[str]] = {}
        self.stream_count = 0
        # Streams with ephemeral frames waiting, in the order they got their first one.
        self._dirty: dict[Stream, None] = {}
        self._tick: asyncio.TimerHandle | None = None

    # -- ephemeral frames ------------------------------------------------------------------------

    def mark_dirty(self, stream: Stream) -> None:
        """The stream has presence waiting: the next tick writes it."""
        self._dirty[stream] = None
        if self._tick is None:
            self._tick = asyncio.get_running_loop().call_later(EPHEMERAL_TICK_SECONDS, self._flush_ephemeral)

    def _flush_ephemeral(self) -> None:
        self._tick = None
        dirty = self._dirty
        # One frame per distinct set of changes, built once and written to every stream that has it.
        built: dict = {}
        for _ in range(min(len(dirty), EPHEMERAL_STREAMS_PER_TICK)):
            stream = next(iter(dirty))
            del dirty[stream]
            stream.flush_ephemeral(built)
        if dirty:
            self._tick = asyncio.get_running_loop().call_later(EPHEMERAL_TICK_SECONDS, self._flush_ephemeral)

    def presence_chats(self, chat_ids: Iterable[str]) -> tuple[str, ...]:
        """The chats a user's presence change is pushed to: those with at most `presence_max_members`
        members connected here. A larger chat's members ask GET /api/online-users for it instead."""
        members, most = self.chat_members, self.presence_max_members
        return tuple(chat_id for chat_id in chat_ids if len(members.get(chat_id, ())) <= most)

    # -- streams ---------------------------------------------------------------------------------

    def streams_of(self, user_id: str) -> int:
        entry = self.users.get(user_id)
        return len(entry.streams) + entry.opening if entry else 0

    async def acquire(self, user_id: str, workspace_id: str, max_streams: int | None = None) -> UserEntry:
        """The user's entry with their chats loaded; pair with register() or abandon().

        The stream limit is checked here, where opening streams are counted, with no await between the
        check and the count: tabs reconnecting all at once cannot slip past it together.
        """
        entry = self.users.get(user_id)
        if max_streams is not None and entry is not None and len(entry.streams) + entry.opening >= max_streams:
            raise TooManyStreams()
        if entry is None:
            entry = self.users[user_id] = UserEntry(user_id, workspace_id)
            entry.loading = asyncio.get_running_loop().create_future()
            entry.buffered = []
            entry.opening += 1
            try:
                chats = await self._load_chats(user_id)
            except BaseException as e:
                entry.opening -= 1
                loading, entry.loading, entry.buffered = entry.loading, None, None
                self._discard_if_unused(entry)
                loading.set_exception(e)
                loading.exception()  # the waiting tabs re-raise it; nobody else needs to
                raise
            # Membership events consumed while Mongo answered are newer than or equal to what it
            # said; applying them in order on top gives the current membership.
            buffered, entry.buffered = entry.buffered, None
            self._set_chats(entry, chats)
            for chat_id, member in buffered:
                self._change(entry, chat_id, member)
            loading, entry.loading = entry.loading, None
            loading.set_result(None)
            return entry
        entry.opening += 1
        if entry.loading is not None:
            try:
                await asyncio.shield(entry.loading)
            except BaseException:
                entry.opening -= 1
                self._discard_if_unused(entry)
                raise
        return entry

    def abandon(self, entry: UserEntry) -> None:
        """An acquired stream that never opened (client gone, refused)."""
        entry.opening -= 1
        self._discard_if_unused(entry)

    def register(self, entry: UserEntry, stream: Stream) -> bool:
        """Adds an acquired stream; True when it is the user's first."""
        entry.opening -= 1
        entry.streams.add(stream)
        self.keepalive_slices[stream.keepalive_slice].add(stream)
        self.stream_count += 1
        return len(entry.streams) == 1

    def unregister(self, stream: Stream) -> UserEntry | None:
        """Removes a stream; returns the entry when that was the user's last stream (they went offline)."""
        entry = self.users.get(stream.user_id)
        if entry is None or stream not in entry.streams:
            return None
        entry.streams.discard(stream)
        self.keepalive_slices[stream.keepalive_slice].discard(stream)
        self._dirty.pop(stream, None)
        self.stream_count -= 1
        if entry.streams:
            return None
        self._discard_if_unused(entry)
        return entry

    def streams_for(self, user_ids: Iterable[str]) -> list[Stream]:
        """The open streams of those users that have any here."""
        users = self.users
        return [stream for user_id in user_ids if (entry := users.get(user_id)) is not None
                for stream in entry.streams]

    def all_streams(self) -> list[Stream]:
        return [stream for entry in self.users.values() for stream in entry.streams]

    def _discard_if_unused(self, entry: UserEntry) -> None:
        if entry.streams or entry.opening or self.users.get(entry.user_id) is not entry:
            return
        del self.users[entry.user_id]
        for chat_id in entry.chats:
            members = self.chat_members.get(chat_id)
            if members is not None:
                members.discard(entry.user_id)
                if not members:
                    del self.chat_members[chat_id]

    # -- membership ------------------------------------------------------------------------------

    def _set_chats(self, entry: UserEntry, chats: Iterable[str]) -> None:
        for chat_id in chats:
            self._change(entry, chat_id, True)

    def _change(self, entry: UserEntry, chat_id: str, member: bool) -> None:
        if member:
            entry.chats.add(chat_id)
            self.chat_members.setdefault(chat_id, set()).add(entry.user_id)
        elif chat_id in entry.chats:
            entry.chats.discard(chat_id)
            members = self.chat_members.get(chat_id)
            if members is not None:
                members.discard(entry.user_id)
                if not members:
                    del self.chat_members[chat_id]

    def apply(self, changes: Iterable[tuple[str, str, bool]]) -> None:
        """Membership changes from consumed events; only users with an entry here matter."""
        for user_id, chat_id, member in changes:
            entry = self.users.get(user_id)
            if entry is None:
                continue
            if entry.buffered is not None:
                entry.buffered.append((chat_id, member))
            else:
                self._change(entry, chat_id, member)

    # -- queries ---------------------------------------------------------------------------------

    def online(self, user_id: str) -> bool:
        entry = self.users.get(user_id)
        return entry is not None and bool(entry.streams)

    def online_here(self) -> Iterator[UserEntry]:
        """Users with at least one stream open (not merely opening) on this process."""
        return (entry for entry in self.users.values() if entry.streams)

    def members_here(self, chat_ids: Iterable[str]) -> set[str]:
        """Users with an entry here who are members of any of those chats."""
        users: set[str] = set()
        for chat_id in chat_ids:
            users.update(self.chat_members.get(chat_id, ()))
        return users

    def chats_of(self, user_id: str) -> set[str] | None:
        entry = self.users.get(user_id)
        if entry is None or entry.loading is not None:
            return None
        return entry.chats

    def describe(self) -> dict[str, Any]:
        return {
            "connected_users": sum(1 for _ in self.online_here()),
            "connections": self.stream_count,
            "active_chats": len(self.chat_members),
        }
