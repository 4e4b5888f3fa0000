"""`main.py --role=api|notify` as real child processes on a test's own servers, database and stream."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from app.processes import free_port
from tests.support.api import Api, wait_for

ROOT = Path(__file__).resolve().parent.parent
CHEAP_ARGON2 = ROOT / "tests" / "support" / "cheap_argon2"


def role_env(config, **extra: str) -> dict[str, str]:
    """The environment that points a role at the config's MongoDB, database, NATS, stream and keys."""
    env = {
        "FECHATTER_DATA_DIR": config.data_dir,
        "FECHATTER_LOG_LEVEL": "warning",
        "FECHATTER_MONGO_URI": config.mongo.uri,
        "FECHATTER_MONGO_DATABASE": config.mongo.database,
        "FECHATTER_MONGO_TIMEOUT_MS": str(config.mongo.timeout_ms),
        "FECHATTER_NATS_URL": config.nats.url,
        "FECHATTER_NATS_STREAM": config.nats.stream,
        "FECHATTER_NATS_SUBJECT_PREFIX": config.nats.subject_prefix,
        "FECHATTER_AUTH_PRIVATE_KEY_FILE": config.auth.private_key_file,
        "FECHATTER_AUTH_PUBLIC_KEY_FILE": config.auth.public_key_file,
        "FECHATTER_LIMITS_ENABLED": "false",
        # argon2 at its lowest cost, as in-process tests have it (tests/support/cheap_argon2/sitecustomize.py):
        # the library's cost is ~0.25 s of CPU a sign-up. FECHATTER_TEST_CHEAP_PASSWORDS=0 keeps the real cost.
        "FECHATTER_TEST_CHEAP_PASSWORDS": os.environ.get("FECHATTER_TEST_CHEAP_PASSWORDS", "1"),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(CHEAP_ARGON2), os.environ.get("PYTHONPATH")])),
    }
    env.update(extra)
    return env


class RoleProcess:
    """One role in its own process, as operators run it; its output goes to a log file (by default beside the test's data)."""

    def __init__(self, role: str, config, *, port: int | None = None, args: tuple[str, ...] = (),
                 ready_path: str = "/health", log_path: Path | None = None, **env: str):
        self.role = role
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = args
        self.ready_path = ready_path
        self.env = {**os.environ, **role_env(config, **env)}
        self.log_path = log_path or Path(config.data_dir) / f"{role}-{self.port}.log"
        self.process: subprocess.Popen | None = None

    @property
    def api(self) -> Api:
        return Api(self.url)

    def _spawn(self) -> None:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "main.py", f"--role={self.role}", f"--port={self.port}", *self.args],
                cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )

    def _healthy(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"{self.role} exited with {self.process.returncode}:\n{self.log_tail()}")
        try:
            with urllib.request.urlopen(f"{self.url}{self.ready_path}", timeout=2) as reply:
                return reply.status == 200
        except OSError:
            return False

    async def start(self, timeout: float = 30) -> "RoleProcess":
        self._spawn()
        await wait_for(lambda: asyncio.to_thread(self._healthy), timeout=timeout, interval=0.05,
                       message=f"{self.role} on {self.port}: {self.ready_path} answering 200")
        return self

    def start_blocking(self, timeout: float = 30) -> "RoleProcess":
        self._spawn()
        deadline = time.monotonic() + timeout
        while not self._healthy():
            assert time.monotonic() < deadline, f"{self.role} not healthy in {timeout}s:\n{self.log_tail()}"
            time.sleep(0.05)
        return self

    async def wait(self, timeout: float | None = None) -> int:
        """The exit code, once the process has ended (subprocess.TimeoutExpired after timeout)."""
        return await asyncio.to_thread(self.process.wait, timeout)

    def sigkill(self) -> None:
        """A crash: no shutdown code runs."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 15) -> int | None:
        """Send signum and return the exit code; a process that ignores it is killed and fails the test."""
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signum)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
            raise AssertionError(f"{self.role} ignored signal {signum}:\n{self.log_tail()}") from None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@pytest.fixture
def role_processes():
    """`await role_processes(role, config, **options)` -> a started RoleProcess; every one is SIGKILLed afterwards."""
    started: list[RoleProcess] = []

    async def start(role: str, config, **options) -> RoleProcess:
        process = RoleProcess(role, config, **options)
        started.append(process)
        return await process.start()

    yield start
    for process in started:
        process.sigkill()
