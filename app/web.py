"""Tornado base classes shared by both roles: JSON handlers, errors, auth, health, metrics, access log."""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from typing import Any, Awaitable, Callable, Generic, TypeVar

import msgspec
import tornado.web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app import store
from app.auth import Identity, InvalidToken, TokenVerifier
from app.config import Config
from app.deps import Deps
from app.errors import APIError, DependencyUnavailable, not_found  # noqa: F401 - re-exported for handlers
from app.events import EventBus
from app.metrics import Metrics

log = logging.getLogger("fechatter.web")
access_log = logging.getLogger("fechatter.access")

T = TypeVar("T")
# A role's services object: app.web sits below app.services, so each role names its own type.
ServicesT = TypeVar("ServicesT")

RETRY_AFTER_SECONDS = 5
_TOKEN_IN_URL = re.compile(r"((?:access_token|refresh_token|token)=)[^&\s]*", re.IGNORECASE)
_MSGSPEC_PATH = re.compile(r" - at `\$((?:\.[\w$]+|\[\d+\])*)`$")
_MSGSPEC_FIELD = re.compile(r"field `([^`]+)`")


def validation_error(error: msgspec.ValidationError, where: str = "body") -> APIError:
    """422 naming the field: msgspec says `Expected `str`, got `object` - at `$.content``."""
    text = str(error)
    match = _MSGSPEC_PATH.search(text)
    reason = text[: match.start()] if match else text
    if match and match.group(1):
        field = match.group(1).lstrip(".")
    else:
        named = _MSGSPEC_FIELD.search(reason)
        field = named.group(1) if named else where
    reason = reason.replace("`", "")
    if reason.startswith("Object missing required field"):
        reason = "required"
    elif reason.startswith("Object contains unknown field"):
        reason = "unknown field"
    return APIError(422, "validation_failed", f"invalid {where}: {field}: {reason}", fields={field: reason})


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


