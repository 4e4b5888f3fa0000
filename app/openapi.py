"""The OpenAPI 3.1 document of both roles, built from the routes and the schemas their handlers declare."""

from __future__ import annotations

import copy
import inspect
import re
from dataclasses import dataclass, field
from typing import Any, Iterable

import msgspec

from app.schemas.accounts import UserOut
from app.schemas.chats import ChatOut, ChatSettingsOut
from app.schemas.messages import MessageOut, ThreadUpdatedOut


class ErrorDetail(msgspec.Struct, omit_defaults=True):
    """What went wrong: a stable `code` for programs, a `message` for people, the offending `fields` of a 422,
    and the `request_id` the access log line of this request carries (quote it in a bug report)."""

    code: str
    message: str
    fields: dict[str, str] | None = None
    request_id: str | None = None


class ErrorBody(msgspec.Struct):
    """Every 4xx and 5xx answer of both roles: one `error` object."""

    error: ErrorDetail


@dataclass
class Operation:
    """What a handler method takes and answers; `responses` maps status to a schema (None: no body).

    `description` defaults to the handler method's docstring, else its class's: every operation has one."""

    summary: str
    responses: dict[int, Any]
    body: Any = None
    query: Any = None
    auth: bool = True
    # Set for routes whose body is not JSON (uploads) or whose answer is not JSON (file bytes).
    body_content_type: str = "application/json"
    response_content_type: str = "application/json"
    errors: tuple[int, ...] = ()
    tags: tuple[str, ...] = field(default_factory=tuple)
    description: str = ""
    operation_id: str = ""  # when the one made from the path would repeat another's


_DESCRIPTIONS = {
    200: "OK",
    201: "Created",
    204: "No Content",
    302: "Found: see Location",
    304: "Not Modified",
    400: "Malformed JSON",
    401: "Missing, invalid or expired token",
    403: "Not allowed",
    404: "Not found",
    409: "Conflict",
    413: "Body too large",
    422: "Invalid input",
    429: "Rate limited",
    503: "A dependency is down",
}

# Schemas whose Struct has no docstring of its own (msgspec takes the docstring as the description).
SCHEMA_DESCRIPTIONS = {
    "SignupIn": "A new workspace and its first member (the owner), or a member joining by workspace name.",
    "SigninIn": "Email and password of an existing user.",
    "RefreshIn": "A refresh token, exchanged once for a new pair.",
    "UserOut": "A user as everyone in their workspace sees them.",
    "MeOut": "The caller: their public payload plus what only they see.",
    "WorkspaceOut": "The workspace the caller belongs to.",
    "AuthOut": "A token pair and the user it speaks for.",
    "UsersPage": "One page of the workspace's people and the cursor of the next.",
    "ChatCreateIn": "A new chat: its type, name and first members.",
    "ChatUpdateIn": "A chat's new name, topic or archive state.",
    "MemberRoleIn": "A member's new role in a channel.",
    "MembersAddIn": "Users to add to a chat.",
    "ChatOut": "A chat as its members see it.",
    "ChatSummaryOut": "A chat in the caller's list: the chat plus their unread count and last message.",
    "ChatSettingsIn": "The caller's own settings of a chat: notification level, muted.",
    "ChatSettingsOut": "The caller's settings of a chat (also the data of `chat.settings`).",
    "MemberOut": "One member of a chat and their role.",
    "MembersPage": "One page of a chat's members and the cursor of the next.",
    "ChannelsPage": "One page of the public channels of the workspace.",
    "MessageCreateIn": "A new message: its content, optional files, thread root and idempotency key.",
    "MessageUpdateIn": "A message's new content.",
    "MessageOut": "A message as the members of its chat see it (also the data of `message.created`).",
    "PinOut": "A pinned message and who pinned it when.",
    "PinsPage": "The pinned messages of a chat.",
    "MessageVersionOut": "One earlier version of an edited message.",
    "MessagePage": "One page of messages and the cursor of the next.",
    "ReadIn": "The last message the caller has read in a chat.",
    "MentionsPage": "One page of the messages that mention the caller.",
    "SearchHitOut": "A message that matched, with the matched terms highlighted.",
    "SearchOut": "Messages matching a search, best first, and the cursor of the next page.",
    "FileOut": "An uploaded file: its id, name, type, size and the signed URL to fetch it.",
    "FileUploadIn": "A multipart upload: one file part named `file`.",
    "ProfileIn": "Fields of the caller's profile to change.",
    "PasswordChangeIn": "The current password and the new one.",
    "AvatarUploadIn": "A multipart upload: one image part named `file`.",
    "BotCreateIn": "A new bot user of the workspace: its display name and username.",
    "BotCreatedOut": "The bot user and its token, shown this once (only its SHA-256 is stored).",
    "WebhookCreateIn": "A new incoming webhook of a chat: its name.",
    "WebhookOut": "An incoming webhook of a chat and the bot user that posts for it.",
    "WebhookCreatedOut": "The new incoming webhook and its URL (`/hooks/<secret>`), shown this once.",
    "HookPostIn": "A message posted through an incoming webhook.",
    "WebhookIn": "A new outgoing webhook: the URL to POST events to, the event names, optionally some chats.",
    "WebhookCreated": "The new outgoing webhook and its signing secret, shown this once.",
    "WebhookList": "The workspace's outgoing webhooks.",
    "DeliveryOut": "One delivery attempt of an event to an outgoing webhook.",
    "DeliveryList": "The recent deliveries of an outgoing webhook.",
}

