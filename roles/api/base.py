"""The api role's handler base: BaseHandler with `self.services` typed as ApiServices."""

from __future__ import annotations

from app.services import ApiServices
from app.web import BaseHandler


class ApiHandler(BaseHandler[ApiServices]):
    """Parse, authorize and act through a service, serialize: the rules live in app.services."""