def authenticated(method: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """401 JSON (never a redirect) when the request carries no valid access token."""

    @functools.wraps(method)
    async def wrapper(self: "BaseHandler", *args: Any, **kwargs: Any) -> T:
        self.require_user()
        return await method(self, *args, **kwargs)

    wrapper.requires_auth = True  # type: ignore[attr-defined]
    return wrapper


class BaseHandler(tornado.web.RequestHandler, Generic[ServicesT]):
    """JSON in and out; the role's clients as typed properties; a role's handlers take
    `BaseHandler[TheirServices]` so that `self.services` has their type."""

    # JSON routes accept config api.max_body_bytes; a handler taking uploads raises its own limit.
    max_body_bytes: int | None = None
    _auth_failure: str | None = None

    @property
    def config(self) -> Config:
        return self.settings["config"]

    @property
    def store(self) -> store.Store:
        return self.settings["store"]

    @property
    def bus(self) -> EventBus:
        return self.settings["bus"]

    @property
    def verifier(self) -> TokenVerifier:
        return self.settings["tokens"]

    @property
    def metrics(self) -> Metrics:
        return self.settings["metrics"]

    @property
    def services(self) -> ServicesT:
        return self.settings["services"]

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Content-Type-Options", "nosniff")

    def prepare(self) -> None:
        limit = self.max_body_bytes or self.config.api.max_body_bytes
        declared = self.request.headers.get("Content-Length")
        size = int(declared) if declared and declared.isdigit() else len(self.request.body or b"")
        if size > limit:
            raise APIError(413, "payload_too_large", f"the request body is larger than {limit} bytes")

    def decode_argument(self, value: bytes, name: str | None = None) -> str:
        """Undecodable bytes in a path id name nothing that exists (404); in a query, bad input (422)."""
        try:
            return super().decode_argument(value, name)
        except tornado.web.HTTPError:
            if getattr(self, "path_kwargs", None) is None:  # Tornado decodes path arguments first
                raise not_found((name or "resource").removesuffix("_id")) from None
            field = name or "query"
            raise APIError(422, "validation_failed", f"invalid query: {field}: not UTF-8",
                           fields={field: "not UTF-8"}) from None

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

    def get_json_body(self) -> Any:
        """The decoded JSON body; 400 when it is not JSON at all."""
        if not self.request.body:
            raise APIError(400, "bad_request", "a JSON body is required")
        try:
            return msgspec.json.decode(self.request.body)
        except msgspec.DecodeError as e:
            raise APIError(400, "malformed_json", f"the body is not valid JSON: {e}") from None

    def parse_body(self, schema: type[T]) -> T:
        """400 for malformed JSON, 422 naming the field for JSON of the wrong shape."""
        body = self.get_json_body()
        try:
            return msgspec.convert(body, schema)
        except msgspec.ValidationError as e:
            raise validation_error(e) from None

    def parse_query(self, schema: type[T]) -> T:
        """Query arguments through a schema; strings become ints where the schema says so."""
        args = {name: self.get_query_argument(name) for name in self.request.query_arguments}
        try:
            return msgspec.convert(args, schema, strict=False)
        except msgspec.ValidationError as e:
            raise validation_error(e, where="query") from None

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
        elif isinstance(exc, (DependencyUnavailable, *store.UNAVAILABLE_ERRORS)):
            status_code = 503
        super().send_error(status_code, **kwargs)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        error: dict[str, Any]
        if isinstance(exc, APIError):
            error = {"code": exc.code, "message": exc.message}
            if exc.fields:
                error["fields"] = exc.fields
            for name, value in exc.headers.items():
                self.set_header(name, value)
        elif status_code == 503:
            which = exc.dependency if isinstance(exc, DependencyUnavailable) else "mongodb"
            error = {"code": f"{which}_unavailable", "message": f"{which} is not answering; retry shortly"}
            self.set_header("Retry-After", str(RETRY_AFTER_SECONDS))
        elif isinstance(exc, tornado.web.HTTPError) and exc.log_message and status_code < 500:
            error = {"code": _STATUS_CODES.get(status_code, "error"), "message": exc.log_message % exc.args}
        else:
            error = {"code": _STATUS_CODES.get(status_code, "internal_error"), "message": self._reason}
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(msgspec.json.encode({"error": error}))

    def log_exception(self, typ, value, tb) -> None:
        if isinstance(value, (tornado.web.HTTPError, APIError)):
            return  # the access log line says enough for a client error
        if isinstance(value, (DependencyUnavailable, *store.UNAVAILABLE_ERRORS)):
            log.warning("%s %s: dependency unavailable: %s", self.request.method, self.request.path, value)
            return
        super().log_exception(typ, value, tb)


class NotFoundHandler(BaseHandler):
    """JSON 404 for every path and method no route takes."""

    def prepare(self) -> None:
        raise APIError(404, "not_found", f"no route {self.request.method} {self.request.path}")


class HealthHandler(BaseHandler):
    """Liveness: answers while the process runs, with no dependency checks."""

    def get(self) -> None:
        self.write_json({"status": "ok", "role": self.settings["role"]})


class ReadyHandler(BaseHandler):
    """Readiness: 200 only when MongoDB and NATS both answer, else 503 naming what is down."""

    async def get(self) -> None:
        async def check(name: str, probe: Callable[[], Awaitable[Any]]) -> str | None:
            try:
                await asyncio.wait_for(probe(), timeout=2.0)
            except Exception:  # noqa: BLE001 - any failure means not ready
                return name
            return None

        down = [
            name
            for name in await asyncio.gather(check("mongodb", self.store.ping), check("nats", self.bus.ping))
            if name
        ]
        if down:
            self.set_header("Retry-After", str(RETRY_AFTER_SECONDS))
            self.write_json(
                {"status": "unavailable", "role": self.settings["role"], "down": down,
                 "error": {"code": "not_ready", "message": f"not answering: {', '.join(down)}"}},
                status=503,
            )
        else:
            self.write_json({"status": "ready", "role": self.settings["role"]})


class MetricsHandler(tornado.web.RequestHandler):
    """Prometheus text format of this process's registry."""

    def get(self) -> None:
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.finish(generate_latest(self.settings["metrics"].registry))


def scrub_url(uri: str) -> str:
    return _TOKEN_IN_URL.sub(r"\1[redacted]", uri)


def log_request(handler: tornado.web.RequestHandler) -> None:
    """Access log: level by status, tokens scrubbed from the URL, request metrics recorded."""
    status = handler.get_status()
    duration = handler.request.request_time()
    if status < 400:
        level = logging.DEBUG if handler.request.path.startswith(("/health", "/metrics")) else logging.INFO
    elif status < 500:
        level = logging.WARNING
    else:
        level = logging.ERROR
    access_log.log(
        level,
        "%d %s %s (%s) %.2fms",
        status,
        handler.request.method,
        scrub_url(handler.request.uri or ""),
        handler.request.remote_ip,
        duration * 1000,
    )
    metrics = handler.settings.get("metrics")
    if metrics is not None:
        metrics.observe_request(type(handler).__name__, handler.request.method or "", status, duration)


def shared_settings(deps: Deps) -> dict[str, Any]:
    """The Tornado settings BaseHandler reads, from the one typed object main() built."""
    return {
        "deps": deps,
        "config": deps.config,
        "store": deps.store,
        "bus": deps.bus,
        # An issuer verifies too: with --role=all both roles share one key and one cache of verified tokens.
        "tokens": deps.verifier,
        "metrics": deps.metrics,
    }


def route(template: str, handler: type, **kwargs: Any) -> tornado.web.URLSpec:
    """`/api/chats/{chat_id}` as a Tornado route; the template is kept for the OpenAPI paths."""
    pattern = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template) + "$"
    spec = tornado.web.URLSpec(pattern, handler, kwargs or None)
    spec.template = template  # type: ignore[attr-defined]
    return spec


class RoleApp(tornado.web.Application):
    """A role's application: background work starts after listen and stops before clients close.

    Every role answers /health, /health/ready and /metrics, logs through log_request and answers
    JSON 404 for any path its own routes do not take. The settings every role shares (config, store,
    bus, tokens, metrics) come from `deps`; a role passes only its own (services, static_path...).
    """

    def __init__(
        self, routes: list[tornado.web.URLSpec], *, role: str, deps: Deps, **settings: Any
    ):
        settings = {**shared_settings(deps), **settings}
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
            log_function=log_request,
            default_handler_class=NotFoundHandler,
            **settings,
        )

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass
