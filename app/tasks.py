"""A periodic background task: the one loop behind the outbox drainer and the rate-limit purge."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Awaitable, Callable


class Periodic:
    """Runs `step()` every `interval` seconds in a background task, and at once after `wake()`.

    A step that returns True has more to do and runs again at once. A step that raises (MongoDB or
    NATS away) is logged and tried again next round; the task ends only in `stop()`, which cancels
    it, even mid-step, and waits until it is over.
    """

    def __init__(self, name: str, interval: float, step: Callable[[], Awaitable[bool | None]], log: logging.Logger):
        self.name = name
        self.interval = interval
        self.step = step
        self.log = log
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None

    @property
    def running(self) -> bool:
        return self._task is not None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=self.name)

    def wake(self) -> None:
        """The next step runs now rather than at the end of the interval."""
        self._wake.set()

    async def stop(self, timeout: float = 10) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        # A step whose library swallows the cancel would keep the loop alive: a task that is no longer ours
        # ends at the next round, and the bounded wait keeps a shutdown from hanging on a stuck step.
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=timeout)
        if not done:
            self.log.warning("%s did not stop within %s s; left behind", self.name, timeout)
        elif not task.cancelled() and task.exception() is not None:
            self.log.warning("%s ended with %r", self.name, task.exception())

    async def _run(self) -> None:
        while self._task is asyncio.current_task():
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for loses a cancel that lands as the wait ends
            # (the suite's teardown once hung on it), asyncio.timeout does not.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval):
                    await self._wake.wait()
            self._wake.clear()
            try:
                again = await self.step()
            except Exception as e:  # noqa: BLE001 - the store or NATS away: the next round tries again
                self.log.warning("%s failed: %s", self.name, e)
                continue
            if again:
                self._wake.set()