# Operations whose handler has no docstring and whose summary is too short to describe them.
OPERATION_DESCRIPTIONS = {
    "getUsersMe": "The caller's own user: the public payload plus what only they see (email, workspace).",
}

# Example values by property name; otherwise by type and format (see `example_of`).
_EXAMPLE_VALUES: dict[str, Any] = {
    "id": "665f1c2e9b1d4a00c0ffee01",
    "email": "ada@example.com",
    "password": "correct horse battery",
    "fullname": "Ada Lovelace",
    "username": "ada",
    "name": "general",
    "workspace": "Analytical Engines",
    "content": "Hello **team**, the build is green",
    "topic": "Release planning",
    "emoji": "👍",
    "access_token": "<access token>",
    "refresh_token": "<refresh token>",
    "token": "<access token>",
    "secret": "<secret>",
    "url": "https://hooks.example.com/fechatter",
    "reason": "too_old",
    "status": "online",
    "next_cursor": None,
    "q": "deploy",
}

SSE_FRAME_FORMAT = """\
Server-Sent Events (text/event-stream). Each event is one frame:

    id: <cursor>
    event: <name>
    data: <one line of JSON>

followed by a blank line. The cursor is opaque and increasing, valid on every notify instance. A `retry:`
hint comes first; a comment line `: ping` comes at least every 15 s. Reconnect with the id of the last frame
seen (the `Last-Event-ID` header, or `?last_event_id=`): every event missed within the replay window
(default 5 minutes) follows, in order, none twice; past the window one `resync` event comes instead (reload
over REST). The stream ends when the access token expires (reconnect with a fresh one) and when a client reads
too slowly to keep up (resume with Last-Event-ID)."""


def _object(description: str, example: dict[str, Any], **properties: Any) -> dict[str, Any]:
    return {"type": "object", "description": description, "required": list(properties),
            "properties": properties, "examples": [example]}


