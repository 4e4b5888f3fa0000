"""Message search: the newest matches in the caller's chats, read one seq window at a time, stopping at its limit.

Every read is one range of the (chat_id, seq) index of one chat the caller belongs to, newest seqs
first, with the words as a case-insensitive regex evaluated only on the rows of that range. Across
chats the pages merge newest-first by a threshold rule: always read the chat whose unread part may
hold the newest message, and stop once `limit` matches are newer than every unread part. Each
request has a budget of reads and rows; when it ends first, the answer carries what is certain so
far and a cursor that resumes exactly there. Nothing sorts all the matches, and no other chat's
messages are read. A caller in many chats does not read all of them to start: their bounds come from
the workspace's chats by recent activity (the `(workspace_id, last_message_at)` index), a page at a
time, only while a chat not seen yet could still hold a newer match (`_Chats`).

"Newest" is created_at (ms), then chat id, then seq. A chat's unread part is bounded by the time of
its newest unread message, which assumes created_at grows with seq inside a chat; concurrent sends
to one chat can break that by the few ms between taking a seq and stamping the message, and so can
the chat's last_message_at (taken with the seq) used as the first bound: the order is exact to those ms.

Filters are conditions of the same window reads, never another query: `from` is `sender_id $eq`, `has` one
of the booleans every write sets (app.services.search_flags; no array operator, which the embedded store
gets wrong), `after`/`before` a range of the `created_ms` int every write sets beside created_at (a range
of a datetime makes nx-27017 copy the collection first), as a row condition inside the seq range. The time
range also prunes: `before` caps every bound (the floor), a chat whose newest message is older than `after`
is never read, and the merge stops once every unread part is older than `after`. A `before` far back in a busy chat still walks its newer windows (they match nothing), within
the budget and with a cursor. q may then be empty. System lines ("joined"…) are never hits. Each hit
carries `highlights`, code-point offsets of its words in its content.
"""

from __future__ import annotations

import base64
import bisect
import contextlib
import datetime
import hashlib
import heapq
import re
from dataclasses import dataclass
from typing import Any

import msgspec

from app.auth import Identity
from app.config import Config
from app.errors import APIError, invalid, not_found
from app.schemas.common import Id, valid_id
from app.file_links import FileLinks
from app.schemas.messages import SYSTEM_KIND, SearchHitOut, SearchOut, SearchQuery, message_out
from app.services import membership
from app.services.paging import bad_cursor, decode_cursor, encode_cursor
from app.services.ratelimit import RateLimiter
from app.services.search_flags import FLAGS, created_ms
from app.services.reactions import MessageMarks
from app.store import Store, utcnow

# The first window of a chat covers this many seqs; a window that finds too little makes the next 4x wider.
FIRST_WINDOW = 128
MAX_WINDOW = 4096
# Per request: store reads (windows and bound look-ups) and seqs covered by windows.
MAX_READS = 40
MAX_ROWS = 20_000
# A caller in more chats than this finds them by recent activity, a page at a time, instead of all at once.
ACTIVITY_FROM = 32
ACTIVITY_PAGE = 16
# Pages of activity per request; after them the chats still unseen are read at once by _id.
ACTIVITY_PAGES = 3
# More words than this are ignored: each is one lookahead evaluated per row.
MAX_WORDS = 8
# A next_cursor fits the `cursor` query parameter (schemas.common.Cursor).
CURSOR_MAX_CHARS = 4000

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
_FAR_FUTURE_MS = 2**62
_CURSOR_KIND = "search"

Key = tuple[int, str, int]  # (-created_at ms, chat_id, -seq): ascending = newest first


def _ms(value: Any) -> int | None:
    if not isinstance(value, datetime.datetime):
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.timezone.utc)
    return (value - _EPOCH) // datetime.timedelta(milliseconds=1)


# Of a chat, only what a scan starts from: not the whole last message (its content), only its time.
_CHAT_FIELDS = {"workspace_id": 1, "last_seq": 1, "last_message.created_at": 1, "last_message_at": 1}


