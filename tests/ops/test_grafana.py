"""clusters/grafana/synthface-dashboard.json against the metrics the code registers: Grafana
structure (datasource variable, run variable, panels with PromQL targets, unique ids) and that
every metric in a query is one that synthface_ray/generate exports, and each of those is shown.

Names as Ray 2.60 exports them on a node's metrics endpoint (seen on a real head, see
docs/OPERATIONS.md): ``ray_`` + the name, and ``_total`` after it for a Counter."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "clusters" / "grafana" / "synthface-dashboard.json"
REGISTERED = re.compile(r'_metric\(\s*"(\w+)"\s*,\s*"(\w+)"')
EXPORTED_SUFFIX = {"Counter": ["_total"], "Gauge": [""], "Histogram": ["_bucket", "_sum", "_count"]}
METRIC_TOKEN = re.compile(r"\b(?:ray_)?synthface_\w+")


def registered() -> dict[str, str]:
    """name -> kind of every ``_metric("Kind", "name", ...)`` call in synthface_ray/generate."""
    found: dict[str, str] = {}
    for path in sorted((ROOT / "synthface_ray" / "generate").glob("*.py")):
        for kind, name in REGISTERED.findall(path.read_text(encoding="utf-8")):
            assert found.get(name, kind) == kind, f"{name} registered as {found[name]} and {kind}"
            found[name] = kind
    return found


def exported() -> dict[str, str]:
    """exported series name -> registered name."""
    return {f"ray_{name}{suffix}": name for name, kind in registered().items()
            for suffix in EXPORTED_SUFFIX[kind]}


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def targets(dashboard: dict) -> list[tuple[dict, dict]]:
    return [(panel, target) for panel in dashboard["panels"] for target in panel.get("targets", [])]


def variables(dashboard: dict) -> dict[str, dict]:
    return {v["name"]: v for v in dashboard["templating"]["list"]}


def test_the_generate_package_registers_the_documented_metrics():
    assert registered() == {
        "synthface_images_generated": "Counter", "synthface_images_per_second": "Gauge",
        "synthface_generation_failures": "Counter", "synthface_generator_actors": "Gauge",
        "synthface_shards_committed": "Counter"}


def test_dashboard_structure(dashboard):
    assert 36 <= dashboard["schemaVersion"] <= 41
    assert dashboard["uid"] and dashboard["title"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), f"duplicate panel ids: {ids}"
    for panel in dashboard["panels"]:
        assert panel["type"] in ("stat", "timeseries", "gauge", "bargauge", "table"), panel["title"]
        assert panel["targets"], f"panel {panel['title']!r} has no targets"
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"]), panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip(), f"empty expr in {panel['title']!r}"
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]


def test_datasource_and_run_variables(dashboard):
    names = variables(dashboard)
    assert names["datasource"]["type"] == "datasource" and names["datasource"]["query"] == "prometheus"
    run = names["run"]
    assert run["type"] == "query" and run["datasource"]["uid"] == "${datasource}"
    assert run["query"]["query"] == run["definition"] == "label_values(ray_synthface_images_generated_total, run)"
    for panel, target in targets(dashboard):
        assert 'run=~"$run"' in target["expr"], f"{panel['title']!r} ignores the run variable"


def test_every_query_names_an_exported_synthface_metric(dashboard):
    known = exported()
    queries = [t["expr"] for _, t in targets(dashboard)]
    queries += [v["definition"] for v in dashboard["templating"]["list"] if v.get("definition")]
    for expr in queries:
        used = METRIC_TOKEN.findall(expr)
        assert used, f"no synthface metric in {expr!r}"
        for name in used:
            assert name in known, f"{name} (in {expr!r}) is not exported; exported: {sorted(known)}"


def test_every_registered_metric_is_on_a_panel(dashboard):
    shown = {exported()[name] for _, t in targets(dashboard) for name in METRIC_TOKEN.findall(t["expr"])}
    assert shown == set(registered())
    # counters through rate()/increase() use the exported _total series, never the bare name
    for _, target in targets(dashboard):
        for name in re.findall(r"\b(?:rate|increase)\((\w+)", target["expr"]):
            assert name.endswith("_total"), target["expr"]


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Prometheus) not installed")
def test_queries_parse_as_promql(dashboard, tmp_path):
    """Every target as a recording rule ($run and $__rate_interval filled in) through
    `promtool check rules`, which parses the PromQL."""
    rules = [{"record": f"synthface:check:{i}",
              "expr": t["expr"].replace("$run", "demo").replace("$__rate_interval", "1m")}
             for i, (_, t) in enumerate(targets(dashboard))]
    path = tmp_path / "rules.yml"
    path.write_text(json.dumps({"groups": [{"name": "synthface", "rules": rules}]}))
    done = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
