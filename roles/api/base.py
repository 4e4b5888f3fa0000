"""The api role's handler base: BaseHandler with `self.services` typed as ApiServices."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from app.schemas.common import PageQuery
from app.services import ApiServices
from app.services.paging import MAX_PAGE, Page
from app.web import BaseHandler


class ApiHandler(BaseHandler[ApiServices]):
    """Parse, authorize and act through a service, serialize: the rules live in app.services."""

    def write_page(self, query: PageQuery, page: Page[Any], body: Any) -> None:
        """`body` (the page with next_cursor) when a page was asked for; else the old unpaged array.

        An unpaged answer cut at its bound says so with `Link: <…&cursor=…>; rel="next"` (RFC 8288),
        so an old client gets the first rows and a new one can go on from there.
        """
        if query.paged:
            self.write_json(body)
            return
        if page.next_cursor is not None:
            kept = [k for k in self.request.query_arguments if k not in ("limit", "cursor")]
            args = [(k, self.get_query_argument(k)) for k in kept]
            args += [("limit", str(MAX_PAGE)), ("cursor", page.next_cursor)]
            self.set_header("Link", f'<{self.request.path}?{urlencode(args)}>; rel="next"')
        self.write_json(page.items)
