"""main.py as operators run it: config errors, key rules, readiness under outages, clean SIGTERM."""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from app.config import ConfigError, load_config
from app.processes import free_port
from app.services.demo import DEMO_PASSWORD, DEMO_PEOPLE
from tests.conftest import make_test_config
from tests.support.api import Api, wait_for

ROOT = Path(__file__).resolve().parent.parent


def run_main(*args: str, env: dict[str, str] | None = None, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "main.py", *args], cwd=ROOT, env={**os.environ, **(env or {})},
        capture_output=True, text=True, timeout=timeout,
    )


def test_help_explains_roles():
    result = run_main("--help")
    assert result.returncode == 0
    for word in ("api", "notify", "all", "--config", "--port"):
        assert word in result.stdout


def test_unknown_key_in_config_file_is_named(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("api:\n  prot: 7000\n")
    result = run_main("--role=api", f"--config={bad}")
    assert result.returncode == 2
    assert "api.prot" in result.stderr


def test_wrong_type_in_environment_is_named():
    result = run_main("--role=api", env={"FECHATTER_API_PORT": "not-a-port"})
    assert result.returncode == 2
    assert "api.port" in result.stderr and "int" in result.stderr


@pytest.mark.parametrize("key, value", [
    ("api.processes", 0), ("notify.processes", -1), ("api.body_timeout_seconds", 0),
    ("files.body_timeout_seconds", -0.5), ("auth.password_hash_concurrency", -1),
    ("auth.password_hash_parallelism", 0), ("notify.presence_ttl_seconds", 0),
    ("limits.messages_per_minute_per_user", -1), ("limits.searches_per_minute_per_user", -5),
])
def test_out_of_range_values_are_named(key, value):
    section, name = key.split(".")
    with pytest.raises(ConfigError, match=rf"^invalid configuration: {key}: Expected"):
        load_config(env={}, overrides={section: {name: value}})


def test_the_event_stream_must_outlive_the_replay_window():
    with pytest.raises(ConfigError, match="nats.stream_max_age_seconds must exceed"):
        load_config(env={}, overrides={"nats": {"stream_max_age_seconds": 60}, "notify": {"replay_window_seconds": 60}})


def test_single_roles_refuse_embedded_and_missing_keys(tmp_path, key_files):
    embedded = run_main("--role=api", env={"FECHATTER_AUTH_PRIVATE_KEY_FILE": key_files.private})
    assert embedded.returncode == 1 and "embedded" in embedded.stderr
    real = {"FECHATTER_MONGO_URI": "mongodb://127.0.0.1:1", "FECHATTER_NATS_URL": "nats://127.0.0.1:1"}
    no_key = run_main("--role=api", env=real)
    assert no_key.returncode == 1 and "auth.private_key_file" in no_key.stderr
    no_public = run_main("--role=notify", env=real)
    assert no_public.returncode == 1 and "auth.public_key_file" in no_public.stderr
    shared = tmp_path / "shared.pem"
    shared.write_bytes(Path(key_files.private).read_bytes())
    shared.chmod(0o644)
    readable = run_main("--role=api", env={**real, "FECHATTER_AUTH_PRIVATE_KEY_FILE": str(shared)})
    assert readable.returncode == 1 and "readable by others" in readable.stderr
    dev = tmp_path / "dev-ed25519-private.pem"
    dev.write_bytes(Path(key_files.private).read_bytes())
    dev.chmod(0o600)
    dev_key = run_main("--role=api", env={**real, "FECHATTER_AUTH_PRIVATE_KEY_FILE": str(dev)})
    assert dev_key.returncode == 1 and "development key" in dev_key.stderr


@pytest.mark.gen_test(timeout=60)
async def test_readiness_names_the_dependency_that_is_down(tmp_path, key_files, own_nats, own_mongo):
    nats = await own_nats()
    mongo = await own_mongo()
    config = make_test_config(tmp_path, mongo.uri, nats.url, key_files)
    port = free_port()
    env = {
        "FECHATTER_MONGO_URI": config.mongo.uri, "FECHATTER_MONGO_DATABASE": config.mongo.database,
        "FECHATTER_MONGO_TIMEOUT_MS": "1000",
        "FECHATTER_NATS_URL": config.nats.url, "FECHATTER_NATS_STREAM": config.nats.stream,
        "FECHATTER_NATS_SUBJECT_PREFIX": config.nats.subject_prefix,
        "FECHATTER_AUTH_PRIVATE_KEY_FILE": key_files.private,
    }
    process = subprocess.Popen(
        [sys.executable, "main.py", "--role=api", f"--port={port}"], cwd=ROOT, env={**os.environ, **env},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        api = Api(f"http://127.0.0.1:{port}")

        async def status():
            try:
                return (await api.get("/health/ready", timeout=5)).status
            except OSError:
                return None

        await wait_for(lambda: _is(status(), 200), timeout=20, message="api ready")
        await nats.stop()
        await wait_for(lambda: _is(status(), 503), timeout=15, message="503 with NATS down")
        reply = await api.get("/health/ready", timeout=5)
        assert reply.body["down"] == ["nats"] and reply.headers["Retry-After"]
        await nats.restart()
        await wait_for(lambda: _is(status(), 200), timeout=20, message="ready again after NATS returns")
        await mongo.stop()
        await wait_for(lambda: _is(status(), 503), timeout=15, message="503 with MongoDB down")
        reply = await api.get("/health/ready", timeout=5)
        assert reply.body["down"] == ["mongodb"]
        # A request that needs MongoDB answers 503 JSON too, not 500.
        signup = await api.post("/api/signin", {"email": "a@example.com", "password": "whatever pw"}, timeout=10)
        assert signup.status == 503 and signup.headers["Retry-After"] and signup.error_code == "mongodb_unavailable"
        await mongo.restart()
        await wait_for(lambda: _is(status(), 200), timeout=20, message="ready again after MongoDB returns")
        assert (await api.get("/health")).body == {"status": "ok", "role": "api"}
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0


async def _is(value, expected):
    return (await value) == expected


def test_role_all_stops_cleanly_on_sigterm(tmp_path):
    api_port, notify_port = free_port(), free_port()
    env = {"FECHATTER_DATA_DIR": str(tmp_path / "data"), "FECHATTER_API_PORT": str(api_port),
           "FECHATTER_NOTIFY_PORT": str(notify_port)}
    process = subprocess.Popen([sys.executable, "main.py", "--role=all", "--seed-demo"], cwd=ROOT,
                               env={**os.environ, **env},
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        def healthy(port):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                    return r.status == 200
            except OSError:
                return False

        deadline = time.monotonic() + 30
        while not (healthy(api_port) and healthy(notify_port)):
            assert process.poll() is None, process.stdout.read()
            assert time.monotonic() < deadline, "role=all never became healthy"
            time.sleep(0.05)
        children = psutil.Process(process.pid).children(recursive=True)
        assert len(children) >= 2  # nats-server and nx-27017
        assert (tmp_path / "data" / "dev-ed25519-private.pem").exists()
        # The seeded demo people can sign in and find their channel.
        request = urllib.request.Request(
            f"http://127.0.0.1:{api_port}/api/signin", method="POST",
            data=json.dumps({"email": DEMO_PEOPLE[1][1], "password": DEMO_PASSWORD}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as r:
            token = json.loads(r.read())["access_token"]
        chats_request = urllib.request.Request(
            f"http://127.0.0.1:{api_port}/api/chats", headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(chats_request, timeout=5) as r:
            chats = json.loads(r.read())
        assert {c["name"] for c in chats if c["type"] == "public_channel"} == {"general"}
        assert any(c["type"] == "direct" for c in chats)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
        assert DEMO_PEOPLE[0][1] in process.stdout.read()
        gone, alive = psutil.wait_procs(children, timeout=10)
        assert not alive, f"left behind: {alive}"
    finally:
        if process.poll() is None:
            process.kill()