_ID = {"type": "string", "description": "An id", "examples": ["665f1c2e9b1d4a00c0ffee01"]}
_SEQ = {"type": "integer", "description": "The message's sequence number in its chat", "examples": [42]}
_CHAT, _USER, _MSG = (
    {"cid": "665f1c2e9b1d4a00c0ffee02", "uid": "665f1c2e9b1d4a00c0ffee03", "mid": "665f1c2e9b1d4a00c0ffee04"}[k]
    for k in ("cid", "uid", "mid")
)
_ROLE = {"type": "string", "enum": ["owner", "admin", "member"], "description": "The member's role"}
_MEMBERSHIP = _object("A membership change", {"chat_id": _CHAT, "user_id": _USER, "role": "member"},
                      chat_id=_ID, user_id=_ID, role=_ROLE)
_REACTION = _object("One reaction of one member", {"chat_id": _CHAT, "message_id": _MSG, "emoji": "👍",
                                                   "user_id": _USER},
                    chat_id=_ID, message_id=_ID, emoji={"type": "string", "description": "The emoji"}, user_id=_ID)
_PIN = _object("A pin or unpin", {"chat_id": _CHAT, "message_id": _MSG, "user_id": _USER},
               chat_id=_ID, message_id=_ID, user_id=_ID)
_MEMBER_UPDATED = copy.deepcopy(_MEMBERSHIP)
_MEMBER_UPDATED["description"] = "A member's role changed; a transfer of ownership also names both owners"
_MEMBER_UPDATED["properties"].update(owner_id=_ID, previous_owner_id=_ID)

# The data of every event a stream delivers (contract sections 8 and 10–17): a component name or a schema.
EVENT_DATA: dict[str, Any] = {
    "message.created": MessageOut,
    "message.updated": MessageOut,
    "message.deleted": _object("The message that was deleted", {"id": _MSG, "chat_id": _CHAT, "seq": 42},
                               id=_ID, chat_id=_ID, seq=_SEQ),
    "chat.created": ChatOut,
    "chat.updated": ChatOut,
    "chat.deleted": _object("The chat that was deleted", {"id": _CHAT}, id=_ID),
    "member.joined": _MEMBERSHIP,
    "member.left": _MEMBERSHIP,
    "member.updated": _MEMBER_UPDATED,
    "reaction.added": _REACTION,
    "reaction.removed": _REACTION,
    "message.pinned": _PIN,
    "message.unpinned": _PIN,
    "thread.updated": ThreadUpdatedOut,
    "typing": _object("A member is typing", {"chat_id": _CHAT, "user_id": _USER}, chat_id=_ID, user_id=_ID),
    "read": _object("A member read up to a message", {"chat_id": _CHAT, "user_id": _USER, "seq": 42},
                    chat_id=_ID, user_id=_ID, seq=_SEQ),
    "presence": _object("A user's first stream opened or last closed", {"user_id": _USER, "status": "online"},
                        user_id=_ID, status={"type": "string", "enum": ["online", "offline"],
                                             "description": "online or offline"}),
    "user.updated": UserOut,
    "chat.settings": ChatSettingsOut,
    "resync": _object("The resume point is too old or unknown: reload over REST", {"reason": "too_old"},
                      reason={"type": "string", "description": "Why no replay is possible"}),
}


def _event_component(name: str) -> str:
    return "Event_" + name.replace(".", "_")


def _query_parameters(query: Any) -> list[dict[str, Any]]:
    params = []
    for f in msgspec.structs.fields(query):
        schema = msgspec.json.schema(f.type)
        schema.pop("$defs", None)
        description = schema.get("description") or f"The `{f.encode_name}` of the query"
        params.append({"name": f.encode_name, "in": "query", "required": f.required, "schema": schema,
                       "description": description})
    return params


def _docstring_of(handler: type, method: str) -> str:
    """The verb's own docstring, else the handler class's own (class docstrings are not inherited)."""
    doc = getattr(getattr(handler, method, None), "__doc__", None) or handler.__doc__ or ""
    return inspect.cleandoc(doc)


