"""Signed file and thumbnail URLs: HMAC over (file id, expiry, purpose), so an <img src> loads without a header."""

from __future__ import annotations

import time
from typing import Callable, Literal

from app.auth import UrlSigner

Purpose = Literal["file", "thumb"]
PATHS: dict[str, str] = {"file": "/api/files/{id}", "thumb": "/api/files/{id}/thumbnail"}


class FileLinks:
    """URLs for one file that work without a token until `exp` and only for that file and purpose.

    The expiry is rounded up to a bucket of ttl/2 seconds, so a URL lives between ttl/2 and ttl and
    listing the same page twice (within a bucket) gives the same URLs: browsers and proxies cache them.
    """

    def __init__(self, signer: UrlSigner, ttl_seconds: float, clock: Callable[[], float] = time.time):
        self.signer = signer
        self.ttl = max(2, int(ttl_seconds))
        self.clock = clock

    def expiry(self) -> int:
        bucket = self.ttl // 2
        return int(self.clock()) // bucket * bucket + self.ttl

    def url(self, file_id: str, purpose: Purpose = "file", exp: int | None = None) -> str:
        exp = self.expiry() if exp is None else exp
        sig = self.signer.sign(file_id, str(exp), purpose)
        return f"{PATHS[purpose].format(id=file_id)}?exp={exp}&sig={sig}"

    def valid(self, file_id: str, purpose: Purpose, exp: str | None, sig: str | None) -> bool:
        """True for an unexpired signature of exactly this file and purpose (compared in constant time)."""
        if not exp or not sig or not exp.isdigit() or len(exp) > 12:
            return False
        if int(exp) < self.clock():
            return False
        return self.signer.valid(sig, file_id, exp, purpose)

