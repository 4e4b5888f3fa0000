"""What the fault scenarios report: one line per scenario, and test-artifacts/faults.json."""

from __future__ import annotations

import fcntl
import json
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
ARTIFACTS = ROOT / "test-artifacts"


def record(scenario: str, **counts) -> None:
    """One line per fault scenario on stdout (pytest -s) and in test-artifacts/faults.json for the report."""
    print(f"\nFAULTS {scenario}: " + ", ".join(f"{k}={v}" for k, v in counts.items()), flush=True)
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / "faults.json"
    # The suite runs in several worker processes: the read-modify-write of one file goes under a lock.
    with open(ARTIFACTS / "faults.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            results = json.loads(path.read_text())
        except (OSError, ValueError):
            results = {}
        results[scenario] = {**counts, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        path.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
