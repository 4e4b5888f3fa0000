"""Rich text: a message's `content` (CommonMark) rendered once per write to the safe `content_html` it stores."""

from __future__ import annotations

import html
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from linkify_it import LinkifyIt
from markdown_it import MarkdownIt, rules_block
from markdown_it.renderer import RendererHTML
from markdown_it.token import Token
from markdown_it.utils import EnvType, OptionsDict

from app.schemas.accounts import USERNAME_CHARS, USERNAME_MAX

# The message limit of app/schemas/messages.py (Content); longer input is never parsed, only escaped.
CONTENT_MAX = 4000
# content_html is at most OUTPUT_RATIO × len(content) + OUTPUT_SLACK characters, else it is the escaped
# text: the slack lets a short message carry a link or a mention span, which are longer than their text.
OUTPUT_RATIO = 8
OUTPUT_SLACK = 1024
# markdown-it's recursion bound, for blocks (a list in a quote is 3 levels) and inline (emphasis in a
# link). Its cost grows with it ([ × 2000 walks every label this deep); 16 keeps 7 levels of nested
# lists or 15 of quotes, more than any chat message needs.
MAX_NESTING = 16
# Past this many mentions the rest stay text (each is a span of about 60 characters, and a token).
MENTION_SPANS_MAX = 100
# Past this many link destinations (a link, an autolink, a bare URL, a reference) the rest stay text:
# each costs about 0.1 ms in markdown-it's URL normalization and linkify-it, the most any token costs.
LINKS_MAX = 50
# Work budget of one parse, in units of roughly half a microsecond of markdown-it's time on the CI
# machine's core (where sum(range(10**6)) takes 16 ms), charged before the work where it can be (a
# table's cells, a word given to linkify, a link) and as it goes elsewhere. A message past it is shown
# as escaped text, so no input, however hostile, costs more than about 12 ms there; the heaviest real
# messages (50 list items or table rows, each with a link and markup) use four fifths of it.
# tests/test_richtext.py measures both.
FUEL = 16_000
POSITION_STEP = 3  # an inline position markdown-it tries: every rule runs on it
SKIP_STEP = 1  # a look-ahead over one token
DELIMITER_STEP = 16  # a `*`, `_` or `~`: a token now, a delimiter to pair later (not an intraword `_`)
MARKUP_STEP = 24  # a `[`, `![`, `<`, backtick or `&`: scanned forward char by char for its end
LINK_STEP = 30  # a link destination: normalized (mdurl, punycode unless plain ASCII), a token, a text
LINE_STEP = 20  # a line tried by the block rules (each line runs all of them)
CELL_STEP = 10  # a table cell, charged for the whole table before it is made
WORD_STEP = 24  # a word given to linkify-it (a dozen regular expressions per call)
LINKIFY_STEP = 2  # a character of that word

SCHEMES = ("http", "https", "mailto")
# Everything the renderer may emit: tag → the attributes it may carry. Tests hold the output to it.
ALLOWED: Mapping[str, frozenset[str]] = {
    **{tag: frozenset() for tag in (
        "p", "br", "hr", "strong", "em", "s", "pre", "blockquote", "ul", "li",
        "table", "thead", "tbody", "tr", "th", "td",
    )},
    "ol": frozenset({"start"}),
    "code": frozenset({"class"}),
    "a": frozenset({"href", "title", "rel", "target"}),
    "span": frozenset({"class", "data-user-id", "data-mention"}),
}
LINK_REL = "noopener nofollow"
# The names that mention every member of a chat (as app.services.mentions.ALL_NAMES).
GROUPS = frozenset({"channel", "here", "everyone"})

