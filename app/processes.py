"""Process tools: free ports, children that die with their parent, and the `--processes` fork supervisor."""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import sys
import time
from typing import Callable

log = logging.getLogger("fechatter")

_PR_SET_PDEATHSIG = 1
# How soon after its start a worker's exit counts as a start-up failure (stop everything) rather than
# a crash (restart it).
WORKER_START_SECONDS = 5.0
# The supervisor polls rather than blocks in waitpid so that its stop deadline can pass.
_SUPERVISOR_POLL_SECONDS = 0.1


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_is_free(port: int) -> bool:
    """Whether a server could listen on 127.0.0.1:port now (SO_REUSEADDR, as the servers bind)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def die_with_parent_hook() -> Callable[[], None] | None:
    """A preexec_fn that makes the kernel SIGKILL the child when the thread that spawned it dies."""
    if not sys.platform.startswith("linux"):
        return None
    # Resolved before fork: the child must not load libraries between fork and exec.
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL))
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


def supervise(
    count: int,
    worker: Callable[[], int],
    *,
    stop_seconds: float,
    start_seconds: float = WORKER_START_SECONDS,
) -> int:
    """Forks `count` workers running `worker()` and watches them; SIGTERM/SIGINT stops them all, exit 0.

    `stop_seconds`: how long workers get after SIGTERM before SIGKILL (the caller's shutdown grace
    plus a margin for closing its clients).

    Call it before any event loop or client exists: each worker builds its own MongoDB client and NATS
    connection. A worker that dies is restarted; one that dies during start-up stops everything (exit 1).
    """
    die_with_parent = die_with_parent_hook()  # resolved before fork, called in each child
    workers: dict[int, float] = {}  # pid -> when it started
    stopping = False

    def spawn() -> None:
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            if die_with_parent is not None:
                die_with_parent()  # a SIGKILLed supervisor leaves no worker behind
            code = 1
            try:
                code = worker()
            finally:
                logging.shutdown()
                os._exit(code)
        workers[pid] = time.monotonic()

    def stop_all(signum=None, frame=None) -> None:
        nonlocal stopping
        if not stopping:
            log.info("stopping %d workers", len(workers))
        stopping = True
        for pid in workers:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, stop_all)
    signal.signal(signal.SIGINT, stop_all)
    for _ in range(count):
        spawn()
    log.info("supervising %d workers: %s", count, sorted(workers))
    code = 0
    deadline = None
    while workers:
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid == 0:
            if stopping:
                deadline = deadline or time.monotonic() + stop_seconds
                if time.monotonic() > deadline:
                    log.warning("workers %s still running; killing them", sorted(workers))
                    for left in workers:
                        os.kill(left, signal.SIGKILL)
            time.sleep(_SUPERVISOR_POLL_SECONDS)
            continue
        started = workers.pop(pid, None)
        if started is None or stopping:
            continue
        exit_code = os.waitstatus_to_exitcode(status)
        if time.monotonic() - started < start_seconds and exit_code != 0:
            log.error("worker %d failed at start (exit %d); stopping", pid, exit_code)
            code = 1
            stop_all()
            continue
        log.warning("worker %d exited (%d); starting another", pid, exit_code)
        spawn()
    log.info("all workers stopped")
    return code
