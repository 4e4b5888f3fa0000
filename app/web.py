"""Tornado base classes shared by both roles: JSON handlers, errors, auth, health, metrics, access log."""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import uuid
from typing import Any, Awaitable, Callable, Generic, TypeVar, cast

import msgspec
import msgspec.inspect
import tornado.web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from tornado.log import app_log

from app import store
from app.auth import Identity, InvalidToken, TokenVerifier
from app.config import Config
from app.deps import Deps
from app.errors import APIError, DependencyUnavailable, field_label, not_found, validation_failed  # noqa: F401
from app.events import NATS_ERRORS, EventBus
from app.logsafe import scrub_uri
from app.metrics import Metrics
from app.schemas.accounts import USERNAME_CHARS
from app.schemas.common import EMAIL_PATTERN, ID_PATTERN, ONE_LINE, VISIBLE

log = logging.getLogger("fechatter.web")
access_log = logging.getLogger("fechatter.access")

T = TypeVar("T")
# A role's services object: app.web sits below app.services, so each role names its own type.
ServicesT = TypeVar("ServicesT")

RETRY_AFTER_SECONDS = 5
# A client's X-Request-Id is kept when it is this plain (a proxy's or a caller's); any other gets a fresh one.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
REQUEST_ID_HEADER = "X-Request-Id"


def request_id_of(handler: tornado.web.RequestHandler) -> str:
    """The request's id: its X-Request-Id when plain, else generated; the same for every reader of one request."""
    request = handler.request
    rid = getattr(request, "fechatter_request_id", None)
    if rid is None:
        given = request.headers.get(REQUEST_ID_HEADER, "")
        rid = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        request.fechatter_request_id = rid  # type: ignore[attr-defined]
    return rid
_MSGSPEC_PATH = re.compile(r" - at `\$((?:\.[\w$]+|\[\d+\])*)`$")
_MSGSPEC_FIELD = re.compile(r"field `([^`]+)`")
# `\ud800` not followed by a low surrogate, or a low one alone: msgspec refuses both, with a puzzling message.
_LONE_SURROGATE = re.compile(rb"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F])|(?<![0-9a-fA-F]{4})\\u[dD][c-fC-F]")


_EXPECTED = re.compile(r"^Expected `([^`]+)`(?:, got `([^`]+)`)?(?: (of length )?(>=|<=|>|<) (-?[0-9.e+]+))?$")
_MATCHING = re.compile(r"^Expected `str` matching regex (.+)$")
_KIND_WORDS = {"str": "text", "int": "a whole number", "float": "a number", "bool": "true or false",
               "array": "a list", "object": "an object", "null": "empty"}
_COMPARISONS = {">=": "at least", "<=": "at most", ">": "more than", "<": "less than"}


# What each pattern of app.schemas asks, in words (msgspec names the regex itself).
_PATTERN_RULES = {
    repr(VISIBLE): "must contain a visible character",
    repr(EMAIL_PATTERN): "must be an email address, like name@example.com",
    repr(f"^[{USERNAME_CHARS}]+$"): "may only use letters, digits, '.', '_' and '-'",
    repr(ID_PATTERN): "must be an id",
    repr(ONE_LINE): "must be one line of text",
}


def _choices(schema: type | None, field: str) -> list[str]:
    """The values a top-level Literal or Enum field of `schema` takes (for "must be one of ...")."""
    if schema is None or "." in field or "[" in field:
        return []
    try:
        info = msgspec.inspect.type_info(schema)
    except Exception:  # noqa: BLE001 - not a Struct: no choices to name
        return []
    for f in getattr(info, "fields", ()):
        if f.encode_name == field:
            kind = f.type.type if isinstance(f.type, msgspec.inspect.Metadata) else f.type
            kinds = kind.types if isinstance(kind, msgspec.inspect.UnionType) else (kind,)
            for k in kinds:
                if isinstance(k, msgspec.inspect.LiteralType):
                    return [str(v) for v in k.values]
                if isinstance(k, msgspec.inspect.EnumType):
                    return [str(member.value) for member in k.cls]
    return []