# `@name` not glued to a word, an address or another mention before it: the rule of
# app.services.mentions.parse, so what is highlighted is what was counted.
_MENTION = re.compile(f"(?<![@{USERNAME_CHARS}])@([{USERNAME_CHARS}]+)")
_CONTAINERS = frozenset({"blockquote_open", "bullet_list_open", "ordered_list_open", "list_item_open"})
_WORD = re.compile(r"\S+")
_DELIMITERS = {char: re.compile(re.escape(char) + "+") for char in "*_~"}
_SPACE = re.compile(r"\s")
# URLs that markdown-it's normalizeLink (percent-encoding, punycode) and normalizeLinkText (decoding)
# give back unchanged: ASCII that needs no encoding, no `%` escape to decode, no punycode host.
_PLAIN_URL = re.compile(r"(?!.*xn--)[A-Za-z0-9\-._~!$&'()*+,;=:@/?#]*", re.IGNORECASE)
_PLAIN_TEXT_URL = re.compile(r"(?!.*xn--)[\x21-\x24\x26-\x7e]*", re.IGNORECASE)
# Before any `:` `/` `?` `#`: a scheme is what an absolute URL starts with.
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")
# A fenced block's language becomes a class name: a short identifier or nothing.
_LANGUAGE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_+#.-]{0,31}")
# Embedding, override and isolate controls: inside a link's text they can show one address and open another.
_BIDI = re.compile("[\u202a-\u202e\u2066-\u2069]")
# Top-level domains a bare name must end in to become a link. linkify-it's default takes every two-letter
# country code, which turns the file names of a developers' chat (main.py, README.md, run.sh, lib.rs,
# a.cc) into links; `http://` links are made whatever their domain.
_TLDS = sorted("""
    com net org edu gov mil int info biz name pro aero coop museum shop web
    io co ai app dev me tv fm gg ly cloud page site online tech xyz blog news
    uk de fr nl eu ca au nz ie jp cn kr tw hk sg ru ua br ar mx es pt it ch at be se no fi dk cz
    рф
""".split(), reverse=True)

