"""docs/deploy: every metric the Grafana dashboard and the Prometheus alerts name is exported by its role's /metrics."""

from __future__ import annotations

import datetime
import json
import re
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.gen_test(timeout=60)

DEPLOY = Path(__file__).resolve().parent.parent / "docs" / "deploy"
METRIC = re.compile(r"\bfechatter_[a-z0-9_]+")


def _dashboard_exprs() -> list[str]:
    dashboard = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def _alert_exprs() -> list[str]:
    rules = yaml.safe_load((DEPLOY / "alerts.yaml").read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def _roles_of(name: str) -> tuple[str, ...]:
    if name.startswith("fechatter_notify_"):
        return ("notify",)
    if name.startswith("fechatter_outbox_"):
        return ("api",)
    return ("api", "notify")


def _samples(text: str) -> set[str]:
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}


async def test_every_metric_named_in_the_dashboard_and_alerts_is_exported(api, notify_url, http_client, base_url):
    dashboard, alerts = _dashboard_exprs(), _alert_exprs()
    titles = {p["title"] for p in json.loads((DEPLOY / "grafana-dashboard.json").read_text())["panels"]}
    assert len(titles) >= 9
    alert_names = {r["alert"] for g in yaml.safe_load((DEPLOY / "alerts.yaml").read_text())["groups"] for r in g["rules"]}
    assert {"FechatterOutboxGrowing", "FechatterConsumerStalled", "FechatterResyncRate", "FechatterHigh5xxRate"} <= alert_names
    names = {m for expr in dashboard + alerts for m in METRIC.findall(expr)}
    assert {"fechatter_outbox_pending", "fechatter_notify_consumer_lag",
            "fechatter_http_request_seconds_bucket", "fechatter_notify_delivery_seconds_bucket"} <= names
    urls = {"api": base_url, "notify": notify_url}
    exported = {}
    for role, url in urls.items():
        await http_client.fetch(f"{url}/health")  # so the labelled request metrics have a sample
        exported[role] = _samples((await http_client.fetch(f"{url}/metrics")).body.decode())
    missing = [f"{name} on {role}" for name in sorted(names) for role in _roles_of(name) if name not in exported[role]]
    assert not missing, f"named in docs/deploy but not exported: {missing}"


async def test_outbox_depth_counts_the_unpublished_changes(api, base_url, http_client, deps):
    """The gauge reads the outbox at each scrape: entries saved there show, and go once published."""
    def depth(text: str) -> float:
        return float(re.search(r"^fechatter_outbox_pending (\S+)$", text, re.M).group(1))

    before = depth((await http_client.fetch(f"{base_url}/metrics")).body.decode())
    assert before == 0
    # Dated ahead, so the drainer takes them for requests still in flight and leaves them be.
    ahead = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
    await deps.store.outbox.insert_many([{"_id": f"probe-{i}", "state": "probe", "n": i, "created_at": ahead}
                                         for i in range(3)])
    try:
        assert depth((await http_client.fetch(f"{base_url}/metrics")).body.decode()) == 3
    finally:
        await deps.store.outbox.delete_many({"state": "probe"})