def plain_reason(reason: str, label: str, choices: list[str] | None = None) -> str:
    """msgspec's `Expected `str` of length >= 8` as "Password must be at least 8 characters"."""
    if reason.startswith("Object missing required field"):
        return f"{label} is required"
    if unknown := _MSGSPEC_FIELD.search(reason) if reason.startswith("Object contains unknown field") else None:
        return f"This request takes no field named {unknown.group(1)}"
    if reason.startswith("Invalid enum value"):
        if choices:
            return f"{label} must be {', '.join(choices[:-1])} or {choices[-1]}" if len(choices) > 1 else \
                f"{label} must be {choices[0]}"
        return f"{label} is not one of the allowed values"
    if matching := _MATCHING.match(reason):
        return f"{label} {_PATTERN_RULES.get(matching.group(1), 'is not in the expected form')}"
    expected = _EXPECTED.match(reason)
    if expected is None:
        return f"{label} is not valid: {reason.replace('`', '')}"
    kind, _got, of_length, comparison, bound = expected.groups()
    kind = kind.split(" | ")[0]
    if comparison is None:
        return f"{label} must be {_KIND_WORDS.get(kind, kind)}"
    words = _COMPARISONS[comparison]
    if of_length:
        if kind == "str" and comparison == ">=" and bound == "1":
            return f"{label} must not be empty"
        if kind == "str":
            return f"{label} must be {words} {bound} character{'' if bound == '1' else 's'}"
        return f"{label} must have {words} {bound} item{'' if bound == '1' else 's'}"
    return f"{label} must be {words} {bound}"


def validation_error(error: msgspec.ValidationError, where: str = "body", schema: type | None = None) -> APIError:
    """422 naming the field in a sentence: msgspec's `Expected `str` of length >= 8 - at `$.password``
    is {"password": "Password must be at least 8 characters"}, the message that same line."""
    text = str(error)
    match = _MSGSPEC_PATH.search(text)
    reason = text[: match.start()] if match else text
    field = match.group(1).lstrip(".") if match and match.group(1) else ""
    named = _MSGSPEC_FIELD.search(reason)
    if named and reason.startswith("Object"):  # the field is named in the text, the path is its parent's
        field = f"{field}.{named.group(1)}" if field else named.group(1)
    field = field or where
    return validation_failed({field: plain_reason(reason, field_label(field), _choices(schema, field))})


# An integer in a query: ASCII digits (re's \d would take any script's), bounded so int() stays cheap.
_QUERY_INT = re.compile(r"-?[0-9]{1,19}")


@functools.cache
def _int_fields(schema: type) -> frozenset[str]:
    """The names of a query schema's fields that take an integer (alone or or-None)."""
    def is_int(kind: Any) -> bool:
        if isinstance(kind, msgspec.inspect.Metadata):
            kind = kind.type
        if isinstance(kind, msgspec.inspect.UnionType):
            return any(is_int(member) for member in kind.types)
        return isinstance(kind, msgspec.inspect.IntType)

    info = msgspec.inspect.type_info(schema)
    return frozenset(f.encode_name for f in getattr(info, "fields", ()) if is_int(f.type))


_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    422: "validation_failed",
    429: "rate_limited",
    503: "service_unavailable",
}


# Methods whose requests carry no body here: any body on them is refused before it is read.
BODILESS_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_CONTENT_LENGTH = re.compile(r"[0-9]{1,18}")
_UNBOUNDED = 2**62


def _declared_length(value: str | None) -> int | None:
    """Content-Length as Tornado reads it (equal duplicates "5, 5" allowed); 0 when absent, None when invalid."""
    if value is None:
        return 0
    pieces = {piece.strip() for piece in value.split(",")}
    if len(pieces) != 1:
        return None
    (piece,) = pieces
    return int(piece) if _CONTENT_LENGTH.fullmatch(piece) else None


