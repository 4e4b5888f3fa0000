"""Ed25519 access tokens (api signs, notify only verifies) and argon2id password hashing."""

from __future__ import annotations

import asyncio
import base64
import datetime
import hashlib
import hmac
import math
import os
import stat
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TypeVar

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from app.config import AuthConfig, Config

ALGORITHM = "EdDSA"
VERIFIED_TOKENS_KEPT = 50_000
DEV_PRIVATE_KEY = "dev-ed25519-private.pem"
DEV_PUBLIC_KEY = "dev-ed25519-public.pem"

T = TypeVar("T")


class KeyConfigError(Exception):
    """The key configuration cannot be used; the message says what to do."""


@dataclass(frozen=True)
class Identity:
    """Who a valid access token speaks for."""

    user_id: str
    workspace_id: str
    expires_at: float
    # `iat`: a token issued before its user's "tokens valid after" instant no longer counts.
    issued_at: float = 0.0
    # A bot user's token (app.services.bots): never counted online in presence.
    is_bot: bool = False


class InvalidToken(Exception):
    pass


class TokenVerifier:
    """Checks access tokens with the public key only: all the notify role ever holds."""

    def __init__(self, public_key: Ed25519PublicKey, config: AuthConfig):
        self.public_key = public_key
        self.issuer = config.issuer
        self.audience = config.audience
        # Tokens already verified, until they expire: every request of a session and every tab of a
        # user present the same one, and the Ed25519 check is the costliest step of a stream's open.
        self._verified: OrderedDict[str, Identity] = OrderedDict()

    def verify(self, token: str) -> Identity:
        identity = self._verified.get(token)
        if identity is not None:
            if identity.expires_at > time.time():
                return identity
            del self._verified[token]
            raise InvalidToken("the access token has expired")
        identity = self._verify_signed(token)
        self._verified[token] = identity
        if len(self._verified) > VERIFIED_TOKENS_KEPT:
            self._verified.popitem(last=False)
        return identity

    def _verify_signed(self, token: str) -> Identity:
        try:
            claims = jwt.decode(
                token,
                self.public_key,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["sub", "wid", "exp", "iat", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("the access token has expired") from None
        except jwt.PyJWTError:
            raise InvalidToken("the access token is not valid") from None
        if not isinstance(claims["sub"], str) or not isinstance(claims["wid"], str):
            raise InvalidToken("the access token is not valid")
        return Identity(user_id=claims["sub"], workspace_id=claims["wid"], expires_at=float(claims["exp"]),
                        issued_at=float(claims["iat"]), is_bot=claims.get("bot") is True)


class TokenIssuer(TokenVerifier):
    """Signs access tokens; only the api role has the private key."""

    def __init__(self, private_key: Ed25519PrivateKey, config: AuthConfig):
        super().__init__(private_key.public_key(), config)
        self.private_key = private_key
        self.ttl = config.access_token_ttl_seconds

    def issue(self, user_id: str, workspace_id: str, ttl: int | None = None, *, extra: dict | None = None) -> str:
        now = datetime.datetime.now(datetime.timezone.utc)
        claims = {
            "sub": user_id,
            "wid": workspace_id,
            # Milliseconds, not whole seconds: a sign-in just after a logout-all must not fall before it;
            # rounded down, so a token issued just before one never rounds up past it.
            "iat": math.floor(now.timestamp() * 1000) / 1000,
            "exp": now + datetime.timedelta(seconds=self.ttl if ttl is None else ttl),
            "iss": self.issuer,
            "aud": self.audience,
            **(extra or {}),
        }
        return jwt.encode(claims, self.private_key, algorithm=ALGORITHM)

    def url_signer(self, purpose: str) -> "UrlSigner":
        """An HMAC signer for URLs of one purpose, keyed from the private key: every api process agrees."""
        raw = self.private_key.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
        return UrlSigner(hashlib.sha256(b"fechatter url signer\x00" + purpose.encode() + b"\x00" + raw).digest())


class UrlSigner:
    """Signs the parts of a URL (an avatar's user and version), so an <img> can load it without a header:
    only someone the server handed the URL to (a user of that workspace) holds the signature."""

    def __init__(self, key: bytes):
        self._key = key

    def sign(self, *parts: str) -> str:
        digest = hmac.new(self._key, "\x00".join(parts).encode(), hashlib.sha256).digest()[:16]
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def valid(self, signature: str, *parts: str) -> bool:
        return hmac.compare_digest(signature.encode(), self.sign(*parts).encode())


class PasswordHashing:
    """argon2id in a thread, at most `concurrency` at once: a storm of sign-ins queues here instead of
    taking every core from the event loop (argon2 is CPU-bound; more threads than cores only slow all)."""

    def __init__(self, concurrency: int = 0, parallelism: int = 1) -> None:
        base = PasswordHasher()  # the library's recommended cost
        if base.parallelism != parallelism:
            base = type(base)(time_cost=base.time_cost, memory_cost=base.memory_cost, parallelism=parallelism,
                              hash_len=base.hash_len, salt_len=base.salt_len, type=base.type)
        self.hasher = base
        self.concurrency = concurrency or default_hash_concurrency()
        self._slots = asyncio.Semaphore(self.concurrency)
        # Hashes waiting for a slot and running in a thread (for tests and metrics).
        self.waiting = 0
        self.running = 0
        # A real hash to verify against for unknown emails, so both failures take the same time.
        self.dummy_hash = self.hasher.hash("fechatter-timing-equaliser")

    async def _run(self, work: Callable[[], T]) -> T:
        self.waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self.waiting -= 1
        self.running += 1
        try:
            return await asyncio.to_thread(work)
        finally:
            self.running -= 1
            self._slots.release()

    async def hash(self, password: str) -> str:
        return await self._run(lambda: self.hasher.hash(password))

    async def verify(self, password_hash: str | None, password: str) -> bool:
        def check() -> bool:
            try:
                return self.hasher.verify(password_hash or self.dummy_hash, password) and password_hash is not None
            except (VerificationError, InvalidHashError):
                return False

        return await self._run(check)

    def needs_rehash(self, password_hash: str) -> bool:
        """A hash made with other parameters (an older cost, parallelism 4): still valid, replaced at sign-in."""
        try:
            return self.hasher.check_needs_rehash(password_hash)
        except (InvalidHashError, ValueError):
            return False


def default_hash_concurrency() -> int:
    return max(1, (os.cpu_count() or 1) // 2)


def _read_pem(path: str, what: str):
    try:
        data = Path(path).expanduser().read_bytes()
    except OSError as e:
        raise KeyConfigError(f"cannot read auth.{what} {path}: {e.strerror}") from None
    try:
        if what == "private_key_file":
            key = serialization.load_pem_private_key(data, password=None)
            if not isinstance(key, Ed25519PrivateKey):
                raise ValueError
        else:
            key = serialization.load_pem_public_key(data)
            if not isinstance(key, Ed25519PublicKey):
                raise ValueError
    except ValueError:
        raise KeyConfigError(f"auth.{what} {path} is not an Ed25519 PEM key") from None
    return key


def _generate_dev_keys(config: Config) -> tuple[Path, Path]:
    directory = config.data_path()
    directory.mkdir(parents=True, exist_ok=True)
    private_path, public_path = directory / DEV_PRIVATE_KEY, directory / DEV_PUBLIC_KEY
    if not private_path.exists():
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        public_path.write_bytes(
            key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )
    return private_path, public_path


def _key_path(config: Config, field: str, *, development: bool, role: str, what: str) -> str:
    """The configured key file, or (development only) the generated one; production refuses dev keys."""
    path = getattr(config.auth, field)
    if not path:
        if not development:
            raise KeyConfigError(f"the {role} role needs auth.{field} (FECHATTER_AUTH_{field.upper()}): {what}")
        private, public = _generate_dev_keys(config)
        return str(private if field == "private_key_file" else public)
    if not development and Path(path).name in (DEV_PRIVATE_KEY, DEV_PUBLIC_KEY):
        raise KeyConfigError(f"auth.{field} {path} is a development key; generate a production key")
    return path


def load_issuer(config: Config, *, development: bool) -> TokenIssuer:
    """The api's signer. Development (--role=all) makes a key pair under data_dir when none is set."""
    path = _key_path(config, "private_key_file", development=development, role="api",
                     what="an Ed25519 PEM key, e.g. from `openssl genpkey -algorithm ed25519`")
    if not development:
        file = Path(path).expanduser()
        if file.exists() and file.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise KeyConfigError(f"auth.private_key_file {path} is readable by others; chmod 600 it")
    return TokenIssuer(_read_pem(path, "private_key_file"), config.auth)


def load_verifier(config: Config, *, development: bool) -> TokenVerifier:
    """The notify role's checker: the public key only."""
    path = _key_path(config, "public_key_file", development=development, role="notify",
                     what="the Ed25519 public key matching the api's private key")
    return TokenVerifier(_read_pem(path, "public_key_file"), config.auth)