def example_of(schema: dict[str, Any], components: dict[str, Any], name: str = "", depth: int = 0) -> Any:
    """A plausible value of a JSON schema: its own example, else one made from its type, format and names."""
    if "$ref" in schema:
        target = components.get(schema["$ref"].rsplit("/", 1)[-1], {})
        return example_of(target, components, name, depth)
    for key in ("examples",):
        if schema.get(key):
            return schema[key][0]
    if "default" in schema:
        return schema["default"]
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    for key in ("anyOf", "oneOf"):
        if key in schema:
            options = [s for s in schema[key] if s.get("type") != "null"] or schema[key]
            return example_of(options[0], components, name, depth)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if name in _EXAMPLE_VALUES and kind in (None, "string"):
        return _EXAMPLE_VALUES[name]
    if kind == "object" or "properties" in schema:
        if depth > 4:
            return {}
        return {key: example_of(sub, components, key, depth + 1) for key, sub in schema.get("properties", {}).items()}
    if kind == "array":
        if depth > 4:
            return []
        return [example_of(schema.get("items", {}), components, name.removesuffix("s"), depth + 1)]
    if kind == "integer":
        return max(schema.get("minimum", 1), 1 if name != "seq" else 42)
    if kind == "number":
        return schema.get("minimum", 1.5)
    if kind == "boolean":
        return False
    if kind == "null":
        return None
    fmt = schema.get("format")
    if fmt == "date-time":
        return "2026-03-14T09:26:53.589Z"
    if fmt in ("uri", "url"):
        return "https://example.com/"
    if fmt == "email":
        return "ada@example.com"
    if name.endswith("_id") or name.endswith("_ids") or name == "id":
        return _EXAMPLE_VALUES["id"]
    if name.endswith("_at"):
        return "2026-03-14T09:26:53.589Z"
    if name == "cursor" or name.endswith("cursor"):
        return "eyJzIjo0Mn0"
    minimum = schema.get("minLength", 0)
    return "example".ljust(minimum, "x")


def _with_descriptions_and_examples(components: dict[str, Any]) -> None:
    for name, schema in components.items():
        if not schema.get("description") and name in SCHEMA_DESCRIPTIONS:
            schema["description"] = SCHEMA_DESCRIPTIONS[name]
    for name, schema in components.items():
        if "examples" not in schema:
            schema["examples"] = [example_of({k: v for k, v in schema.items() if k != "examples"}, components)]


def _servers(api_url: str, notify_url: str) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    api = {"url": api_url, "description": "The api role: the HTTP API (stateless; run as many as you like)"}
    notify = {"url": notify_url, "description": "The notify role: Server-Sent Events and who is online"}
    return [api], [notify]


def _error_responses(statuses: Iterable[int]) -> dict[str, Any]:
    return {str(status): {"$ref": f"#/components/responses/Error{status}"} for status in sorted(statuses)}


def _operational_paths(api: list, notify: list) -> dict[str, Any]:
    both = api + notify
    role = {"type": "string", "enum": ["api", "notify"], "description": "Which role answered"}
    return {
        "/health": {"servers": both, "get": {
            "summary": "Liveness", "operationId": "getHealth", "tags": ["operations"],
            "description": "Answers while the process runs, with no dependency checks (both roles).",
            "responses": {"200": {"description": "OK", "content": {"application/json": {
                "schema": _object("Alive", {"status": "ok", "role": "api"},
                                  status={"type": "string", "const": "ok", "description": "Always ok"}, role=role),
                "example": {"status": "ok", "role": "api"}}}}}}},
        "/health/ready": {"servers": both, "get": {
            "summary": "Readiness", "operationId": "getHealthReady", "tags": ["operations"],
            "description": "200 only when MongoDB and NATS both answer; else 503 naming which is down (both roles).",
            "responses": {
                "200": {"description": "Ready", "content": {"application/json": {
                    "schema": _object("Ready", {"status": "ready", "role": "api"},
                                      status={"type": "string", "description": "ready"}, role=role),
                    "example": {"status": "ready", "role": "api"}}}},
                "503": {"description": "Not ready", "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/ErrorBody"},
                    "example": {"status": "unavailable", "role": "api", "down": ["nats"],
                                "error": {"code": "not_ready", "message": "not answering: nats",
                                          "request_id": "8f14e45fceea167a5a36dedd4bea2543"}}}}}}}},
        "/metrics": {"servers": both, "get": {
            "summary": "Prometheus metrics", "operationId": "getMetrics", "tags": ["operations"],
            "description": "This process's metrics in the Prometheus text format (both roles; see "
                           "docs/deploy/grafana-dashboard.json and docs/deploy/alerts.yaml).",
            "responses": {"200": {"description": "OK", "content": {"text/plain": {
                "schema": {"type": "string", "description": "Prometheus text exposition format"},
                "example": "# TYPE fechatter_http_requests_total counter\n"}}}}}},
    }


