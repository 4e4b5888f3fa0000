"""Password hashing: a bounded number of argon2 threads at once, parallelism 1, old hashes rehashed at sign-in."""

import asyncio
import threading

import argon2
import pytest

from app.auth import PasswordHashing, default_hash_concurrency
from app.config import load_config
from tests.support.api import wait_for

pytestmark = [pytest.mark.gen_test(timeout=60), pytest.mark.real_passwords]


class GatedHasher:
    """A PasswordHasher whose verify holds its thread until the test opens the gate, counting threads inside."""

    def __init__(self, inner: argon2.PasswordHasher):
        self.inner = inner
        self.gate = threading.Event()
        self.lock = threading.Lock()
        self.active = 0
        self.most = 0

    def verify(self, password_hash, password):
        with self.lock:
            self.active += 1
            self.most = max(self.most, self.active)
        try:
            assert self.gate.wait(30), "the test never opened the gate"
            return self.inner.verify(password_hash, password)
        finally:
            with self.lock:
                self.active -= 1

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_defaults_leave_the_loop_a_core():
    config = load_config(env={})
    assert config.auth.password_hash_concurrency == 0 and config.auth.password_hash_parallelism == 1
    hashing = PasswordHashing()
    assert hashing.concurrency == default_hash_concurrency() == max(1, (__import__("os").cpu_count() or 1) // 2)
    assert hashing.hasher.parallelism == 1
    assert argon2.extract_parameters(hashing.dummy_hash).parallelism == 1
    tuned = load_config(env={"FECHATTER_AUTH_PASSWORD_HASH_CONCURRENCY": "3"})
    assert tuned.auth.password_hash_concurrency == 3


async def test_concurrent_signins_never_run_more_hashes_than_the_bound(app, api):
    user = await api.signup(password="storm password")
    bound = 2
    passwords = PasswordHashing(concurrency=bound)
    gated = GatedHasher(passwords.hasher)
    passwords.hasher = gated
    app.settings["services"].accounts.passwords = passwords

    body = {"email": user["user"]["email"], "password": "storm password"}
    storm = [asyncio.ensure_future(api.post("/api/signin", body)) for _ in range(8)]
    try:
        # All eight have reached the hashing step: `bound` in threads, the rest queued for a slot.
        await wait_for(lambda: passwords.running == bound and passwords.waiting == 8 - bound and gated.active == bound,
                       message="eight sign-ins at the hashing step")
        assert gated.most == bound
    finally:
        gated.gate.set()
    replies = await asyncio.gather(*storm)
    assert [r.status for r in replies] == [200] * 8
    assert gated.most == bound  # never more threads hashing at once, while the queue drained
    assert passwords.running == passwords.waiting == 0


async def test_an_old_parameter_hash_still_verifies_and_is_rehashed(app, api, deps):
    user = await api.signup(password="an old password")
    old = argon2.PasswordHasher(time_cost=2, memory_cost=1024, parallelism=4).hash("an old password")
    await deps.store.users.update_one({"_id": user["id"]}, {"$set": {"password_hash": old}})

    wrong = await api.post("/api/signin", {"email": user["user"]["email"], "password": "not it"})
    assert wrong.status == 401
    assert (await deps.store.users.find_one({"_id": user["id"]}))["password_hash"] == old  # no rehash on failure

    ok = await api.post("/api/signin", {"email": user["user"]["email"], "password": "an old password"})
    assert ok.status == 200
    stored = (await deps.store.users.find_one({"_id": user["id"]}))["password_hash"]
    assert stored != old and argon2.extract_parameters(stored).parallelism == 1
    again = await api.post("/api/signin", {"email": user["user"]["email"], "password": "an old password"})
    assert again.status == 200
    assert (await deps.store.users.find_one({"_id": user["id"]}))["password_hash"] == stored  # once only