# What a word must hold to be given to linkify-it: a scheme's `://` or `mailto:`, or one of those
# domains (an address too ends in one), so "main.py" and "e.g." cost nothing.
_LINK_HINT = re.compile(r"://|mailto:|\.(?:xn--|(?:%s)(?![^\W\d_]))" % "|".join(_TLDS), re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class MentionTarget:
    """Whom one `@name` mentions: a member of the chat (user_id), or all of it (group: channel, here, everyone)."""

    user_id: str | None = None
    group: str | None = None

    def __post_init__(self) -> None:
        if (self.user_id is None) == (self.group is None) or self.group not in (None, *GROUPS):
            raise ValueError("a MentionTarget is a user_id or one of the groups channel, here, everyone")


def mention_targets(user_ids: Mapping[str, str], everyone: bool = False) -> dict[str, MentionTarget]:
    """The `mentions` of `render`: usernames → user ids (those resolved as members), and when the message
    mentions all (`Mentioned.all`), @channel, @here and @everyone (never a username)."""
    targets = {name.lower(): MentionTarget(user_id=uid) for name, uid in user_ids.items()
               if name.lower() not in GROUPS}
    if everyone:
        targets.update((group, MentionTarget(group=group)) for group in GROUPS)
    return targets


class _Unrenderable(Exception):
    """Past the work budget, or nested past MAX_NESTING: the message is shown as text."""


def allowed_url(url: str) -> bool:
    """Only absolute http, https and mailto URLs (markdown-it's validateLink refuses javascript:, data:…;
    this also refuses relative, protocol-relative and every other scheme)."""
    match = _SCHEME.match(url)
    return match is not None and match.group(1).lower() in SCHEMES and _SPACE.search(url) is None


def plain(content: str) -> str:
    """The escaped text, line breaks kept: what a message shows when it cannot be rendered as markup."""
    text = content.replace("\r\n", "\n").replace("\r", "\n").replace("\0", "\ufffd")
    return "<p>" + _attr(text).replace("\n", "<br>\n") + "</p>\n"


class Renderer:
    """One configured markdown-it parser: its owner (the service that renders at write) builds one and
    calls `render` per write; building costs about 2 ms (the first in a process 50 ms, compiling patterns).

    `render` is synchronous and CPU-bound (about 12 ms at the very worst, a typical message 0.1 ms). It
    holds a lock while parsing: markdown-it calls normalizeLink and linkify without the parse's env, so
    they find it on this instance.
    """

    def __init__(self) -> None:
        md = MarkdownIt("commonmark", {
            "html": False,  # `<script>` is text: no rule that makes raw HTML runs
            "typographer": False,  # what is typed is what is shown: no smart quotes, no (c) → ©
            "linkify": True,
            "breaks": True,  # a chat's newline is a line break (Slack, Mattermost)
            "xhtmlOut": False,
            "maxNesting": MAX_NESTING,
        }, renderer_cls=_SafeHTML)
        # Tables for what bots post, ~~strike~~ as in every chat. Setext headings (a line, then `---`)
        # are off: in a chat they are an accident, and their rule rescans every paragraph line. Bare URLs
        # are found once per text run (the core rule); the inline one rescans the pending text at each
        # `://`, quadratic in a line of them.
        md.enable(["linkify", "strikethrough", "table"]).disable(["lheading"])
        md.inline.ruler.disable("linkify")
        self._linkify = md.linkify = _WordLinkify()
        self._normalize_link, self._normalize_text, self._validate = (
            md.normalizeLink, md.normalizeLinkText, md.validateLink)
        md.normalizeLink = self._link  # type: ignore[method-assign]
        md.normalizeLinkText = self._link_text  # type: ignore[method-assign]
        md.validateLink = self._valid_link  # type: ignore[method-assign]

        # The work budget (FUEL): charged by the first rule of each chain, and by the table rule.
        md.inline.ruler.before("text", "fuel", _inline_fuel)
        md.inline.skipToken = _charged_skip(md.inline.skipToken)  # type: ignore[method-assign]
        md.block.ruler.at("table", _charged_table(rules_block.table), {"alt": ["paragraph", "reference"]})
        md.block.ruler.before("table", "fuel", _block_fuel,
                              {"alt": ["paragraph", "reference", "blockquote", "list"]})
        self._md = md
        self._lock = threading.Lock()
        # linkify-it's and markdown-it's patterns compile on first use (about 50 ms): at build, not at
        # the first send.
        self.render("*a* `b` [c](https://d.io) e.io f@g.io <https://h.io>")

    def _link(self, url: str) -> str:
        # markdown-it's normalizeLink, for every link destination: counted against LINKS_MAX.
        env = self._linkify.env
        if env["links"] <= 0:
            return ""  # _valid_link refuses it: the rest of the links stay text
        env["links"] -= 1
        _spend(env, LINK_STEP)
        # mdurl's parse, punycode and encode (0.05 ms) change nothing in a URL of these characters.
        return url if _PLAIN_URL.fullmatch(url) else self._normalize_link(url)

    def _link_text(self, url: str) -> str:
        return url if _PLAIN_TEXT_URL.fullmatch(url) else self._normalize_text(url)

    def _valid_link(self, url: str) -> bool:
        # markdown-it's own refusals (javascript:, vbscript:, file:, data: but images), then the allow-list.
        return bool(url) and self._validate(url) and allowed_url(url)

    def render(self, content: str, mentions: Mapping[str, MentionTarget] | None = None) -> str:
        """`content_html` of `content`: CommonMark, links only http/https/mailto, `@name` a mention span
        when `mentions` (keyed by name, any case) has it, never in code or links; the escaped text when
        the input is too long, too deep, too costly, or would render too large."""
        if not content:
            return ""
        if len(content) > CONTENT_MAX:
            return plain(content)
        safe = _Pass({name.lower(): target for name, target in (mentions or {}).items()})
        env: dict[str, Any] = {"fuel": FUEL, "links": LINKS_MAX}
        try:
            with self._lock:
                self._linkify.env = env
                tokens = self._md.parse(content, env)
            if _too_deep(tokens):
                return plain(content)
            for token in tokens:
                if token.type == "inline" and token.children:
                    token.children = safe.inline(token.children, 0)
        except (_Unrenderable, RecursionError):
            return plain(content)
        out = self._md.renderer.render(tokens, self._md.options, env)
        if len(out) > OUTPUT_RATIO * len(content) + OUTPUT_SLACK:
            return plain(content)
        return out


class _SafeHTML(RendererHTML):
    """markdown-it's HTML renderer held to ALLOWED: a tag outside it is dropped (its text still shows,
    escaped), an attribute outside it too, and raw HTML is text even if a rule that makes it got enabled."""

    def renderToken(self, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType) -> str:
        token = tokens[idx]
        allowed = ALLOWED.get(token.tag)
        if allowed is None:
            return ""
        if token.attrs:
            # The tokens are this render's own: a table cell's `style` (alignment) goes here.
            token.attrs = {key: value for key, value in token.attrs.items() if key in allowed}
        return super().renderToken(tokens, idx, options, env)

    # Headings are bold paragraphs: a chat line should not shout in 2em type (Slack shows none).
    def heading_open(self, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType) -> str:
        return "<p><strong>"

    def heading_close(self, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType) -> str:
        return "</strong></p>\n"

    def link_open(self, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType) -> str:
        # _Pass left only links whose href passed allowed_url, never one inside another.
        token = tokens[idx]
        title = token.attrs.get("title")
        return (
            f'<a href="{_attr(token.attrs["href"])}"'
            + (f' title="{_attr(title)}"' if title else "")
            + f' rel="{LINK_REL}" target="_blank">'
        )

    def fence(self, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType) -> str:
        token = tokens[idx]
        words = token.info.split(maxsplit=1)
        language = words[0] if words and _LANGUAGE.fullmatch(words[0]) else None
        css = f' class="language-{_attr(language)}"' if language else ""
        return f"<pre><code{css}>{_attr(token.content)}</code></pre>\n"

    def code_block(self, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType) -> str:
        return f"<pre><code>{_attr(tokens[idx].content)}</code></pre>\n"

    def image(self, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType) -> str:
        # _Pass turns every image into a link; were one left, its text shows, never an <img>.
        return _attr(self.renderInlineAsText(tokens[idx].children, options, env))

    def html_block(self, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType) -> str:
        return _attr(tokens[idx].content)

    def html_inline(self, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType) -> str:
        return _attr(tokens[idx].content)

    def mention(self, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType) -> str:
        token = tokens[idx]
        target: MentionTarget = token.meta["target"]
        data = (f'data-user-id="{_attr(target.user_id)}"' if target.user_id is not None
                else f'data-mention="{_attr(target.group or "")}"')
        return f'<span class="mention" {data}>{_attr(token.content)}</span>'


def _attr(text: str) -> str:
    # markdown-it's escape of text (& < > "), for attribute values too: every attribute here is
    # double-quoted, so nothing in one can close it, and the output escapes one way throughout.
    return html.escape(text, quote=False).replace('"', "&quot;")


# -- the work budget ----------------------------------------------------------------------------------

def _spend(env: dict[str, Any], cost: int) -> None:
    env["fuel"] -= cost
    if env["fuel"] < 0:
        raise _Unrenderable


def _inline_fuel(state: Any, silent: bool) -> bool:
    # First inline rule: runs once per position markdown-it tries, charged for what the rules after it
    # will do there.
    src, pos = state.src, state.pos
    char = src[pos]
    run = _DELIMITERS.get(char)
    if run is not None and not (char == "_" and src[pos - 1:pos].isalnum() and src[pos + 1:pos + 2].isalnum()):
        # `*` × 2000 is one position but 2000 delimiter tokens, and 2000 to pair after the paragraph;
        # snake_case's `_` can neither open nor close, and is paired with nothing.
        cost = DELIMITER_STEP * len(run.match(src, pos).group())  # type: ignore[union-attr]
    elif char in "[<`&" or (char == "!" and src.startswith("[", pos + 1)):
        # These scan ahead for where they end: from every `[` of `[a](` × 1000, every `<` of `<` × 4000.
        cost = MARKUP_STEP
    else:
        cost = POSITION_STEP
    _spend(state.env, cost)
    return False


def _charged_skip(skip: Any) -> Any:
    # markdown-it's look-ahead over one token: link labels call it at every character, most answered
    # from its cache without running a rule.
    def charged(state: Any) -> None:
        _spend(state.env, SKIP_STEP)
        skip(state)
    return charged


def _block_fuel(state: Any, start_line: int, end_line: int, silent: bool) -> bool:
    # First block rule, also in the chains that end a paragraph, a quote, a list or a table row.
    _spend(state.env, LINE_STEP)
    return False


def _charged_table(table: Any) -> Any:
    # A table makes every row as wide as its header (500 columns, then 1,000 one-letter rows, is half a
    # million cells): what it would make is charged before it is made.
    def rule(state: Any, start_line: int, end_line: int, silent: bool) -> bool:
        if not silent and table(state, start_line, end_line, True):
            header = state.src[state.bMarks[start_line]:state.eMarks[start_line]]
            rows = start_line
            while rows < end_line and not state.isEmpty(rows):
                rows += 1
            _spend(state.env, CELL_STEP * (header.count("|") + 1) * (rows - start_line))
        return bool(table(state, start_line, end_line, silent))
    return rule


class _WordLinkify(LinkifyIt):
    """linkify-it, given only the words that may hold a link. Its patterns cost about a microsecond per
    character of whatever they scan; a URL never holds white space, so scanning only the words with a
    hint of one finds the same links as scanning the whole text, for a fraction of it. Each word is
    charged to the parse's fuel before it is scanned; once LINKS_MAX links are made, none is."""

    def __init__(self) -> None:
        super().__init__(options={"fuzzy_link": True, "fuzzy_email": True, "fuzzy_ip": False})
        self.tlds(_TLDS)
        self.env: dict[str, Any] = {"fuel": 0, "links": 0}  # the parse's, set by Renderer.render

    def pretest(self, text: str) -> bool:
        return _LINK_HINT.search(text) is not None

    def test(self, text: str) -> bool:
        # markdown-it calls match() when this says yes, and takes its None for no link.
        return self.pretest(text)

    def match(self, text: str) -> list[Any] | None:
        found = []
        for word in _WORD.finditer(text):
            if len(found) >= self.env["links"]:
                break  # no more would be made (markdown-it counts them down once this returns)
            if _LINK_HINT.search(word.group()):
                # Each scheme in a word is validated by a pattern run to the end of its URL:
                # "https://a.io/" × 300 glued together is quadratic.
                schemes = max(1, word.group().count("://") + word.group().count("mailto:"))
                _spend(self.env, WORD_STEP + LINKIFY_STEP * len(word.group()) * schemes)
                for link in super().match(word.group()) or ():
                    link.index += word.start()
                    link.last_index += word.start()
                    found.append(link)
        return found or None


# -- the token pass ---------------------------------------------------------------------------------

def _too_deep(tokens: list[Token]) -> bool:
    # A quote or list opened at the last level has its content dropped by markdown-it (it stops
    # tokenizing at maxNesting, silently): a message must never lose text, so it is shown as text.
    return any(token.type in _CONTAINERS and token.level >= MAX_NESTING - 1 for token in tokens)


class _Pass:
    """The token pass of one render, after parsing: links only with an allowed href and never one in
    another, images as links to them, mentions outside code and links, bidi controls out of link text."""

    def __init__(self, mentions: Mapping[str, MentionTarget]) -> None:
        self.mentions = mentions
        self.spans_left = MENTION_SPANS_MAX

    def inline(self, children: list[Token], in_link: int) -> list[Token]:
        """The children of an inline token, made safe."""
        out: list[Token] = []
        kept: list[bool] = []  # per open link: whether its tags are rendered
        depth = 0
        for token in children:
            kind = token.type
            # Emphasis is paired after parsing, outside maxNesting: `**` × 1000 around a word is 1000 deep.
            depth += token.nesting
            if depth > MAX_NESTING:
                raise _Unrenderable
            if kind == "link_open":
                href = token.attrs.get("href")
                keep = in_link == 0 and isinstance(href, str) and allowed_url(href)
                kept.append(keep)
                in_link += 1
                if keep:
                    title = _BIDI.sub("", str(token.attrs.get("title") or ""))
                    token.attrs = {"href": href, **({"title": title} if title else {})}
                    out.append(token)
            elif kind == "link_close":
                in_link -= 1
                if kept.pop():
                    out.append(token)
            elif kind == "image":
                out.extend(self.image(token, in_link))
            elif kind == "text":
                if in_link:
                    token.content = _BIDI.sub("", token.content)
                    out.append(token)
                elif self.mentions and self.spans_left > 0 and "@" in token.content:
                    out.extend(self.split_mentions(token.content))
                else:
                    out.append(token)
            else:
                out.append(token)
        return out

    def image(self, token: Token, in_link: int) -> list[Token]:
        # A chat must not load third-party pixels: an image is a link to it, its alt text the label.
        src = token.attrs.get("src")
        label = self.inline(token.children or [], in_link + 1)
        if in_link or not isinstance(src, str) or not allowed_url(src):
            return label
        link = Token("link_open", "a", 1, attrs={"href": src})
        title = token.attrs.get("title")
        if title:
            link.attrs["title"] = _BIDI.sub("", str(title))
        return [link, *(label or [_text(_BIDI.sub("", src))]), Token("link_close", "a", -1)]

    def split_mentions(self, text: str) -> list[Token]:
        out: list[Token] = []
        last = 0
        for match in _MENTION.finditer(text):
            word = match.group(1)
            # "thanks @bob." is bob. when there is such a member, else bob (app.services.mentions.parse).
            for name in dict.fromkeys((word, word.rstrip("._-"))):
                target = self.mentions.get(name.lower()) if 0 < len(name) <= USERNAME_MAX else None
                if target is not None:
                    break
            else:
                continue
            start, end = match.start(), match.start() + 1 + len(name)
            if start > last:
                out.append(_text(text[last:start]))
            span = Token("mention", "span", 0, content=text[start:end])
            span.meta = {"target": target}
            out.append(span)
            last = end
            self.spans_left -= 1
            if self.spans_left <= 0:
                break  # the rest stay text
        if last < len(text):
            out.append(_text(text[last:]))
        return out


def _text(content: str) -> Token:
    return Token("text", "", 0, content=content)
