"""Logs never carry a token: URIs scrubbed by decoded parameter name, and a filter redacting token shapes."""

from __future__ import annotations

import logging
import re
from urllib.parse import parse_qsl, quote, unquote_plus

REDACTED = "[redacted]"
# Query parameters whose value is a credential, compared after decoding and case-folding the name.
TOKEN_PARAMS = frozenset({"access_token", "refresh_token", "token", "id_token", "password"})
# Our access tokens are JWTs (`eyJ` is `{"` in base64url); refresh tokens are secrets.token_urlsafe(32):
# exactly 43 base64url characters. Both are redacted wherever they appear, whatever the logger.
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_REFRESH = re.compile(r"(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-])")
_NOT_A_WORD = re.compile(r"[A-Z0-9]")


def _refresh_shaped(match: re.Match[str]) -> str:
    # A snake_case name of 43 letters is code, not a secret: a token has capitals or digits.
    return REDACTED if _NOT_A_WORD.search(match.group()) else match.group()


def _redact_once(text: str) -> str:
    return _REFRESH.sub(_refresh_shaped, _JWT.sub(REDACTED, text))


def redact(text: str) -> str:
    """`text` with every token-shaped run replaced, also where it hides behind percent-encoding."""
    cleaned = decoded = _redact_once(text)
    # `%65yJ…` (or `%2565yJ…`) decodes to a JWT: judge the decoded forms, and log one when it held a token.
    for _ in range(3):
        if "%" not in decoded and "+" not in decoded:
            break
        decoded = unquote_plus(decoded)
        redacted = _redact_once(decoded)
        if redacted != decoded:
            return redacted
    return cleaned


def scrub_uri(uri: str) -> str:
    """The URI with every value of a token parameter dropped, however its name is encoded or cased."""
    path, sep, query = uri.partition("?")
    path = path.partition("#")[0]
    if not sep:
        return redact(path)
    query = query.partition("#")[0]
    pairs = parse_qsl(query, keep_blank_values=True)
    kept = "&".join(
        f"{quote(name, safe='')}={REDACTED if name.strip().lower() in TOKEN_PARAMS else quote(value, safe='')}"
        for name, value in pairs
    )
    return redact(f"{path}?{kept}")


class RedactingFilter(logging.Filter):
    """On a handler: rewrites each record's message, args, exception and stack text without tokens."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record is logging's to report, not ours to drop
            message = str(record.msg)
        record.msg, record.args = redact(message), ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


_FILTER = RedactingFilter()


def install(logger: logging.Logger | None = None) -> None:
    """Puts the filter on every handler of `logger` (root): records of every logger pass through one."""
    for handler in (logger or logging.getLogger()).handlers:
        if _FILTER not in handler.filters:
            handler.addFilter(_FILTER)


def uninstall(logger: logging.Logger | None = None) -> None:
    for handler in (logger or logging.getLogger()).handlers:
        handler.removeFilter(_FILTER)
