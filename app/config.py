"""Configuration: config.yaml holds every default, FECHATTER_<SECTION>_<KEY> overrides, checked at start."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Mapping

import msgspec
import yaml
from msgspec import Meta

DEFAULT_CONFIG_FILE = Path(__file__).resolve().parent.parent / "config.yaml"
if not DEFAULT_CONFIG_FILE.is_file():  # installed by `pip install .`: the fechatter package's copy
    DEFAULT_CONFIG_FILE = DEFAULT_CONFIG_FILE.parent / "fechatter" / "config.yaml"
ENV_PREFIX = "FECHATTER_"

# Bounds msgspec checks with the types (its error names the key: `api.processes: Expected int >= 1`).
AtLeastOne = Annotated[int, Meta(ge=1)]
AtLeastZero = Annotated[int, Meta(ge=0)]
# A rate limit: requests per window (of one user, address or account); 0 turns that one limit off.
RateLimit = AtLeastZero
Positive = Annotated[float, Meta(gt=0)]


class Section(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A config section: unknown keys are an error, so a typo never passes silently."""


class ApiConfig(Section):
    host: str
    port: int
    xheaders: bool
    max_body_bytes: int
    body_timeout_seconds: Positive
    public_notify_url: str
    processes: AtLeastOne
    outbox_interval_seconds: float
    outbox_grace_seconds: float


class NotifyConfig(Section):
    host: str
    port: int
    replay_window_seconds: float
    replay_max_events: int
    keepalive_seconds: float
    retry_ms: int
    max_pending_bytes: int
    cors_origins: list[str]
    processes: AtLeastOne
    presence_ttl_seconds: AtLeastOne  # NATS message TTLs are whole seconds
    presence_offline_grace_seconds: Annotated[float, Meta(ge=0)]
    replay_ephemeral_events: int
    presence_max_members: int = 500  # larger chats get no per-user presence pushes


class MongoConfig(Section):
    uri: str
    database: str
    timeout_ms: int


class NatsConfig(Section):
    url: str
    stream: str
    subject_prefix: str
    stream_max_age_seconds: float
    duplicate_window_seconds: float
    publish_timeout_seconds: float
    replicas: int
    # Idle heartbeat of the notify consumer and the presence watch: a dead node is noticed in about two.
    heartbeat_seconds: Positive = 0.5
    # A consumer that has heard nothing (no event, no heartbeat) this long is reported by /health/ready.
    stall_seconds: Positive = 10.0


class AuthConfig(Section):
    private_key_file: str
    public_key_file: str
    issuer: str
    audience: str
    access_token_ttl_seconds: int
    refresh_token_ttl_seconds: int
    password_hash_concurrency: AtLeastZero  # 0: auto
    password_hash_parallelism: AtLeastOne
    session_cache_seconds: float


class FilesConfig(Section):
    max_bytes: int
    body_timeout_seconds: Positive
    # How long a signed file or thumbnail URL works without a token (app.file_links), rounded up to half of it.
    url_ttl_seconds: Positive = 3600


class LimitsConfig(Section):
    enabled: bool
    signin_per_minute_per_ip: RateLimit
    signin_per_minute_per_account: RateLimit
    signin_per_minute_per_account_per_ip: RateLimit
    signup_per_hour_per_ip: RateLimit
    messages_per_minute_per_user: RateLimit
    streams_per_user: int
    typing_per_10_seconds_per_user: RateLimit
    stream_opens_per_minute_per_user: RateLimit
    uploads_per_minute_per_user: RateLimit
    chats_per_hour_per_user: RateLimit
    edits_per_minute_per_user: RateLimit
    deletes_per_minute_per_user: RateLimit
    member_adds_per_minute_per_user: RateLimit
    reads_per_minute_per_user: RateLimit
    chat_updates_per_minute_per_user: RateLimit
    searches_per_minute_per_user: RateLimit
    reactions_per_minute_per_user: RateLimit
    pins_per_minute_per_user: RateLimit
    upload_quota_bytes_per_user: int
    search_query_max_chars: int