def _notify_paths(notify: list) -> dict[str, Any]:
    bearer = [{"bearer": []}, {"query_token": []}]
    frame_example = ('retry: 2000\n\nid: 1042\nevent: message.created\ndata: {"id":"665f1c2e9b1d4a00c0ffee04",'
                     '"chat_id":"665f1c2e9b1d4a00c0ffee02","seq":42,"content":"Hello"}\n\n: ping\n\n')
    errors = _error_responses((401, 429, 503))
    return {
        "/events": {"servers": notify, "get": {
            "summary": "Open the event stream", "operationId": "getEvents", "tags": ["notify"],
            "description": "The caller's events as Server-Sent Events: every event of every chat they belong to, "
                           "and presence of the people they share a chat with.\n\n" + SSE_FRAME_FORMAT
                           + "\n\nEvents and their data: see the `EventFrame` schema ("
                           + ", ".join(f"`{name}`" for name in EVENT_DATA) + ").",
            "parameters": [
                {"name": "Last-Event-ID", "in": "header", "required": False,
                 "description": "Resume after this cursor (the id of the last frame seen); EventSource sends it.",
                 "schema": {"type": "string"}, "example": "1042"},
                {"name": "last_event_id", "in": "query", "required": False,
                 "description": "The same as the Last-Event-ID header, for clients that cannot set headers.",
                 "schema": {"type": "string"}, "example": "1042"},
                {"name": "access_token", "in": "query", "required": False,
                 "description": "The access token, for EventSource (which sends no Authorization header).",
                 "schema": {"type": "string"}, "example": "<access token>"},
            ],
            "responses": {"200": {"description": "The stream, open until the token expires",
                                  "content": {"text/event-stream": {
                                      "schema": {"$ref": "#/components/schemas/EventFrame"},
                                      "example": frame_example}}},
                          **errors},
            "security": bearer}},
        "/api/online-users": {"servers": notify, "get": {
            "summary": "Who is online", "operationId": "getOnlineUsers", "tags": ["notify"],
            "description": "The users online in one chat or workspace the caller belongs to (404 otherwise); "
                           "with no query, those who share a chat with the caller.",
            "parameters": [
                {"name": "chat_id", "in": "query", "required": False, "description": "A chat of the caller",
                 "schema": {"type": "string"}, "example": _CHAT},
                {"name": "workspace_id", "in": "query", "required": False,
                 "description": "The caller's workspace", "schema": {"type": "string"}, "example": _CHAT},
                {"name": "access_token", "in": "query", "required": False,
                 "description": "The access token, instead of the Authorization header.",
                 "schema": {"type": "string"}, "example": "<access token>"},
            ],
            "responses": {"200": {"description": "OK", "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/OnlineUsers"},
                "example": {"users": [{"id": _USER, "fullname": "Ada Lovelace"}]}}}},
                **_error_responses((401, 404, 422, 429, 503))},
            "security": bearer}},
        "/api/sse/health": {"servers": notify, "get": {
            "summary": "Stream health", "operationId": "getSseHealth", "tags": ["notify"],
            "description": "How many users and connections this notify process holds, and in how many chats.",
            "responses": {"200": {"description": "OK", "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/SseHealth"},
                "example": {"status": "healthy", "service": "notify", "transport": "sse",
                            "connected_users": 12, "connections": 15, "active_chats": 7}}}}}}},
    }