def _newest(chat: dict[str, Any]) -> tuple[int | None, bool]:
    """An upper bound of the chat's message times, and whether it is the time of its last message.

    The chat keeps its last message as served (created_at a string); last_message_at, stamped when a
    seq is taken, bounds every message built before it, but seeded history may lie far below it.
    Projected as `last_message.created_at`, which MongoDB answers nested and nx-27017 as that dotted key.
    """
    last = chat.get("last_message")
    created = last.get("created_at") if isinstance(last, dict) else chat.get("last_message.created_at")
    if isinstance(created, str):
        with contextlib.suppress(ValueError):
            return _ms(datetime.datetime.fromisoformat(created)), True
    return _ms(chat.get("last_message_at")), False


def _key(doc: dict[str, Any]) -> Key:
    return (-(_ms(doc.get("created_at")) or 0), doc["chat_id"], -doc["seq"])


def highlights(content: str, words: list[str]) -> list[list[int]]:
    """[start, end) code-point offsets of every occurrence of each word in `content`, any case (as the store's
    `(?i)` regex matches), overlapping occurrences too ("aa" in "aaa"), merged where they overlap or touch."""
    spans = sorted(
        (m.start(1), m.end(1))
        for word in words
        for m in re.finditer(f"(?=({re.escape(word)}))", content, re.IGNORECASE)
    )
    merged: list[list[int]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return merged


def _instant(value: str | None, field: str) -> datetime.datetime | None:
    """An ISO date (midnight UTC) or date-time (naive: UTC) of a filter, in UTC; else 422."""
    if value is None:
        return None
    try:
        moment = datetime.datetime.fromisoformat(value.strip())
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=datetime.timezone.utc)
        return moment.astimezone(datetime.timezone.utc)
    except (ValueError, OverflowError):
        raise invalid(field, "an ISO 8601 date (YYYY-MM-DD) or date-time") from None


@dataclass(frozen=True)
class _Filters:
    """What a message must be beside live and in the window: the words and the filters, as row conditions."""

    words: list[str]
    conditions: dict[str, Any]
    after_ms: int | None
    before_ms: int | None
    digest: str


def words_pattern(words: list[str]) -> str:
    """Every word, in any order and case: lookaheads from the start, inline flags only (never $options)."""
    if len(words) == 1:
        return "(?i)" + re.escape(words[0])
    return "(?is)\\A" + "".join(f"(?=.*?{re.escape(word)})" for word in words)


class _State(msgspec.Struct, array_like=True):
    """Where a chat's scan stands: seqs above `hi` are read; nothing unread is newer than `bound` (ms)."""

    hi: int
    bound: int
    exact: bool


class _Cursor(msgspec.Struct, array_like=True):
    """Chats by their position among the caller's chat ids, sorted: a few bytes each, not an id each."""

    query: str  # digest of the words, chat_id and filters: a cursor of another search is refused
    last: tuple[int, Id, int]  # the key of the last message handed out (or the instant the search began)
    chats: str  # digest of the sorted chat ids the positions refer to; another set: no states
    done: str  # base64 bitmap of the positions of chats read to their first message
    part: list[tuple[int, int, int, bool]]  # (position, hi, ms from last to bound, exact) of the others


def _chats_digest(chat_ids: list[str]) -> str:
    return hashlib.sha256("\n".join(chat_ids).encode()).hexdigest()[:12]


@dataclass
class _Scan:
    chat_id: str
    hi: int
    bound: int
    exact: bool  # bound is the time of the message at hi (else only an upper bound)
    top: int = 0  # the chat's last_seq when this request began
    window: int = FIRST_WINDOW
    touched: bool = False  # read by this request, or carried from the cursor: its state goes into the next one

    def key(self) -> Key:
        return (-self.bound, self.chat_id, -self.hi)