class WebhooksConfig(Section):
    """Outgoing webhooks (app.netguard, app.services.webhooks_out)."""

    allowed_hosts: list[str]
    connect_timeout_seconds: Positive
    request_timeout_seconds: Positive
    max_response_bytes: AtLeastOne
    backoff_base_seconds: Positive
    backoff_max_seconds: Positive
    retry_for_seconds: Positive
    lease_seconds: Positive


class WorkerConfig(Section):
    host: str
    port: int
    ack_wait_seconds: Positive
    batch: AtLeastOne
    poll_seconds: Positive


class Config(Section):
    data_dir: str
    log_level: str
    log_format: Literal["text", "json"]
    api: ApiConfig
    notify: NotifyConfig
    mongo: MongoConfig
    nats: NatsConfig
    auth: AuthConfig
    files: FilesConfig
    limits: LimitsConfig
    webhooks: WebhooksConfig
    worker: WorkerConfig

    def data_path(self, *parts: str) -> Path:
        return Path(self.data_dir).expanduser().resolve().joinpath(*parts)


class ConfigError(Exception):
    """The configuration cannot be used; the message names the key and the source."""


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML: {e}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {path} must be a mapping of sections")
    return loaded


def _merge(base: dict[str, Any], override: Mapping[str, Any], source: str, path: str = "") -> None:
    for key, value in override.items():
        if key not in base:
            raise ConfigError(f"unknown config key {path}{key!s} in {source}")
        if isinstance(base[key], dict):
            if not isinstance(value, dict):
                raise ConfigError(f"config key {path}{key} in {source} must be a mapping")
            _merge(base[key], value, source, f"{path}{key}.")
        else:
            base[key] = value


def _env_overrides(raw: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """Map FECHATTER_<SECTION>_<KEY> onto the known keys; names that match no key are not ours."""
    overrides: dict[str, Any] = {}
    known: dict[str, tuple[str, ...]] = {}
    for key, value in raw.items():
        if isinstance(value, dict):
            for sub in value:
                known[f"{key}_{sub}".upper()] = (key, sub)
        else:
            known[key.upper()] = (key,)
    for name, text in env.items():
        if not name.startswith(ENV_PREFIX):
            continue
        target = known.get(name[len(ENV_PREFIX):])
        if target is None:
            continue
        try:
            # YAML scalars, so FECHATTER_LIMITS_ENABLED=false is a bool and ports are ints.
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError:
            value = text
        if isinstance(raw_value := _lookup(raw, target), str) and not isinstance(value, str):
            value = text
        elif isinstance(raw_value, list) and isinstance(value, str):
            value = [item for item in re.split(r"[,\s]+", value) if item]
        node = overrides
        for part in target[:-1]:
            node = node.setdefault(part, {})
        node[target[-1]] = value
    return overrides


def _lookup(raw: dict[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = raw
    for part in path:
        node = node[part]
    return node


def load_config(
    path: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Defaults from config.yaml, then the file given, then the environment, then explicit overrides."""
    env = os.environ if env is None else env
    raw = _read_yaml(DEFAULT_CONFIG_FILE)
    if path is not None and Path(path).resolve() != DEFAULT_CONFIG_FILE:
        _merge(raw, _read_yaml(Path(path)), str(path))
    _merge(raw, _env_overrides(raw, env), "the environment")
    if overrides:
        _merge(raw, overrides, "overrides")
    try:
        config = msgspec.convert(raw, Config)
    except msgspec.ValidationError as e:
        raise ConfigError(f"invalid configuration: {_describe(e)}") from None
    if config.nats.stream_max_age_seconds <= config.notify.replay_window_seconds:
        raise ConfigError("nats.stream_max_age_seconds must exceed notify.replay_window_seconds")
    return config


def _describe(error: msgspec.ValidationError) -> str:
    """msgspec says `... - at `$.api.port``; turn the path into the dotted key a person edits."""
    text = str(error)
    match = re.search(r" - at `\$\.?([^`]*)`$", text)
    if not match:
        return text
    return f"{match.group(1) or 'top level'}: {text[: match.start()].replace('`', '')}"
