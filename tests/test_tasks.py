"""app.tasks.Periodic: stop() ends the loop even when a step swallows the cancel, and never hangs."""

import asyncio
import logging

import pytest

from app.tasks import Periodic

log = logging.getLogger("test.tasks")


@pytest.mark.gen_test(timeout=10)
async def test_stop_ends_a_loop_whose_step_swallows_the_cancel():
    steps = []

    async def stubborn():
        steps.append(1)
        try:
            await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            pass  # as a library that loses a cancel would

    task = Periodic("stubborn", 0.001, stubborn, log)
    task.start()
    while len(steps) < 3:
        await asyncio.sleep(0.001)
    await task.stop(timeout=5)
    ran = len(steps)
    assert not task.running
    await asyncio.sleep(0.05)
    assert len(steps) == ran, "the loop went on after stop()"


@pytest.mark.gen_test(timeout=10)
async def test_stop_gives_up_on_a_step_that_never_returns(caplog):
    entered = asyncio.Event()
    released, finished = [], asyncio.Event()

    async def stuck():
        entered.set()
        while not released:
            try:
                await asyncio.sleep(0.05)
            except asyncio.CancelledError:
                continue
        finished.set()

    task = Periodic("stuck", 0.001, stuck, log)
    task.start()
    await entered.wait()
    with caplog.at_level(logging.WARNING, logger="test.tasks"):
        await task.stop(timeout=0.2)
    assert "did not stop" in caplog.text
    released.append(True)  # so the test's loop closes with no task left behind
    await finished.wait()


@pytest.mark.gen_test(timeout=10)
async def test_a_restarted_task_runs_again_and_wake_runs_a_step_at_once():
    ran = asyncio.Event()

    async def step():
        ran.set()

    task = Periodic("restart", 3600, step, log)
    task.start()
    await task.stop()
    task.start()
    task.wake()
    await asyncio.wait_for(ran.wait(), 5)
    await task.stop()