def _notify_components(ref_of: dict[Any, dict[str, str]]) -> dict[str, Any]:
    count = {"type": "integer", "minimum": 0}
    schemas: dict[str, Any] = {
        "OnlineUsers": _object(
            "The users online", {"users": [{"id": _USER, "fullname": "Ada Lovelace"}]},
            users={"type": "array", "description": "Online users", "items": _object(
                "An online user", {"id": _USER, "fullname": "Ada Lovelace"},
                id=_ID, fullname={"type": "string", "description": "Their full name"})}),
        "SseHealth": _object(
            "This notify process's streams",
            {"status": "healthy", "service": "notify", "transport": "sse", "connected_users": 12,
             "connections": 15, "active_chats": 7},
            status={"type": "string", "const": "healthy", "description": "healthy"},
            service={"type": "string", "const": "notify", "description": "notify"},
            transport={"type": "string", "const": "sse", "description": "sse"},
            connected_users={**count, "description": "Users with a stream open"},
            connections={**count, "description": "Streams open"},
            active_chats={**count, "description": "Chats with a member online"}),
    }
    variants = []
    for name, data in EVENT_DATA.items():
        data_schema = ref_of[data] if not isinstance(data, dict) else data
        schemas[_event_component(name)] = {
            "type": "object", "title": name, "description": f"A `{name}` frame",
            "required": ["id", "event", "data"],
            "properties": {
                "id": {"type": "string", "description": "The cursor (the frame's `id:` line)"},
                "event": {"type": "string", "const": name, "description": "The frame's `event:` line"},
                "data": data_schema,
            },
        }
        variants.append({"$ref": f"#/components/schemas/{_event_component(name)}"})
    schemas["EventFrame"] = {
        "description": "One frame of the stream, shown as an object: its `id:`, `event:` and `data:` lines "
                       "(data is one line of JSON). " + SSE_FRAME_FORMAT,
        "oneOf": variants,
    }
    return schemas


