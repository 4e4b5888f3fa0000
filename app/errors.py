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


# How a field is named to a person; any other is its name in words ("user_ids" → "User ids").
FIELD_LABELS = {
    "fullname": "Name",
    "email": "Email",
    "password": "Password",
    "current_password": "Current password",
    "new_password": "New password",
    "username": "Username",
    "status_text": "Status",
    "status_emoji": "Status emoji",
    "timezone": "Time zone",
    "workspace": "Workspace name",
    "invite_code": "Invite code",
    "content": "Message",
    "q": "Search",
    "file": "File",
    "files": "Files",
    "body": "The request body",
}


def field_label(field: str) -> str:
    """`settings.notify` is named by its last field, `members[2]` as "Members (item 3)": what a form shows."""
    last = field.rsplit(".", 1)[-1]
    name, _, index = last.partition("[")
    name = name or field
    label = FIELD_LABELS.get(name)
    if label is None:
        words = name.replace("_", " ").strip() or "value"
        label = words[:1].upper() + words[1:]
    if index[:-1].isdigit():
        label = f"{label} (item {int(index[:-1]) + 1})"
    return label


def sentence(field: str, reason: str) -> str:
    """One line a person can act on: a reason already written as a sentence is kept, a fragment
    ("required", "at most 30 characters") is said of the field's label."""
    reason = reason.strip().rstrip(".")
    if not reason:
        return f"{field_label(field)} is not valid"
    if reason[0].isupper():
        return reason
    if reason == "required":
        return f"{field_label(field)} is required"
    if reason.startswith(("at most ", "at least ")):
        return f"{field_label(field)} must be {reason}"
    return f"{field_label(field)}: {reason}"


def validation_failed(reasons: dict[str, str], code: str = "validation_failed") -> APIError:
    """422 with one line per field, each a sentence; the message is those lines, never one twice."""
    fields = {field: sentence(field, why) for field, why in reasons.items()}
    return APIError(422, code, "; ".join(dict.fromkeys(fields.values())), fields=fields)


def invalid(field: str, reason: str) -> APIError:
    return validation_failed({field: reason})
