"""`main.py --role=api|notify` as real child processes on a test's own servers, database and stream."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from app.embedded import free_port
from tests.helpers import wait_for

ROOT = Path(__file__).resolve().parent.parent.parent
ARTIFACTS = ROOT / "test-artifacts"


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
    }
    env.update(extra)
    return env


class RoleProcess:
    """One role in its own process; its output goes to a log file beside the test's data."""

    def __init__(self, role: str, config, *, port: int | None = None, **env: str):
        self.role = role
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **role_env(config, **env)}
        self.log_path = Path(config.data_dir) / f"{role}-{self.port}.log"
        self.process: subprocess.Popen | None = None

    def _spawn(self) -> None:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "main.py", f"--role={self.role}", f"--port={self.port}"],
                cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )

    def _healthy(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"{self.role} exited with {self.process.returncode}:\n{self.log_tail()}")
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=1) as reply:
                return reply.status == 200
        except OSError:
            return False

    async def start(self, timeout: float = 30) -> "RoleProcess":
        self._spawn()
        await wait_for(lambda: asyncio.to_thread(self._healthy), timeout=timeout, interval=0.05,
                       message=f"{self.role} process healthy")
        return self

    def start_blocking(self, timeout: float = 30) -> "RoleProcess":
        self._spawn()
        deadline = time.monotonic() + timeout
        while not self._healthy():
            assert time.monotonic() < deadline, f"{self.role} not healthy in {timeout}s:\n{self.log_tail()}"
            time.sleep(0.05)
        return self

    def sigkill(self) -> None:
        """A crash: no shutdown code runs."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self, timeout: float = 15) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
            return None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def record(scenario: str, **counts) -> None:
    """One line per fault scenario on stdout (pytest -s) and in test-artifacts/faults.json for the report."""
    print(f"\nFAULTS {scenario}: " + ", ".join(f"{k}={v}" for k, v in counts.items()), flush=True)
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / "faults.json"
    try:
        results = json.loads(path.read_text())
    except (OSError, ValueError):
        results = {}
    results[scenario] = {**counts, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    path.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
