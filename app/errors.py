"""Errors a client can act on, raised by services and handlers alike and answered as JSON."""

from __future__ import annotations


class APIError(Exception):
    """Status, snake_case code, a message a person can act on, and per-field reasons for 422."""

    def __init__(
        self,
        status_code: int,
        code: str,
        message: str,
        *,
        fields: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.message = message
        self.fields = fields
        self.headers = headers or {}


class DependencyUnavailable(Exception):
    """MongoDB or NATS is down where the change cannot go on without it: 503 with Retry-After."""

    def __init__(self, dependency: str):
        super().__init__(f"{dependency} unavailable")
        self.dependency = dependency


def not_found(what: str = "resource") -> APIError:
    # One message whether the thing is missing or hidden from the caller: existence never leaks.
    return APIError(404, "not_found", f"no such {what}")


def forbidden(message: str) -> APIError:
    return APIError(403, "forbidden", message)


def conflict(code: str, message: str) -> APIError:
    return APIError(409, code, message)


def invalid(field: str, reason: str) -> APIError:
    return APIError(422, "validation_failed", f"invalid body: {field}: {reason}", fields={field: reason})