class _Chats:
    """Where each chat of the caller's starts: all of them at once, or by recent activity on demand.

    A caller in many chats gets them from the workspace's chats newest activity first (only the fields
    a scan starts from; others' chats are skipped, their messages never read), a page at a time while the
    merge may still need one: every chat not yet seen is no newer than the last page's oldest activity.
    Pages go by skip (at most ACTIVITY_PAGE * (1 + 4) rows), not by a range of last_message_at, which
    nx-27017 cannot serve from the index (tests/test_store_plans.py::test_a_datetime_range_scans). A chat
    whose activity moves up between two pages (a send meanwhile) may be seen on neither: this request then
    misses its matches, which a search started after the send finds.
    """

    def __init__(self, store: Store, workspace_id: str, order: list[str], floor: int, states: dict[str, _State],
                 after_ms: int | None = None):
        self.store = store
        self.after_ms = after_ms  # a chat whose bound is older holds no match: never read
        self.workspace_id = workspace_id
        self.order = order  # the caller's chat ids, sorted: what the cursor's positions refer to
        self.mine = set(order)
        self.floor = floor
        self.states = states
        self.scans: dict[str, _Scan] = {}  # every chat of the caller's seen so far
        self.skip = 0
        self.pages = 0
        self.frontier: int | None = _FAR_FUTURE_MS if order else None  # ms; None once every chat is seen

    def _scan_of(self, chat: dict[str, Any]) -> _Scan | None:
        chat_id = chat["_id"]
        if chat_id in self.scans or chat_id not in self.mine or chat.get("workspace_id") != self.workspace_id:
            return None
        top = chat.get("last_seq", 0)
        state = self.states.get(chat_id)
        if state is not None:
            # Touched: its state goes on into the next cursor, read or not.
            scan = _Scan(chat_id, min(state.hi, top), state.bound, state.exact and state.hi <= top, top=top,
                         touched=True)
        else:
            hint, exact = _newest(chat)
            bound = min(hint, self.floor) if hint is not None else self.floor
            scan = _Scan(chat_id, top, bound, exact and hint <= self.floor, top=top)
        if self.after_ms is not None and scan.bound < self.after_ms:
            scan.hi = 0
        self.scans[chat_id] = scan
        return scan

    def key(self) -> Key | None:
        """The newest key any unseen chat could hold ("" sorts below every chat id)."""
        if self.frontier is None:
            return None
        return (-min(self.frontier, self.floor), "", -_FAR_FUTURE_MS)

    async def more(self) -> list[_Scan]:
        """The next chats: for a caller in few chats, or past ACTIVITY_PAGES, every one still unseen (by _id
        alone: a workspace_id filter could make the store walk the workspace's); else the next page by activity."""
        if len(self.order) <= ACTIVITY_FROM or self.pages >= ACTIVITY_PAGES:
            unseen = [chat_id for chat_id in self.order if chat_id not in self.scans]
            self.frontier = None
            cursor = self.store.chats.find({"_id": {"$in": unseen}}, _CHAT_FIELDS)
            return [scan async for chat in cursor if (scan := self._scan_of(chat)) is not None]
        self.pages += 1
        # Small first: the merge often needs only the few chats active last; each chat read costs ~0.1 ms.
        size = ACTIVITY_PAGE * 4 ** (self.pages - 1)
        chats = await self.store.chats.find(
            {"workspace_id": {"$eq": self.workspace_id}}, _CHAT_FIELDS,
            sort=[("last_message_at", -1)], skip=self.skip, limit=size,
        ).to_list()
        self.skip += len(chats)
        scans = [scan for chat in chats if (scan := self._scan_of(chat)) is not None]
        if len(chats) < size or len(self.scans) == len(self.mine):
            self.frontier = None
        else:
            self.frontier = _ms(chats[-1].get("last_message_at")) or 0
            if self.after_ms is not None and self.frontier < self.after_ms:
                self.frontier = None  # every chat not seen yet is older than `after`
        return scans


