"""Fechatter's command line and composition root: builds every client once, hands them to each role as one Deps."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import signal
import sys
from contextlib import AsyncExitStack

from tornado.httpserver import HTTPServer

from app import logging_setup
from app.auth import KeyConfigError, TokenVerifier, load_issuer, load_verifier
from app.config import Config, ConfigError, load_config
from app.deps import Deps
from app.embedded import EmbeddedServerError, EmbeddedStack
from app.events import EventBus, connect_nats, when_available
from app.metrics import Metrics
from app.processes import supervise
from app.services.demo import seed_demo as seed
from app.services.export import run_command as run_data
from app.services.migrations import migrate
from app.store import Store, make_client, startup_timeout
from app.web import RoleApp
from roles.api import make_app as make_api_app
from roles.api.files import MULTIPART_OVERHEAD
from roles.notify import make_app as make_notify_app
from roles.worker import make_app as make_worker_app

log = logging.getLogger("fechatter")

ROLES = ("api", "notify", "worker", "all")
# `main.py export|import ...`: subcommands beside --role (app.services.export).
DATA_COMMANDS = ("export", "import")
EMBEDDED = "embedded"
# Streams are closed on SIGTERM; in-flight API requests get this long to finish.
SHUTDOWN_GRACE_SECONDS = 5.0
# With --processes: how long a worker gets after SIGTERM before SIGKILL (its grace, then closing its clients).
WORKER_STOP_SECONDS = SHUTDOWN_GRACE_SECONDS + 10.0

DESCRIPTION = """\
Fechatter, a team chat server.

roles:
  api     the stateless HTTP API (default port 6688): stores in MongoDB, publishes
          one event per change to NATS JetStream; run as many as you like.
  notify  the Server-Sent Events role (default port 6687): consumes the events and
          pushes each to the online members of its chat; answers who is online.
  worker  delivers events to outgoing webhooks from a durable JetStream consumer
          shared by every worker (health and metrics on worker.port, 6689).
  all     api, notify and worker in one process; with mongo.uri / nats.url set to "embedded" (the
          defaults) it also starts nats-server and nx-27017 under data_dir.

data (no --role): main.py export --workspace ID --out FILE | main.py import --in FILE
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="main.py", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--role", choices=ROLES, required=True, help="which role this process takes")
    parser.add_argument("--config", help="a YAML file overriding config.yaml (env FECHATTER_* overrides both)")
    parser.add_argument("--port", type=int, help="the port to listen on (with --role=all: the api's)")
    parser.add_argument(
        "--processes", type=int, metavar="N",
        help="api/notify: N worker processes sharing the port (SO_REUSEPORT), supervised by this one "
             "(default api.processes / notify.processes)",
    )
    parser.add_argument(
        "--seed-demo", action="store_true",
        help="with --role=all: create a demo workspace with three users (if missing) and print their sign-ins",
    )
    return parser.parse_args(argv)


class Fatal(Exception):
    """Start-up cannot go on; the message tells the operator what to fix."""


