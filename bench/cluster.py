"""`make cluster`: a 3-node NATS cluster, nx-27017, 2 api, 2 notify and haproxy on this machine; Ctrl-C stops all."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HAPROXY_CFG = ROOT / "docs" / "deploy" / "haproxy.cfg"
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
HOST = "127.0.0.1"


def render_haproxy_config(bind: str, api: list[str], notify: list[str], *, stats_bind: str | None = None,
                          source: Path = HAPROXY_CFG) -> str:
    """docs/deploy/haproxy.cfg with its `bind` line and `server` addresses replaced; nothing else changes.

    `stats_bind` adds a stats page (`/stats;csv`) so a caller can see which servers haproxy counts as up.
    """
    text = source.read_text()
    text, binds = re.subn(r"(?m)^(\s*)bind .*$", lambda m: f"{m.group(1)}bind {bind}", text)
    if binds != 1:
        raise ValueError(f"{source}: expected one bind line, found {binds}")
    pools = {"api": list(api), "notify": list(notify)}
    pattern = re.compile(r"(?m)^(\s*server (api|notify)-(\d+)) \S+")
    seen = {"api": 0, "notify": 0}
    for m in pattern.finditer(text):
        seen[m.group(2)] += 1
    if seen != {k: len(v) for k, v in pools.items()}:
        raise ValueError(f"{source} has servers {seen}; given {pools}")
    text = pattern.sub(lambda m: f"{m.group(1)} {pools[m.group(2)][int(m.group(3)) - 1]}", text)
    if stats_bind:
        text += f"\nfrontend stats\n    bind {stats_bind}\n    stats enable\n    stats uri /stats\n"
    return text


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class HAProxy:
    """Debian's haproxy in the foreground, on a config rendered from docs/deploy/haproxy.cfg."""

    def __init__(self, directory: Path, api: list[str], notify: list[str], port: int | None = None):
        self.directory = Path(directory)
        self.port = port or free_port()
        self.stats_port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.config_path = self.directory / "haproxy.cfg"
        self.log_path = self.directory / "haproxy.log"
        self.config_path.write_text(render_haproxy_config(f"{HOST}:{self.port}", api, notify,
                                                          stats_bind=f"{HOST}:{self.stats_port}"))
        self.process: subprocess.Popen | None = None

    def check(self) -> None:
        result = subprocess.run([HAPROXY, "-c", "-q", "-f", str(self.config_path)], capture_output=True, text=True)
        assert result.returncode == 0, f"haproxy -c failed:\n{result.stdout}{result.stderr}"

    def start(self) -> "HAProxy":
        self.check()
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen([HAPROXY, "-db", "-f", str(self.config_path)],
                                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        return self

    def servers(self) -> dict[str, str]:
        """"backend/server" -> status (UP, DOWN, ...), from the stats page; {} while it is not answering."""
        try:
            with urllib.request.urlopen(f"http://{HOST}:{self.stats_port}/stats;csv", timeout=2) as reply:
                lines = reply.read().decode().splitlines()
        except OSError:
            return {}
        header = lines[0].lstrip("# ").split(",")
        status = {}
        for line in lines[1:]:
            row = dict(zip(header, line.split(",")))
            if row.get("svname") not in ("FRONTEND", "BACKEND", None):
                status[f"{row['pxname']}/{row['svname']}"] = row["status"]
        return status

    def up(self, *names: str) -> bool:
        servers = self.servers()
        return bool(servers) and all(servers.get(name, "").startswith("UP") for name in names)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


# -- `make cluster` --------------------------------------------------------------------------------

def _nats_node(binary: str, directory: Path, index: int, client: int, routes: list[int]) -> list[str]:
    directory.mkdir(parents=True, exist_ok=True)
    return [binary, "--addr", HOST, "--port", str(client), "--server_name", f"n{index}", "--jetstream",
            "--store_dir", str(directory), "--cluster_name", "fechatter", "--cluster", f"nats://{HOST}:{routes[index]}",
            "--routes", ",".join(f"nats://{HOST}:{p}" for i, p in enumerate(routes) if i != index),
            "--log", str(directory / "nats-server.log")]


def _key_pair(directory: Path) -> tuple[Path, Path]:
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: PLC0415

    directory.mkdir(parents=True, exist_ok=True)
    private, public = directory / "private.pem", directory / "public.pem"
    if not private.exists():
        key = Ed25519PrivateKey.generate()
        private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()))
        private.chmod(0o600)
        public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                         serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public