def payload_too_large(limit: int) -> APIError:
    if limit == 0:
        return APIError(413, "payload_too_large", "this request takes no body")
    return APIError(413, "payload_too_large", f"the request body is larger than {limit} bytes")


def authenticated(method: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """401 JSON (never a redirect) when the request carries no valid access token."""

    @functools.wraps(method)
    async def wrapper(self: "BaseHandler", *args: Any, **kwargs: Any) -> T:
        await self.require_live_user()
        return await method(self, *args, **kwargs)

    wrapper.requires_auth = True  # type: ignore[attr-defined]
    return wrapper


@tornado.web.stream_request_body
class BaseHandler(tornado.web.RequestHandler, Generic[ServicesT]):
    """JSON in and out; the role's clients as typed properties; a role's handlers take
    `BaseHandler[TheirServices]` so that `self.services` has their type.

    Bodies stream in: prepare() runs on the headers, before any of the body is read, so a body this
    route would refuse (too large, a verb it lacks, a stranger on an authenticated verb) is refused
    unread, and the rest is counted against the route's limit while it arrives (data_received).
    Tornado calls the verb only once the whole body is in; it is `self.body` (`self.request.body`
    stays empty when streaming).

    Why every route streams: without it Tornado reads the whole body (up to the server's limit, an
    upload's) before prepare() runs, so set_max_body_size there would come too late.
    """

    # JSON routes accept config api.max_body_bytes; a handler taking uploads raises its own limit,
    # one taking no body sets 0.
    max_body_bytes: int | None = None
    _auth_failure: str | None = None
    _live_user: Identity | None = None  # the caller once the session check passed
    _chunks: bytearray | None = None  # the body while it arrives (data_received)
    _body = b""
    _body_refused = False

    @property
    def deps(self) -> Deps:
        return cast("RoleApp", self.application).deps  # every handler is served by a RoleApp

    @property
    def config(self) -> Config:
        return self.deps.config

    @property
    def store(self) -> store.Store:
        return self.deps.store

    @property
    def bus(self) -> EventBus:
        return self.deps.bus

    @property
    def verifier(self) -> TokenVerifier:
        return self.deps.verifier

    @property
    def metrics(self) -> Metrics:
        return self.deps.metrics

    @property
    def body(self) -> bytes:
        """The request body, all of it by the time a verb runs; b"" for none (or one refused)."""
        if self._chunks is not None:  # the first read, once all is in: one copy, and the buffer goes
            self._body, self._chunks = bytes(self._chunks), None
        return self._body

    @property
    def services(self) -> ServicesT:
        return self.settings["services"]

    @property
    def request_id(self) -> str:
        """X-Request-Id: echoed in the response, in the access line and in every error body."""
        return request_id_of(self)

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header(REQUEST_ID_HEADER, self.request_id)

    def body_limit(self) -> int:
        """The largest body this request may carry: none for GET, HEAD and OPTIONS."""
        if self.request.method in BODILESS_METHODS:
            return 0
        return self.config.api.max_body_bytes if self.max_body_bytes is None else self.max_body_bytes

    def body_timeout(self) -> float:
        """How long the whole body may take to arrive; a stalled sender's connection is closed then."""
        return self.config.api.body_timeout_seconds

    async def prepare(self) -> None:
        """On the headers alone, before the body is read: refuse it at once, or bound it while it is read.

        Tornado reads no byte of the body until this returns (it may await: the session check does)."""
        headers = self.request.headers
        chunked = "Transfer-Encoding" in headers
        declared = _declared_length(headers.get("Content-Length"))
        if not chunked and declared == 0:
            return  # no body: errors come from the verb as usual, and the connection stays open
        connection = self.request.connection
        # Answered here, these are never followed by Tornado's own bare 400 for the same framing error.
        if declared is None or (chunked and "Content-Length" in headers):
            raise APIError(400, "bad_request", "the Content-Length header is not one non-negative integer"
                           if declared is None else "a request has either Content-Length or Transfer-Encoding")
        if chunked and headers["Transfer-Encoding"].lower() != "chunked":
            raise APIError(400, "bad_request", "the only Transfer-Encoding taken is chunked")
        verb = self._verb(self.request.method or "")
        if verb is None:
            raise tornado.web.HTTPError(405)
        limit = self.body_limit()
        if declared > limit or (chunked and limit == 0):
            # Should the response still be queued when Tornado looks at the length, it reads nothing
            # rather than adding a 400 of its own; the connection closes once the 413 is out.
            connection.set_max_body_size(max(declared, limit))
            raise payload_too_large(limit)
        if getattr(verb, "requires_auth", False):
            # A stranger's body is never read, nor one with a token logout-all ended.
            await self.admit_body(await self.require_live_user())
        # Chunked, the count in data_received is the limit: Tornado would refuse a chunk on its declared
        # size, before reading any of it, with a bare 400; counted bytes get the 413 JSON instead.
        connection.set_max_body_size(_UNBOUNDED if chunked else limit)
        connection.set_body_timeout(self.body_timeout())

    @classmethod
    def _verb(cls, method: str) -> Callable[..., Any] | None:
        """This handler's own method for an HTTP verb; None where only Tornado's 405 stands."""
        verb = getattr(cls, method.lower(), None)
        return None if verb is getattr(tornado.web.RequestHandler, method.lower(), None) else verb

    async def admit_body(self, identity: Identity) -> None:
        """For an authenticated verb's body, on the headers: a route whose body is costly (an upload)
        refuses here what it would refuse once read (a rate limit), so the body is never read."""

    def data_received(self, chunk: bytes) -> None:
        if self._body_refused:
            return
        if self._chunks is None:
            self._chunks = bytearray()
        self._chunks += chunk
        limit = self.body_limit()
        if len(self._chunks) > limit:
            # Raising here would close the connection without an answer: answer, then Tornado closes it.
            self._chunks, self._body_refused = None, True
            error = payload_too_large(limit)
            self.send_error(error.status_code, exc_info=(APIError, error, None))

    def decode_argument(self, value: bytes, name: str | None = None) -> str:
        """Undecodable bytes in a path id name nothing that exists (404); in a query, bad input (422)."""
        try:
            return super().decode_argument(value, name)
        except tornado.web.HTTPError:
            if getattr(self, "path_kwargs", None) is None:  # Tornado decodes path arguments first
                raise not_found((name or "resource").removesuffix("_id")) from None
            field = name or "query"
            raise validation_failed({field: f"{field_label(field)} is not valid UTF-8"}) from None

    def bearer_token(self) -> str | None:
        header = self.request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
        return None

    def request_token(self) -> str | None:
        """Where this handler takes the access token from; the notify role also reads the URL."""
        return self.bearer_token()

    def get_current_user(self) -> Identity | None:
        token = self.request_token()
        if not token:
            return None
        try:
            return self.verifier.verify(token)
        except InvalidToken as e:
            self._auth_failure = str(e)
            return None

    def require_user(self) -> Identity:
        """The caller, or 401 JSON (never a redirect) saying why the token was refused."""
        if self.current_user is None:
            raise APIError(
                401, "unauthorized", self._auth_failure or "an access token is required",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return self.current_user

    async def require_live_user(self) -> Identity:
        """require_user, then the role's `session_check` (a token issued before the user's last
        logout-all is refused): the same 401, so a client refreshes or signs in again. Checked once
        per request (prepare, for a body, then the verb)."""
        identity = self.require_user()
        if self._live_user is identity:
            return identity
        check = self.settings.get("session_check")
        if check is not None and not await check(identity):
            raise APIError(401, "unauthorized", "this session has ended (signed out everywhere); sign in again",
                           headers={"WWW-Authenticate": "Bearer"})
        self._live_user = identity
        return identity

    def get_json_body(self) -> Any:
        """The decoded JSON body; 400 when it is not JSON at all (or not UTF-8, or nested past the
        decoder's depth), 422 for a number no field can hold (`1e999`)."""
        body = self.body
        if not body:
            raise APIError(400, "bad_request", "a JSON body is required")
        try:
            return msgspec.json.decode(body)
        except msgspec.ValidationError as e:  # a DecodeError too: well-formed, but out of range
            raise validation_error(e) from None
        except msgspec.DecodeError as e:
            reason = str(e)
            if _LONE_SURROGATE.search(body):
                reason = "a string holds a lone UTF-16 surrogate escape (text must be valid Unicode)"
            raise APIError(400, "malformed_json", f"the body is not valid JSON: {reason}") from None
        except UnicodeDecodeError:  # msgspec raises it, not DecodeError, for bytes that are not UTF-8
            raise APIError(400, "malformed_json", "the body is not valid JSON: it is not UTF-8") from None
        except RecursionError:
            raise APIError(400, "malformed_json", "the body is not valid JSON: nested too deeply") from None

    def parse_body(self, schema: type[T]) -> T:
        """400 for malformed JSON, 422 naming the field for JSON of the wrong shape."""
        body = self.get_json_body()
        try:
            return msgspec.convert(body, schema)
        except msgspec.ValidationError as e:
            raise validation_error(e, schema=schema) from None
        except RecursionError:
            raise validation_failed({"body": "The request body is nested too deeply"}) from None

    def parse_query(self, schema: type[T]) -> T:
        """Query arguments through a schema; 422 naming the argument for one given twice, or an int
        field that is not plain ASCII digits (msgspec's lax mode would read `1e2` and `50.0`)."""
        ints = _int_fields(schema)
        args: dict[str, Any] = {}
        for name, values in self.request.query_arguments.items():
            if len(values) > 1:
                raise validation_failed({name: f"{field_label(name)} is given more than once"})
            value = self.get_query_argument(name)
            if name in ints:
                if not _QUERY_INT.fullmatch(value):
                    raise validation_failed({name: f"{field_label(name)} must be a whole number"})
                args[name] = int(value)
            else:
                args[name] = value
        try:
            return msgspec.convert(args, schema, strict=False)
        except msgspec.ValidationError as e:
            raise validation_error(e, where="query", schema=schema) from None

    def write_json(self, value: Any, status: int = 200) -> None:
        self.set_status(status)
        self.finish(msgspec.json.encode(value))

    def no_content(self) -> None:
        self.set_status(204)
        self.finish()

    def send_error(self, status_code: int = 500, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, APIError):
            status_code = exc.status_code
        elif isinstance(exc, (DependencyUnavailable, *store.UNAVAILABLE_ERRORS, *NATS_ERRORS)):
            status_code = 503  # a NATS error never answers 500: the client retries after Retry-After
        super().send_error(status_code, **kwargs)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        error: dict[str, Any]
        if isinstance(exc, APIError):
            error = {"code": exc.code, "message": exc.message}
            if exc.fields:
                # Whoever raised it, each field's reason is one sentence and the message is those sentences.
                plain = validation_failed(exc.fields, exc.code)
                error["fields"], error["message"] = plain.fields, plain.message
            for name, value in exc.headers.items():
                self.set_header(name, value)
        elif status_code == 503:
            which = (exc.dependency if isinstance(exc, DependencyUnavailable)
                     else "nats" if isinstance(exc, NATS_ERRORS) else "mongodb")
            error = {"code": f"{which}_unavailable", "message": f"{which} is not answering; retry shortly"}
            self.set_header("Retry-After", str(RETRY_AFTER_SECONDS))
        elif status_code == 405:
            allowed = [m for m in self.SUPPORTED_METHODS if self._verb(m) is not None]
            self.set_header("Allow", ", ".join(allowed))
            error = {"code": "method_not_allowed", "message": f"{self.request.method} is not allowed here"
                     + (f"; allowed: {', '.join(allowed)}" if allowed else "")}
        elif isinstance(exc, tornado.web.HTTPError) and exc.log_message and status_code < 500:
            error = {"code": _STATUS_CODES.get(status_code, "error"), "message": exc.log_message % exc.args}
        else:
            error = {"code": _STATUS_CODES.get(status_code, "internal_error"), "message": self._reason}
        error["request_id"] = self.request_id
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(msgspec.json.encode({"error": error}))

    def log_exception(self, typ, value, tb) -> None:
        if isinstance(value, (tornado.web.HTTPError, APIError)):
            return  # the access log line says enough for a client error
        if isinstance(value, (DependencyUnavailable, *store.UNAVAILABLE_ERRORS, *NATS_ERRORS)):
            log.warning("%s %s: dependency unavailable: %s", self.request.method, self.request.path, value)
            return
        # Tornado's own line would add repr(self.request): the raw URI, token and all.
        app_log.error("Uncaught exception %s", self._request_summary(), exc_info=(typ, value, tb))

    def _request_summary(self) -> str:
        # Tornado's warnings and errors name the request by this; never with the query's token.
        return f"{self.request.method} {scrub_uri(self.request.uri or '')} ({self.request.remote_ip})"


class NotFoundHandler(BaseHandler):
    """JSON 404 for every path and method no route takes."""

    def prepare(self) -> None:
        # A body is refused before it is read; without one, the verb answers, and the connection stays open.
        headers = self.request.headers
        if "Transfer-Encoding" in headers or _declared_length(headers.get("Content-Length")) != 0:
            raise self.missing()

    def missing(self) -> APIError:
        return APIError(404, "not_found", f"no route {self.request.method} {self.request.path}")

    def get(self, *args: Any, **kwargs: Any) -> None:
        raise self.missing()

    head = post = delete = patch = put = options = get


class StaticHandler(BaseHandler, tornado.web.StaticFileHandler):
    """The static files, with JSON errors: a path that is missing, outside the directory or not a file is one 404."""

    def set_default_headers(self) -> None:
        # Tornado sets each file's type and caching; only the errors are JSON.
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header(REQUEST_ID_HEADER, self.request_id)

    async def get(self, path: str, include_body: bool = True) -> None:
        if "\x00" in path:
            # os.stat refuses a NUL with ValueError, which would surface as a 500; no file has one.
            raise not_found("file")
        await super().get(path, include_body)
        if self.get_status() == 416:  # Tornado answers an unsatisfiable range with an empty text/plain
            self.set_header("Content-Type", "application/json; charset=UTF-8")
            self.write(msgspec.json.encode(
                {"error": {"code": "range_not_satisfiable", "message": "the range is outside the file",
                           "request_id": self.request_id}}))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, tornado.web.HTTPError) and status_code in (403, 404):
            # Tornado's messages name the path it refused; the client learns only that nothing is there.
            self.set_status(404)
            kwargs["exc_info"] = (APIError, not_found("file"), None)
        super().write_error(self.get_status(), **kwargs)


class HealthHandler(BaseHandler):
    """Liveness: answers while the process runs, with no dependency checks."""

    def get(self) -> None:
        self.write_json({"status": "ok", "role": self.settings["role"]})


class ReadyHandler(BaseHandler):
    """Readiness of THIS process: MongoDB answers, its own NATS connection is up, and every check of the
    role's `ready_checks` (the notify consumer and the presence watch not stalled) passes; else 503 naming
    what is down. It never asks JetStream for the stream: an election must not take every instance out."""

    async def get(self) -> None:
        async def check(name: str, probe: Callable[[], Awaitable[Any]]) -> str | None:
            try:
                await asyncio.wait_for(probe(), timeout=2.0)
            except Exception:  # noqa: BLE001 - any failure means not ready
                return name
            return None

        down = [name for name in await asyncio.gather(check("mongodb", self.store.ping)) if name]
        if not self.bus.connected:
            down.append("nats")
        for ready_check in self.settings.get("ready_checks", ()):
            if reason := ready_check():
                down.append(reason)
        if down:
            self.set_header("Retry-After", str(RETRY_AFTER_SECONDS))
            self.write_json(
                {"status": "unavailable", "role": self.settings["role"], "down": down,
                 "error": {"code": "not_ready", "message": f"not answering: {', '.join(down)}",
                           "request_id": self.request_id}},
                status=503,
            )
        else:
            self.write_json({"status": "ready", "role": self.settings["role"]})


class MetricsHandler(BaseHandler):
    """Prometheus text format of this process's registry."""

    async def get(self) -> None:
        await self.metrics.refresh()
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)  # JSON only for its errors
        self.finish(generate_latest(self.metrics.registry))


