"""The clients a role is built from: made once in main(), handed to each role's make_app as one typed object."""

from __future__ import annotations

from dataclasses import dataclass

from app.auth import TokenIssuer, TokenVerifier
from app.config import Config
from app.events import EventBus
from app.metrics import Metrics
from app.store import Store


@dataclass(frozen=True)
class Deps:
    """What every role shares. `issuer` holds the private key and exists only where tokens are signed (api)."""

    config: Config
    store: Store
    bus: EventBus
    metrics: Metrics
    verifier: TokenVerifier
    issuer: TokenIssuer | None = None

    def require_issuer(self) -> TokenIssuer:
        if self.issuer is None:
            raise RuntimeError("this role signs tokens and needs the private key (auth.private_key_file)")
        return self.issuer