def _wait_ready(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{url}: process exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)  # polling a child's readiness with a deadline
    raise SystemExit(f"{url} not ready in {timeout:.0f}s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8080, help="haproxy's public port (default 8080)")
    parser.add_argument("--dir", type=Path, default=None, help="where data and logs go (default: a temp dir)")
    args = parser.parse_args(argv)

    from app.embedded import MongoWireServer, nats_server_binary  # noqa: PLC0415 - only for `make cluster`

    workdir = args.dir or Path(tempfile.mkdtemp(prefix="fechatter-cluster-"))
    workdir.mkdir(parents=True, exist_ok=True)
    children: list[tuple[str, subprocess.Popen]] = []
    haproxy: HAProxy | None = None

    def spawn(name: str, command: list[str], env: dict | None = None) -> subprocess.Popen:
        log = open(workdir / f"{name}.log", "ab")
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        children.append((name, proc))
        return proc

    try:
        clients, routes = [free_port() for _ in range(3)], [free_port() for _ in range(3)]
        binary = nats_server_binary()
        for i in range(3):
            spawn(f"nats-{i + 1}", _nats_node(binary, workdir / f"nats-{i + 1}", i, clients[i], routes))
        mongo_port = free_port()
        mongo = MongoWireServer(workdir / "mongo", port=mongo_port)
        (workdir / "mongo").mkdir(exist_ok=True)
        spawn("nx-27017", mongo._command())
        nats_url = ",".join(f"nats://{HOST}:{p}" for p in clients)
        private, public = _key_pair(workdir / "keys")
        env = {**os.environ, "FECHATTER_DATA_DIR": str(workdir / "data"), "FECHATTER_NATS_URL": nats_url,
               "FECHATTER_NATS_REPLICAS": "3", "FECHATTER_MONGO_URI": mongo.uri,
               "FECHATTER_AUTH_PRIVATE_KEY_FILE": str(private), "FECHATTER_AUTH_PUBLIC_KEY_FILE": str(public),
               # One origin: the page opens its stream through haproxy too.
               "FECHATTER_API_PUBLIC_NOTIFY_URL": f"http://{HOST}:{args.port}"}
        ports = {"api": [free_port(), free_port()], "notify": [free_port(), free_port()]}
        for role in ("api", "notify"):
            for i, port in enumerate(ports[role]):
                proc = spawn(f"{role}-{i + 1}", [sys.executable, "main.py", f"--role={role}", f"--port={port}"], env)
                _wait_ready(f"http://{HOST}:{port}/health/ready", proc)
        haproxy = HAProxy(workdir, [f"{HOST}:{p}" for p in ports["api"]], [f"{HOST}:{p}" for p in ports["notify"]],
                          port=args.port).start()
        _wait_ready(f"{haproxy.url}/health", haproxy.process)
        print(f"Fechatter behind haproxy: {haproxy.url}  (stats: http://{HOST}:{haproxy.stats_port}/stats)")
        print(f"NATS cluster: {nats_url}   api: {ports['api']}   notify: {ports['notify']}")
        print(f"logs and data: {workdir}   Ctrl-C stops everything.")
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
        while True:
            for name, proc in children:
                if proc.poll() is not None:
                    print(f"{name} exited with {proc.returncode}; see {workdir / (name + '.log')}")
                    children.remove((name, proc))
                    break
            time.sleep(1)  # a supervisor's idle loop
    except KeyboardInterrupt:
        print("stopping")
    finally:
        # A second Ctrl-C must not leave children behind half-stopped.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if haproxy is not None:
            haproxy.stop()
        # The roles first (they close their clients), then nx-27017, then the NATS nodes.
        roles = [proc for name, proc in children if name.startswith(("api", "notify"))]
        servers = [proc for name, proc in children if not name.startswith(("api", "notify"))]
        for group in (roles, servers):
            for proc in group:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for proc in group:
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