def log_request(handler: tornado.web.RequestHandler) -> None:
    """Access log: level by status, tokens scrubbed from the URL, request metrics recorded."""
    request = handler.request
    status = handler.get_status()
    duration = request.request_time()
    if status < 400:
        level = logging.DEBUG if request.path.startswith(("/health", "/metrics")) else logging.INFO
    elif status < 500:
        level = logging.WARNING
    else:
        level = logging.ERROR
    if access_log.isEnabledFor(level):  # the scrubbing is the costly part: not for a line nobody keeps
        rid = request_id_of(handler)
        user = getattr(handler, "_current_user", None)  # only when the request already verified one
        uri = scrub_uri(request.uri or "")
        # The fields for JSON lines (log_format: json); the text line carries the same facts.
        fields = {"request_id": rid, "method": request.method, "path": scrub_uri(request.path or ""),
                  "status": status, "duration_ms": round(duration * 1000, 2), "remote_ip": request.remote_ip,
                  "user_id": getattr(user, "user_id", None)}
        access_log.log(level, "%d %s %s (%s) %.2fms rid=%s", status, request.method, uri,
                       request.remote_ip, duration * 1000, rid, extra=fields)
    app = cast(RoleApp, handler.application)  # log_request is a RoleApp's log_function
    app.deps.metrics.observe_request(type(handler).__name__, request.method or "", status, duration)