class SearchService:
    def __init__(self, store: Store, config: Config, *, max_reads: int = MAX_READS, max_rows: int = MAX_ROWS,
                 limiter: RateLimiter | None = None, marks: MessageMarks | None = None, links: FileLinks | None = None):
        self.store = store
        self.links = links  # signs the hits' file URLs
        # The page's reactions and pins: one read of them per page.
        self.marks = marks or MessageMarks(store)
        self.limits = config.limits
        self.limiter = limiter
        self.max_chars = config.limits.search_query_max_chars
        self.max_reads = max_reads
        self.max_rows = max_rows

    async def search(self, user: Identity, query: SearchQuery) -> SearchOut:
        """The newest `limit` matches of the caller's chats (or one of them) after the cursor."""
        filters = self._filters(query)
        if self.limiter is not None:
            # Each request may read up to max_rows rows: bounded, but not to be asked without end.
            await self.limiter.per_user("searches", user.user_id, limit=self.limits.searches_per_minute_per_user,
                                        window=60, what="searches")
        digest = filters.digest
        resume = None
        if query.cursor is not None:
            resume = decode_cursor(_CURSOR_KIND, query.cursor, _Cursor)
            if resume.query != digest:
                raise bad_cursor()
        started = _ms(utcnow())
        chats = await self._chats(user, query.chat_id, resume, filters)
        last: Key | None = tuple(resume.last) if resume is not None else None
        found, top = await self._run(chats, filters, query.limit, last)

        emitted = [(k, doc) for k, doc in found[: query.limit] if top is None or k < top]
        leftover = found[len(emitted):]
        messages = [
            SearchHitOut(**msgspec.structs.asdict(message_out(doc, self.links)),
                         highlights=highlights(doc.get("content") or "", filters.words))
            for _, doc in emitted
        ]
        await self.marks.decorate(messages, user.user_id)
        if top is None and not leftover:
            return SearchOut(messages=messages, next_cursor=None)
        # A first page cut before it could hand anything out still fixes the moment the search looks back
        # from: what is sent after it belongs to a new search, not to this one's continuation ("-" sorts
        # below every id).
        new_last = emitted[-1][0] if emitted else last if last is not None else (-(started or 0), "-", 0)
        # The cursor's states of chats this request did not reach still hold.
        states: dict[str, _State] = {c: st for c, st in chats.states.items() if c not in chats.scans}
        for scan in chats.scans.values():
            if scan.touched:
                states[scan.chat_id] = _State(max(scan.hi, 0), scan.bound, scan.exact)
        for k, doc in reversed(leftover):  # oldest first, so each chat ends at its newest leftover
            states[doc["chat_id"]] = _State(doc["seq"], -k[0], True)
        cursor = self._cursor(digest, new_last, states, chats.order, chats.scans)
        return SearchOut(messages=messages, next_cursor=cursor)

    @staticmethod
    def _cursor(digest: str, last: Key, states: dict[str, _State], order: list[str], scans: dict[str, _Scan]) -> str:
        """The states are only a short cut: a chat without one is read again from its top, through the
        `last` filter, to the same answer. So a cursor too long for a URL drops the cheapest to redo."""
        position = {chat_id: n for n, chat_id in enumerate(order)}
        last_ms = -last[0]
        done = bytearray((len(order) + 7) // 8)
        part: list[tuple[int, int, int, bool]] = []
        for chat_id, state in states.items():
            n = position[chat_id]
            if state.hi < 1:
                done[n // 8] |= 1 << (n % 8)
            else:
                part.append((n, state.hi, last_ms - state.bound, state.exact))
        # Cheapest to read again first: the fewest seqs between the chat's top and where its scan stands.
        part.sort(key=lambda p: (scans[order[p[0]]].top if order[p[0]] in scans else p[1]) - p[1], reverse=True)
        bitmap = base64.b64encode(bytes(done)).decode()
        while True:
            encoded = encode_cursor(_CURSOR_KIND, _Cursor(digest, last, _chats_digest(order), bitmap, part))
            if len(encoded) <= CURSOR_MAX_CHARS or not part:
                return encoded
            del part[-max(1, len(part) // 8):]

    @staticmethod
    def _states(resume: _Cursor, order: list[str]) -> dict[str, _State]:
        """The states of the cursor's chats; none when the caller's chats changed since (a join, a leave)."""
        if resume.chats != _chats_digest(order):
            return {}
        try:
            done = base64.b64decode(resume.done, validate=True)
        except ValueError:
            raise bad_cursor() from None
        last_ms = -resume.last[0]
        read_out = [n for n in range(min(len(order), len(done) * 8)) if done[n // 8] >> (n % 8) & 1]
        states = {order[n]: _State(0, 0, True) for n in read_out}
        for n, hi, delta, exact in resume.part:
            if not 0 <= n < len(order):
                raise bad_cursor()
            states[order[n]] = _State(hi, last_ms - delta, exact)
        return states

    def _filters(self, query: SearchQuery) -> _Filters:
        """The words and filters as the window's row conditions; 422 for neither words nor a filter."""
        words = self._words(query.q)
        after, before = _instant(query.after, "after"), _instant(query.before, "before")
        if not words and query.from_ is None and query.has is None and after is None and before is None:
            raise invalid("q", "required")
        conditions: dict[str, Any] = {}
        if words:
            conditions["content"] = {"$regex": words_pattern(words)}
        if query.from_ is not None:
            conditions["sender_id"] = {"$eq": query.from_}
        if query.has is not None:
            conditions[FLAGS[query.has]] = {"$eq": True}
        after_ms, before_ms = created_ms(after), created_ms(before)
        if after_ms is not None or before_ms is not None:
            conditions["created_ms"] = {
                **({"$gte": after_ms} if after_ms is not None else {}),
                **({"$lt": before_ms} if before_ms is not None else {}),
            }
        # A cursor of another search (other words, chat or filters) is refused.
        digest = hashlib.sha256(msgspec.json.encode(
            [words, query.chat_id, query.from_, query.has, after_ms, before_ms])).hexdigest()[:16]
        return _Filters(words, conditions, after_ms, before_ms, digest)

    def _words(self, q: str) -> list[str]:
        text = q.replace("\x00", "").strip()
        if len(text) > self.max_chars:
            raise APIError(422, "validation_failed", f"the search query is longer than {self.max_chars} characters",
                           fields={"q": f"at most {self.max_chars} characters"})
        return list(dict.fromkeys(text.casefold().split()))[:MAX_WORDS]

    async def _chats(self, user: Identity, chat_id: str | None, resume: _Cursor | None, filters: _Filters) -> _Chats:
        """The caller's chats (only those: a cursor naming others changes nothing)."""
        if chat_id is not None:
            if not valid_id(chat_id) or not await membership.is_member(self.store, chat_id, user.user_id):
                raise not_found("chat")
            mine = [chat_id]
        else:
            mine = sorted(await membership.user_chat_ids(self.store, user.user_id))
        floor = -resume.last[0] if resume is not None else _FAR_FUTURE_MS
        if filters.before_ms is not None:
            floor = min(floor, filters.before_ms - 1)  # no match is newer: every bound starts there
        states = self._states(resume, mine) if resume is not None else {}
        return _Chats(self.store, user.workspace_id, mine, floor, states, filters.after_ms)

    async def _run(
        self, chats: _Chats, filters: _Filters, limit: int, last: Key | None
    ) -> tuple[list[tuple[Key, dict[str, Any]]], Key | None]:
        """Read windows, newest unread part first, until `limit` matches beat every unread part or the budget ends.

        Returns the matches and the newest key still unread (None: every chat read to its first message).
        """
        # A chat is in the heap at most once, so no two keys (which hold its id) tie.
        heap: list[tuple[Key, _Scan]] = []
        found: list[tuple[Key, dict[str, Any]]] = []
        keys: list[Key] = []
        reads = rows = 0
        while True:
            unseen = chats.key()
            if heap and (unseen is None or heap[0][0] < unseen):
                top, scan = heap[0]
            elif unseen is not None:
                top, scan = unseen, None
            else:
                return found, None
            if filters.after_ms is not None and -top[0] < filters.after_ms:
                return found, None  # every unread part is older than `after`: read out
            newer = bisect.bisect_left(keys, top)
            if newer >= limit or reads >= self.max_reads or rows >= self.max_rows:
                return found, top
            if scan is None:
                # Chat documents, not a read of the budget's: at most ACTIVITY_PAGES + 1 of them.
                for scan in await chats.more():
                    if scan.hi >= 1:
                        heapq.heappush(heap, (scan.key(), scan))
                continue
            heapq.heappop(heap)
            reads += 1
            scan.touched = True
            # One read at a time: the embedded server runs one command at a time per database, so reading
            # the next chats alongside only queued them (measured: 77 -> 99 ms with four at once).
            if not scan.exact and (heap or newer > 0 or unseen is not None):
                # Only worth a read when a tighter bound could let another chat, or the stop, come first.
                await self._refine(scan)
            else:
                lo = max(1, scan.hi - scan.window + 1)
                rows += scan.hi - lo + 1
                wanted = limit - newer
                self._advance(scan, await self._window(scan.chat_id, lo, scan.hi, filters.conditions, wanted),
                              wanted, last, keys, found)
            if scan.hi >= 1:
                heapq.heappush(heap, (scan.key(), scan))

    @staticmethod
    def _advance(scan: _Scan, docs: list[dict[str, Any]], wanted: int, last: Key | None, keys: list[Key],
                 found: list[tuple[Key, dict[str, Any]]]) -> None:
        """Take a window's matches; the scan moves below what it covered (or below its oldest match)."""
        for doc in docs:
            if doc.get("kind") == SYSTEM_KIND:
                continue  # "joined", "renamed"…: lines about the chat, not messages to find (they still move scans)
            k = _key(doc)
            if last is None or k > last:
                at = bisect.bisect_left(keys, k)
                keys.insert(at, k)
                found.insert(at, (k, doc))
        if len(docs) == wanted:
            # The window holds more: resume right below its oldest match, whose time bounds the rest.
            scan.hi = docs[-1]["seq"] - 1
            scan.bound = min(scan.bound, _ms(docs[-1].get("created_at")) or scan.bound)
            scan.exact = True
        else:
            scan.hi = max(1, scan.hi - scan.window + 1) - 1
            if docs:
                scan.bound = min(scan.bound, _ms(docs[-1].get("created_at")) or scan.bound)
            scan.exact = False
            scan.window = min(scan.window * 4, MAX_WINDOW)

    async def _refine(self, scan: _Scan) -> None:
        """The bound becomes the time of the newest unread message (which also skips a gap at hi)."""
        doc = await self.store.messages.find_one(
            {"chat_id": {"$eq": scan.chat_id}, "seq": {"$lte": scan.hi}},
            {"seq": 1, "created_at": 1},
            sort=[("seq", -1)],
        )
        if doc is None:
            scan.hi = 0
            return
        scan.hi = doc["seq"]
        scan.bound = min(scan.bound, _ms(doc.get("created_at")) or scan.bound)
        scan.exact = True

    async def _window(self, chat_id: str, lo: int, hi: int, conditions: dict[str, Any],
                      limit: int) -> list[dict[str, Any]]:
        cursor = self.store.messages.find(
            {"chat_id": {"$eq": chat_id}, "seq": {"$gte": lo, "$lte": hi}, "deleted": {"$eq": False}, **conditions}
        )
        return await cursor.sort([("seq", -1)]).limit(limit).to_list()
