"""On PYTHONPATH of the role processes the tests start: argon2 at its lowest cost there too (the hash is not under test)."""

import os

if os.environ.get("FECHATTER_TEST_CHEAP_PASSWORDS") == "1":
    import argon2

    class _CheapPasswordHasher(argon2.PasswordHasher):
        """The cheap_passwords fixture's cost (tests/conftest.py) as the defaults; explicit costs still apply."""

        def __init__(self, time_cost=1, memory_cost=64, parallelism=1, *args, **kwargs):
            super().__init__(time_cost, memory_cost, parallelism, *args, **kwargs)

    argon2.PasswordHasher = _CheapPasswordHasher
