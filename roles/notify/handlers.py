"""The notify role's JSON routes and the base they share with the stream: CORS and tokens in the URL."""

from __future__ import annotations

from urllib.parse import urlsplit

from app.web import BaseHandler, authenticated

PREFLIGHT_MAX_AGE = 600


def allowed_origins(config, request_host: str) -> set[str]:
    """notify.cors_origins, or else the api's origin on this host and the loopback names of it."""
    if config.notify.cors_origins:
        return {origin.rstrip("/") for origin in config.notify.cors_origins}
    port = config.api.port
    try:
        hostname = urlsplit(f"//{request_host}").hostname or "127.0.0.1"
    except ValueError:  # a Host no URL can hold (`[::1`): it runs in __init__, where a raise is no answer at all
        hostname = "127.0.0.1"
    hosts = {hostname, "localhost", "127.0.0.1", "[::1]"}
    if ":" in hostname:
        hosts.add(f"[{hostname}]")
    origins = set()
    for host in hosts:
        for scheme, default_port in (("http", 80), ("https", 443)):
            origins.add(f"{scheme}://{host}:{port}")
            if port == default_port:
                origins.add(f"{scheme}://{host}")
    return origins


class NotifyHandler(BaseHandler):
    """Answers browsers of the api's origin (CORS) and takes `?access_token=`, as EventSource sends no headers."""

    max_body_bytes = 0  # no notify route takes a body: one is refused before it is read

    def set_default_headers(self) -> None:
        super().set_default_headers()
        origin = self.request.headers.get("Origin")
        if origin:
            self.set_header("Vary", "Origin")
            allowed = allowed_origins(self.settings["config"], self.request.host or "")
            if "*" in allowed or origin.rstrip("/") in allowed:
                self.set_header("Access-Control-Allow-Origin", origin)
                self.set_header("Access-Control-Expose-Headers", "Retry-After")

    def options(self, *args, **kwargs) -> None:
        """CORS preflight: a cross-origin GET with an Authorization or Last-Event-ID header."""
        self.set_header("Access-Control-Allow-Methods", "GET, OPTIONS")
        self.set_header("Access-Control-Allow-Headers", "Authorization, Last-Event-ID, Cache-Control, Content-Type")
        self.set_header("Access-Control-Max-Age", str(PREFLIGHT_MAX_AGE))
        self.no_content()

    def request_token(self) -> str | None:
        return self.bearer_token() or self.get_query_argument("access_token", None)


class OnlineUsersHandler(NotifyHandler):
    """Who is online, only within what the caller may see (app.services.online)."""

    @authenticated
    async def get(self) -> None:
        users = await self.application.online.visible_to(
            self.current_user,
            chat_id=self.get_query_argument("chat_id", None),
            workspace_id=self.get_query_argument("workspace_id", None),
        )
        self.write_json({"users": users})


class SseHealthHandler(NotifyHandler):
    def get(self) -> None:
        local = self.application.registry.describe()
        # Users online anywhere in the cluster (so every process agrees with online-users); the
        # connection and chat counts are this process's.
        local["connected_users"] = len(self.application.presence.online_users())
        self.write_json({"status": "healthy", "service": "notify", "transport": "sse", **local})