def route(template: str, handler: type, **kwargs: Any) -> tornado.web.URLSpec:
    """`/api/chats/{chat_id}` as a Tornado route; the template is kept for the OpenAPI paths."""
    pattern = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template) + "$"
    spec = tornado.web.URLSpec(pattern, handler, kwargs or None)
    spec.template = template  # type: ignore[attr-defined]
    return spec


class RoleApp(tornado.web.Application):
    """A role's application: background work starts after listen and stops before clients close.

    Every role answers /health, /health/ready and /metrics, logs through log_request and answers
    JSON 404 for any path its own routes do not take. Handlers reach the shared clients through
    `deps` (BaseHandler.config, .store, ...); a role passes only its own settings (services,
    static_path...). `config` is a setting too, for the role code and templates that read it there.
    """

    def __init__(
        self, routes: list[tornado.web.URLSpec], *, role: str, deps: Deps, **settings: Any
    ):
        self.deps = deps
        super().__init__(
            [
                route("/health", HealthHandler),
                route("/health/ready", ReadyHandler),
                route("/metrics", MetricsHandler),
                *routes,
                route(r"/api/.*", NotFoundHandler),
            ],
            role=role,
            config=deps.config,
            log_function=log_request,
            default_handler_class=NotFoundHandler,
            static_handler_class=StaticHandler,
            **settings,
        )

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass
