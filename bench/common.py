"""Shared pieces of the benchmarks: one clock, a keep-alive HTTP client, percentiles, child processes and RSS."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import resource
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable, Sequence

import psutil

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"

# CLOCK_MONOTONIC is one clock for every process on a Linux host: a send time stamped by the
# publisher and a receive time read by a load-client process are directly comparable.
now = time.monotonic

# The stamp a publisher puts in a message's content: `~b~<message number>~<send time>~`.
# It survives JSON encoding unchanged, so a receiver finds it with bytes.find, without parsing JSON.
MARK = b"~b~"


def stamp(msg_no: int, sent_at: float) -> str:
    return f"~b~{msg_no}~{sent_at:.6f}~"


def raise_fd_limit() -> int:
    """Raise the soft limit of open files to the hard limit; returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return soft


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of already sorted values (nan when empty)."""
    if not sorted_values:
        return float("nan")
    rank = max(0, min(len(sorted_values) - 1, int(round(p / 100 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[rank]


def summarize_ms(values_seconds: Sequence[float]) -> dict[str, float]:
    """p50/p90/p99/max in milliseconds of latencies given in seconds."""
    values = sorted(values_seconds)
    return {
        "n": len(values),
        "p50_ms": percentile(values, 50) * 1000,
        "p90_ms": percentile(values, 90) * 1000,
        "p99_ms": percentile(values, 99) * 1000,
        "max_ms": (values[-1] * 1000) if values else float("nan"),
    }


def ratio(ours: float, baseline: float) -> float:
    return ours / baseline if baseline else float("nan")


def check(benchmark: str, passed: bool, text: str) -> dict[str, Any]:
    """Print one PASS/FAIL line (`PASS  sse_capacity  RSS per stream at 10,000: 7.4 KiB (limit 8.0)`) and return it."""
    line = f"{'PASS' if passed else 'FAIL'}  {benchmark}  {text}"
    print(line, flush=True)
    return {"benchmark": benchmark, "passed": bool(passed), "line": line}


def fmt(value: Any) -> str:
    if isinstance(value, float):
        if value != value:
            return "n/a"
        return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def print_table(title: str, rows: list[tuple[str, Any, Any]], headers=("fechatter", "bare", "ratio")) -> None:
    """Rows of (name, ours, baseline); the ratio column is ours / baseline."""
    print(f"\n== {title}")
    print(f"{'':32} {headers[0]:>14} {headers[1]:>14} {headers[2]:>8}")
    for name, ours, base in rows:
        r = ratio(ours, base) if isinstance(ours, (int, float)) and isinstance(base, (int, float)) else None
        print(f"{name:32} {fmt(ours):>14} {fmt(base):>14} {fmt(r) if r is not None else '':>8}")
    sys.stdout.flush()


def save_result(name: str, result: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=2, default=str))
    return path


def saved(name: str, args: argparse.Namespace, results: dict[str, Any]) -> dict[str, Any]:
    """Save one benchmark's arguments and results, say where, and hand the results back."""
    print(f"saved {save_result(name, {'args': vars(args), **results})}")
    return results


def cli(description: str, add_arguments: Callable[[argparse.ArgumentParser], None],
        run: Callable[[argparse.Namespace], Awaitable[Any]]) -> None:
    """The command line of one benchmark module: its arguments, then one run."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    logging.basicConfig(level=logging.ERROR)  # the drivers' reconnect chatter at shutdown is not a result
    asyncio.run(run(parser.parse_args()))


def rss_bytes(pid: int) -> int:
    return psutil.Process(pid).memory_info().rss


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def cpu_split(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds a process has used so far: Python's work vs the kernel's (sockets)."""
    times = psutil.Process(pid).cpu_times()
    return times.user, times.system


class HttpError(Exception):
    pass


