"""The OpenAPI 3.1 document, built from the routes and the schemas their handlers declare."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable

import msgspec


class ErrorDetail(msgspec.Struct, omit_defaults=True):
    code: str
    message: str
    fields: dict[str, str] | None = None


class ErrorBody(msgspec.Struct):
    error: ErrorDetail


@dataclass
class Operation:
    """What a handler method takes and answers; `responses` maps status to a schema (None: no body)."""

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


_DESCRIPTIONS = {
    200: "OK",
    201: "Created",
    204: "No Content",
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


def _query_parameters(query: Any) -> list[dict[str, Any]]:
    params = []
    for f in msgspec.structs.fields(query):
        schema = msgspec.json.schema(f.type)
        schema.pop("$defs", None)
        params.append({"name": f.encode_name, "in": "query", "required": f.required, "schema": schema})
    return params


def build_openapi(routes: Iterable[Any], *, title: str, version: str) -> dict[str, Any]:
    """Every route whose handler has `api_doc`, so the document cannot list a path that does not exist."""
    types: list[Any] = [ErrorBody]
    operations: list[tuple[str, str, Operation]] = []
    for spec in routes:
        template = getattr(spec, "template", None)
        doc = getattr(spec.handler_class, "api_doc", None)
        if template is None or not doc:
            continue
        for method, op in doc.items():
            operations.append((template, method, op))
            for schema in (op.body, op.query, *op.responses.values()):
                if schema is not None and schema is not bytes:
                    types.append(schema)
    unique_types = list(dict.fromkeys(types))
    refs, components = msgspec.json.schema_components(
        unique_types, ref_template="#/components/schemas/{name}"
    )
    ref_of = dict(zip(unique_types, refs))

    paths: dict[str, dict[str, Any]] = {}
    for template, method, op in operations:
        entry: dict[str, Any] = {"summary": op.summary, "operationId": _operation_id(method, template)}
        if op.tags:
            entry["tags"] = list(op.tags)
        params = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in re.findall(r"\{(\w+)\}", template)
        ]
        if op.query is not None:
            params += _query_parameters(op.query)
        if params:
            entry["parameters"] = params
        if op.body is not None:
            entry["requestBody"] = {
                "required": True,
                "content": {op.body_content_type: {"schema": ref_of[op.body]}},
            }
        responses: dict[str, Any] = {}
        for status, schema in op.responses.items():
            response: dict[str, Any] = {"description": _DESCRIPTIONS.get(status, "OK")}
            if schema is bytes:
                response["content"] = {op.response_content_type: {"schema": {"type": "string", "format": "binary"}}}
            elif schema is not None:
                response["content"] = {"application/json": {"schema": ref_of[schema]}}
            responses[str(status)] = response
        error_statuses = set(op.errors) | {503}
        if op.auth:
            error_statuses.add(401)
        if op.body is not None and op.body_content_type == "application/json":
            error_statuses |= {400, 413, 422}
        if op.query is not None:
            error_statuses.add(422)
        for status in sorted(error_statuses):
            responses[str(status)] = {
                "description": _DESCRIPTIONS.get(status, "Error"),
                "content": {"application/json": {"schema": ref_of[ErrorBody]}},
            }
        entry["responses"] = responses
        if op.auth:
            entry["security"] = [{"bearer": []}]
        paths.setdefault(template, {})[method] = entry
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
    }


def _operation_id(method: str, template: str) -> str:
    words = [w.strip("{}") for w in template.strip("/").split("/") if w and w != "api"]
    return method + "".join(w[:1].upper() + w[1:] for w in "_".join(words).split("_"))