def build_openapi(routes: Iterable[Any], *, title: str, version: str, api_url: str = "/",
                  notify_url: str = "http://127.0.0.1:6687") -> dict[str, Any]:
    """Every route whose handler has `api_doc`, plus what every role answers and the notify role's paths.

    The api's paths come from the handlers, so the document cannot list one that does not exist; the
    notify role's are described here (the api role may not import it) and a test holds them to its routes."""
    types: list[Any] = [ErrorBody, *(data for data in EVENT_DATA.values() if not isinstance(data, dict))]
    operations: list[tuple[str, str, Operation, type]] = []
    for spec in routes:
        template = getattr(spec, "template", None)
        doc = getattr(spec.handler_class, "api_doc", None)
        if template is None or not doc:
            continue
        for method, op in doc.items():
            operations.append((template, method, op, spec.handler_class))
            for schema in (op.body, *op.responses.values()):  # a query's fields are parameters
                if schema is not None and schema is not bytes:
                    types.append(schema)
    unique_types = list(dict.fromkeys(types))
    refs, components = msgspec.json.schema_components(
        unique_types, ref_template="#/components/schemas/{name}"
    )
    ref_of = dict(zip(unique_types, refs))
    components.update(_notify_components(ref_of))
    _with_descriptions_and_examples(components)
    api_servers, notify_servers = _servers(api_url, notify_url)

    paths: dict[str, dict[str, Any]] = {}
    for template, method, op, handler in operations:
        entry: dict[str, Any] = {"summary": op.summary, "operationId": op.operation_id or _operation_id(method, template),
                                 "description": op.description or _docstring_of(handler, method)
                                 or OPERATION_DESCRIPTIONS.get(op.operation_id or _operation_id(method, template))
                                 or op.summary}
        if op.tags:
            entry["tags"] = list(op.tags)
        params = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"},
             "description": f"The {name.removesuffix('_id')}'s id", "example": _EXAMPLE_VALUES["id"]}
            for name in re.findall(r"\{(\w+)\}", template)
        ]
        if op.query is not None:
            params += _query_parameters(op.query)
        if params:
            entry["parameters"] = params
        if op.body is not None:
            media: dict[str, Any] = {"schema": ref_of[op.body], "example": example_of(ref_of[op.body], components)}
            entry["requestBody"] = {"required": True, "content": {op.body_content_type: media}}
        responses: dict[str, Any] = {}
        for status, schema in op.responses.items():
            response: dict[str, Any] = {"description": _DESCRIPTIONS.get(status, "OK")}
            if schema is bytes:
                response["content"] = {op.response_content_type: {"schema": {"type": "string", "format": "binary"}}}
            elif schema is not None:
                response["content"] = {op.response_content_type: {
                    "schema": ref_of[schema], "example": example_of(ref_of[schema], components)}}
            responses[str(status)] = response
        error_statuses = set(op.errors) | {503}
        if op.auth:
            error_statuses.add(401)
        if op.body is not None and op.body_content_type == "application/json":
            error_statuses |= {400, 413, 422}
        if op.query is not None:
            error_statuses.add(422)
        responses.update(_error_responses(error_statuses - set(op.responses)))
        entry["responses"] = responses
        if op.auth:
            entry["security"] = [{"bearer": []}]
        paths.setdefault(template, {})[method] = entry
    paths.update(_operational_paths(api_servers, notify_servers))
    paths.update(_notify_paths(notify_servers))

    error_statuses = {401, 404, 422, 429, 503} | {
        int(s) for item in paths.values() for op in item.values() if isinstance(op, dict)
        for s in op.get("responses", {}) if s.isdigit() and int(s) >= 400}
    error_example = {"error": {"code": "validation_failed", "message": "Password must be at least 8 characters",
                               "fields": {"password": "Password must be at least 8 characters"},
                               "request_id": "8f14e45fceea167a5a36dedd4bea2543"}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": title, "version": version,
            "description": "Fechatter, a team chat server, in two roles: the **api** (HTTP API) and **notify** "
                           "(Server-Sent Events, who is online), each with its own `servers` entry. Every error is "
                           "an `ErrorBody` carrying the request's `X-Request-Id` as `error.request_id`.",
        },
        "servers": api_servers + notify_servers,
        "tags": [
            {"name": "notify", "description": "The notify role: the event stream and who is online"},
            {"name": "operations", "description": "Health, readiness and metrics of both roles"},
            {"name": "webhooks", "description": "Outgoing webhooks, delivered by the worker role (owner only)"},
        ],
        "paths": paths,
        "components": {
            "schemas": components,
            "responses": {
                f"Error{status}": {
                    "description": _DESCRIPTIONS.get(status, "Error"),
                    "headers": {"X-Request-Id": {"description": "The request's id (also error.request_id)",
                                                 "schema": {"type": "string"}}},
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"},
                                                     "example": error_example}},
                }
                for status in sorted(error_statuses)
            },
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                           "description": "The access token of POST /api/signin, as `Authorization: Bearer`"},
                "query_token": {"type": "apiKey", "in": "query", "name": "access_token",
                                "description": "The access token in the URL (notify only: EventSource sends "
                                               "no headers); never logged"},
            },
        },
    }


def _operation_id(method: str, template: str) -> str:
    words = [w.strip("{}") for w in template.strip("/").split("/") if w and w != "api"]
    return method + "".join(w[:1].upper() + w[1:] for w in "_".join(words).split("_"))
