"""`pip install .` gives a `fechatter` command and `python -m fechatter`: each starts a role, away from the checkout."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from tornado.httpclient import AsyncHTTPClient

from tests.processes import RoleProcess
from tests.support.api import Api

pytestmark = pytest.mark.gen_test(timeout=90)

COMMAND = Path(sys.executable).parent / "fechatter"


class InstalledRole(RoleProcess):
    """A role started as an operator would after `pip install .`: the console script (or -m), run outside the checkout."""

    def __init__(self, role, config, argv, cwd: Path, **kw):
        super().__init__(role, config, ready_path="/health/ready", **kw)
        self.argv, self.cwd = argv, cwd

    def _spawn(self) -> None:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [*self.argv, f"--role={self.role}", f"--port={self.port}"],
                cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )


@pytest.fixture
def installed(config, tmp_path):
    assert COMMAND.is_file(), f"{COMMAND} is missing: run `pip install .` (make venv does)"
    started: list[InstalledRole] = []

    async def start(role: str, argv: list[str]) -> InstalledRole:
        process = InstalledRole(role, config, argv, tmp_path)
        started.append(process)
        return await process.start()

    yield start
    for process in started:
        process.sigkill()


async def test_the_console_command_and_module_start_both_roles(installed, tmp_path):
    help_text = subprocess.run([str(COMMAND), "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert help_text.returncode == 0 and "--role" in help_text.stdout
    api_process = await installed("api", [str(COMMAND)])
    notify_process = await installed("notify", [sys.executable, "-m", "fechatter"])
    client = AsyncHTTPClient()
    api = Api(api_process.url)
    ada = await api.signup(fullname="Ada Lovelace")
    health = await Api(notify_process.url).get("/api/sse/health")
    assert health.status == 200 and health.body["service"] == "notify"
    online = await Api(notify_process.url).get("/api/online-users", token=ada["token"])
    assert online.status == 200
    # The page, its scripts and the docs come from the installed package's data, not from a checkout.
    page = await client.fetch(f"{api_process.url}/")
    assert b"<html" in page.body.lower()
    script = await client.fetch(f"{api_process.url}/static/app.js")
    assert script.code == 200 and script.body
    docs = await client.fetch(f"{api_process.url}/api/docs")
    assert b"swagger-ui" in docs.body
    assert api_process.stop() == 0 and notify_process.stop() == 0
    assert not list(tmp_path.glob("*.py"))  # nothing of the checkout was beside them


def test_a_bad_role_is_refused_by_the_command(tmp_path):
    refused = subprocess.run([str(COMMAND), "--role=nope"], cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert refused.returncode == 2 and "invalid choice" in refused.stderr