def tune_gc() -> None:
    """Once started, what exists lives for the process: keep the collector off it.

    A fan-out allocates a future per stream per event; with the default thresholds the collector ran
    every 700 of them and kept re-scanning the long-lived heap. Measured with bench.sse_fanout at
    2,000 streams: fan-out p99 121–166 ms instead of 181–229 ms, and less CPU per delivery.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


def make_http_server(app: RoleApp, config: Config) -> HTTPServer:
    """The server of a role, not yet listening. Each route sets its own body limit and timeout on the
    headers (BaseHandler.prepare); these are the backstops: the largest body any route takes (an
    upload), and the default time a body may take."""
    max_body = max(config.api.max_body_bytes, config.files.max_bytes + MULTIPART_OVERHEAD)
    return HTTPServer(
        app, xheaders=config.api.xheaders, max_body_size=max_body,
        body_timeout=max(config.api.body_timeout_seconds, config.files.body_timeout_seconds),
        idle_connection_timeout=75,
    )


def _http_server(app: RoleApp, config: Config, port: int, host: str, reuse_port: bool = False) -> HTTPServer:
    server = make_http_server(app, config)
    # reuse_port: every worker binds the port itself and the kernel spreads connections among them.
    server.listen(port, address=host, reuse_port=reuse_port)
    return server


async def build_deps(role: str, config: Config, resources: AsyncExitStack) -> Deps:
    """Every client a role uses, made once here; `resources` closes them in reverse order at shutdown."""
    development = role == "all"
    mongo_uri, nats_url = config.mongo.uri, config.nats.url
    if EMBEDDED in (mongo_uri, nats_url):
        if not development:
            raise Fatal(
                f"--role={role} needs a real MongoDB and NATS: set mongo.uri / nats.url "
                "(FECHATTER_MONGO_URI, FECHATTER_NATS_URL); 'embedded' is for --role=all"
            )
        stack = EmbeddedStack(config.data_path(), nats=nats_url == EMBEDDED, mongo=mongo_uri == EMBEDDED)
        resources.push_async_callback(stack.stop)
        await stack.start()
        mongo_uri = stack.mongo_uri if mongo_uri == EMBEDDED else mongo_uri
        nats_url = stack.nats_url if nats_url == EMBEDDED else nats_url
        log.info("embedded stack: mongo %s, nats %s", mongo_uri, nats_url)

    # Keys before MongoDB and NATS: a missing or unsafe key is the operator's first thing to fix.
    issuer = load_issuer(config, development=development) if role in ("api", "all") else None
    # An issuer verifies too: --role=all shares one key and one cache of verified tokens.
    verifier: TokenVerifier = issuer if issuer is not None else load_verifier(config, development=False)

    store = await open_store(resources, mongo_uri, config)
    if role in ("api", "all"):
        # Before the api serves: counters for chats and memberships written before they were kept.
        with startup_timeout():
            await migrate(store)
    try:
        nc = await connect_nats(nats_url, name=f"fechatter-{role}")
    except ConnectionError as e:
        raise Fatal(str(e)) from None
    bus = EventBus(nc, config.nats)
    resources.push_async_callback(bus.close)
    await when_available(bus.ensure_stream, "event stream")
    return Deps(config=config, store=store, bus=bus, metrics=Metrics(), verifier=verifier, issuer=issuer)


async def open_store(resources: AsyncExitStack, mongo_uri: str, config: Config) -> Store:
    """The store on its own client (closed with resources), its indexes made; unreachable is Fatal."""
    client = make_client(mongo_uri, config.mongo.timeout_ms)
    resources.push_async_callback(client.close)
    store = Store(client, config.mongo.database)
    try:
        await store.ensure_indexes()
    except Exception as e:  # noqa: BLE001 - any failure here is a start-up failure
        raise Fatal(f"cannot reach MongoDB at {mongo_uri}: {e}") from None
    return store


async def serve(
    role: str, deps: Deps, port: int | None, seed_demo: bool, reuse_port: bool
) -> list[tuple[RoleApp, HTTPServer]]:
    """Each role's application from the one Deps, listening; the api's demo people exist before it listens."""
    config = deps.config
    apps: list[tuple[RoleApp, HTTPServer]] = []
    if role in ("api", "all"):
        api = make_api_app(deps)
        api_port = port or config.api.port
        if seed_demo and role == "all":
            # Before listening, so nobody can sign in before the demo people exist.
            credentials = await seed(api.settings["services"])
            lines = "\n".join(f"    {email}  /  {password}" for email, password in credentials)
            print(f"\nFechatter demo: http://{config.api.host}:{api_port}/ — sign in as\n{lines}\n", flush=True)
        apps.append((api, _http_server(api, config, api_port, config.api.host, reuse_port)))
        log.info("api listening on http://%s:%d/", config.api.host, api_port)
    if role in ("notify", "all"):
        notify = make_notify_app(deps)
        notify_port = (port if role == "notify" else None) or config.notify.port
        apps.append((notify, _http_server(notify, config, notify_port, config.notify.host, reuse_port)))
        log.info("notify listening on http://%s:%d/", config.notify.host, notify_port)
    if role in ("worker", "all"):
        worker = make_worker_app(deps)
        worker_port = (port if role == "worker" else None) or config.worker.port
        apps.append((worker, _http_server(worker, config, worker_port, config.worker.host, reuse_port)))
        log.info("worker answering health on http://%s:%d/", config.worker.host, worker_port)
    return apps


async def run(role: str, config: Config, port: int | None, seed_demo: bool = False, reuse_port: bool = False) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    async with AsyncExitStack() as resources:
        deps = await build_deps(role, config, resources)
        apps = await serve(role, deps, port, seed_demo, reuse_port)
        for app, _ in apps:
            await app.start()
        tune_gc()

        await stop.wait()
        log.info("shutting down")
        for _, server in apps:
            server.stop()  # stop accepting; open connections go on for now
        for app, _ in apps:
            await app.stop()  # the notify role closes its streams here; clients resume elsewhere
        for _, server in apps:
            try:
                await asyncio.wait_for(server.close_all_connections(), SHUTDOWN_GRACE_SECONDS)
            except asyncio.TimeoutError:
                log.warning("connections still open after %.0fs; closing anyway", SHUTDOWN_GRACE_SECONDS)
    # Leaving the stack closed NATS, then MongoDB, then stopped the embedded servers.
    log.info("stopped")
    return 0


def configure_logging(level: str, log_format: str = "text") -> None:
    logging_setup.configure(level, log_format)  # text or JSON lines, through logsafe's filter either way


def configured(path: str | None) -> Config | None:
    """The config, with logging set up from it; None (said on stderr) when it is invalid."""
    try:
        config = load_config(path)
    except ConfigError as e:
        print(f"fechatter: {e}", file=sys.stderr)
        return None
    configure_logging(config.log_level, config.log_format)
    return config


def parse_data_args(argv: list[str]) -> argparse.Namespace:
    """`main.py export --workspace ID --out FILE` and `main.py import --in FILE` (app.services.export)."""
    parser = argparse.ArgumentParser(prog="main.py", description="Export a workspace as NDJSON, or import one.")
    commands = parser.add_subparsers(dest="command", required=True)
    export = commands.add_parser("export", help="write a workspace's NDJSON lines to a file")
    export.add_argument("--workspace", required=True, metavar="ID", help="the workspace's id")
    export.add_argument("--out", required=True, metavar="FILE", help="where to write the lines")
    load = commands.add_parser("import", help="load an export into an empty database")
    load.add_argument("--in", dest="path", required=True, metavar="FILE", help="the export to load")
    for command in (export, load):
        command.add_argument("--config", help="a YAML file overriding config.yaml (env FECHATTER_* overrides both)")
    return parser.parse_args(argv)


async def run_data_command(args: argparse.Namespace, config: Config) -> int:
    """The database of config (mongo.uri "embedded": the one under data_dir, started for this command)."""
    async with AsyncExitStack() as resources:
        mongo_uri = config.mongo.uri
        if mongo_uri == EMBEDDED:
            stack = EmbeddedStack(config.data_path(), nats=False, mongo=True)
            resources.push_async_callback(stack.stop)
            await stack.start()
            mongo_uri = stack.mongo_uri
        store = await open_store(resources, mongo_uri, config)
        return await run_data(args.command, store, workspace_id=getattr(args, "workspace", None),
                              path=args.out if args.command == "export" else args.path)


def data_main(argv: list[str]) -> int:
    args = parse_data_args(argv)
    config = configured(args.config)
    if config is None:
        return 2
    try:
        return asyncio.run(run_data_command(args, config))
    except (Fatal, EmbeddedServerError, OSError) as e:
        print(f"fechatter: {e}", file=sys.stderr)
        return 1


def main(argv: list[str] | None = None) -> int:
    given = sys.argv[1:] if argv is None else argv
    if given and given[0] in DATA_COMMANDS:
        return data_main(given)
    args = parse_args(argv)
    config = configured(args.config)
    if config is None:
        return 2
    processes = args.processes or {"api": config.api.processes, "notify": config.notify.processes}.get(args.role, 1)
    if processes < 1:
        print("fechatter: --processes must be at least 1", file=sys.stderr)
        return 2
    if processes > 1 and args.role == "all":
        print("fechatter: --processes is for --role=api or --role=notify; --role=all runs one process",
              file=sys.stderr)
        return 2

    def worker() -> int:
        try:
            return asyncio.run(run(args.role, config, args.port, args.seed_demo, reuse_port=processes > 1))
        except (Fatal, KeyConfigError, EmbeddedServerError, OSError) as e:
            print(f"fechatter: {e}", file=sys.stderr)
            return 1

    if processes > 1:
        return supervise(processes, worker, stop_seconds=WORKER_STOP_SECONDS)
    return worker()


if __name__ == "__main__":
    sys.exit(main())