class HttpConnection:
    """One keep-alive HTTP/1.1 connection, as a browser keeps one: JSON in, (status, JSON) out."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def _connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def request(
        self, method: str, path: str, body: Any = None, *, token: str | None = None, timeout: float | None = 30
    ) -> tuple[int, Any]:
        """One request and its answer; `timeout=None` for a timed loop (no wait_for task in what is measured)."""
        if timeout is None:
            return await self._request(method, path, body, token)
        return await asyncio.wait_for(self._request(method, path, body, token), timeout)

    async def _request(self, method: str, path: str, body: Any, token: str | None) -> tuple[int, Any]:
        if self.writer is None or self.writer.is_closing():
            await self._connect()
        payload = b"" if body is None else json.dumps(body).encode()
        head = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}", f"Content-Length: {len(payload)}"]
        if body is not None:
            head.append("Content-Type: application/json")
        if token:
            head.append(f"Authorization: Bearer {token}")
        self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + payload)
        try:
            status, headers = await self._read_head()
            data = await self._read_body(headers)
        except (asyncio.IncompleteReadError, ConnectionError):
            self.close()
            raise
        if headers.get("connection", "").lower() == "close":
            self.close()
        ctype = headers.get("content-type", "")
        return status, (json.loads(data) if data and "json" in ctype else data)

    async def _read_head(self) -> tuple[int, dict[str, str]]:
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        return status, headers

    async def _read_body(self, headers: dict[str, str]) -> bytes:
        if "content-length" in headers:
            return await self.reader.readexactly(int(headers["content-length"]))
        if headers.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    await self.reader.readuntil(b"\r\n")
                    return b"".join(parts)
                parts.append(await self.reader.readexactly(size))
                await self.reader.readexactly(2)
        return b""

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


async def wait_http_ok(host: str, port: int, path: str = "/health", timeout: float = 30,
                       proc: asyncio.subprocess.Process | None = None) -> None:
    """Poll until GET path answers 200, or fail after timeout (or as soon as proc has exited)."""
    deadline = now() + timeout
    last: Exception | None = None
    while now() < deadline:
        if proc is not None and proc.returncode is not None:
            raise RuntimeError(f"process {proc.pid} exited with {proc.returncode} before answering on :{port}")
        conn = HttpConnection(host, port)
        try:
            status, _ = await conn.request("GET", path, timeout=2)
            if status == 200:
                return
            last = HttpError(f"status {status}")
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError) as e:
            last = e
        finally:
            conn.close()
        await asyncio.sleep(0.05)
    raise TimeoutError(f"nothing answered 200 on http://{host}:{port}{path} within {timeout}s ({last!r})")


@dataclass
class Child:
    """A server this benchmark started: stopped with SIGTERM, then SIGKILL, never left behind."""

    name: str
    proc: asyncio.subprocess.Process
    log_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def stop(self, timeout: float = 10) -> int | None:
        if self.proc.returncode is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
                await asyncio.wait_for(self.proc.wait(), timeout)
            except asyncio.TimeoutError:
                self.proc.kill()
                await self.proc.wait()
            except ProcessLookupError:
                pass
        return self.proc.returncode

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


async def spawn(name: str, args: list[str], log_path: Path, env: dict[str, str] | None = None) -> Child:
    """Start a child process with its output in log_path; it gets SIGKILL if this process dies."""
    from app.processes import die_with_parent_hook

    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = await asyncio.create_subprocess_exec(
            *args, cwd=ROOT, env={**os.environ, **(env or {})}, stdin=asyncio.subprocess.DEVNULL,
            stdout=log, stderr=asyncio.subprocess.STDOUT, preexec_fn=die_with_parent_hook(),
        )
    return Child(name, proc, log_path)


_LINE_NUMBER = re.compile(r":\d+\)$")


class Profiler:
    """py-spy recording a process until stopped: collapsed stacks, summarised as the hottest functions."""

    def __init__(self, pid: int, name: str, rate: int = 250):
        self.pid, self.rate = pid, rate
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        stem = f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
        self.raw_path = RESULTS_DIR / f"{stem}.txt"
        self.svg_path = RESULTS_DIR / f"{stem}.svg"
        self.proc: asyncio.subprocess.Process | None = None

    @staticmethod
    def executable() -> str | None:
        path = Path(sys.executable).parent / "py-spy"
        return str(path) if path.exists() else None

    async def start(self) -> bool:
        exe = self.executable()
        if exe is None:
            print("py-spy is not installed: .venv/bin/pip install '.[bench]'", flush=True)
            return False
        # --nonblocking: never pause the process being measured, at the price of rare torn stacks.
        self.proc = await asyncio.create_subprocess_exec(
            exe, "record", "--pid", str(self.pid), "--rate", str(self.rate), "--nonblocking",
            "--format", "raw", "--output", str(self.raw_path),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        return True

    async def stop(self, timeout: float = 30) -> dict[str, Any] | None:
        if self.proc is None:
            return None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl+C
            try:
                await asyncio.wait_for(self.proc.wait(), timeout)
            except asyncio.TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        return self.summary() if self.raw_path.exists() else None

    def summary(self, top: int = 20) -> dict[str, Any]:
        """Self and inclusive sample shares per function, from py-spy's collapsed stacks."""
        own: dict[str, int] = {}
        inclusive: dict[str, int] = {}
        total = 0
        for line in self.raw_path.read_text(errors="replace").splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not stack or not count_text.isdigit():
                continue
            count = int(count_text)
            total += count
            # "handler (roles/notify/x.py:42)" -> "handler (roles/notify/x.py)": one row per function.
            frames = [_LINE_NUMBER.sub(")", frame) for frame in stack.split(";")]
            own[frames[-1]] = own.get(frames[-1], 0) + count
            for frame in set(frames):
                inclusive[frame] = inclusive.get(frame, 0) + count

        def ranked(counts: dict[str, int]) -> list[tuple[str, float]]:
            best = sorted(counts.items(), key=lambda item: -item[1])[:top]
            return [(frame, 100 * n / max(total, 1)) for frame, n in best]

        # Frames on nearly every stack (the event loop's own) say nothing about where time goes.
        inclusive = {frame: n for frame, n in inclusive.items() if n < 0.95 * total}
        return {"samples": total, "raw": str(self.raw_path), "self": ranked(own), "inclusive": ranked(inclusive)}


def print_profile(summary: dict[str, Any] | None, top: int = 15) -> None:
    if not summary:
        return
    print(f"\n== py-spy: {summary['samples']} samples ({summary['raw']})")
    for title in ("self", "inclusive"):
        print(f"-- {title} %")
        for frame, share in summary[title][:top]:
            print(f"{share:6.1f}  {frame}")
