#!/usr/bin/env python3
"""Consistency checks that promtool and helm do not make.

  observability_consistency.py alert-coverage
      every alert of observability/prometheus/rules/*.yml has, in observability/prometheus/tests/,
      at least one alert_rule_test where it fires (exp_alerts not empty) and one where it stays
      quiet (exp_alerts empty); every recording rule is evaluated by some promql_expr_test.
  observability_consistency.py chart-sources RENDERED.yaml
      the rendered observability chart holds exactly the rule files (as PrometheusRule specs),
      the dashboards (as ConfigMaps) and the collector configuration, unchanged: the chart
      reads them through symlinks, so this catches a symlink replaced by a drifting copy.
"""
from __future__ import annotations

import glob
import json
import os
import re
import sys

import yaml

REPO = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
RULES = os.path.join(REPO, "observability/prometheus/rules")
TESTS = os.path.join(REPO, "observability/prometheus/tests")


def load(path):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f) or {}


def alert_coverage():
    alerts, records = set(), set()
    for path in sorted(glob.glob(os.path.join(RULES, "*.yml"))):
        for g in load(path).get("groups", []):
            for r in g.get("rules", []):
                (alerts if "alert" in r else records).add(r.get("alert") or r.get("record"))
    firing, quiet, exprs = set(), set(), []
    for path in sorted(glob.glob(os.path.join(TESTS, "*.yml"))):
        for t in load(path).get("tests", []):
            for a in t.get("alert_rule_test", []) or []:
                (firing if a.get("exp_alerts") else quiet).add(a.get("alertname"))
            exprs += [str(e.get("expr", "")) for e in t.get("promql_expr_test", []) or []]
    problems = [f"alert {a}: no test where it fires" for a in sorted(alerts - firing)]
    problems += [f"alert {a}: no test where it stays quiet" for a in sorted(alerts - quiet)]
    problems += [f"test names alert {a}, which no rule file defines" for a in sorted((firing | quiet) - alerts)]
    used = set(re.findall(r"[a-zA-Z_:][\w:]*", " ".join(exprs)))
    problems += [f"recording rule {r}: no promql_expr_test evaluates it" for r in sorted(records - used)]
    return problems, f"{len(alerts)} alerts, {len(records)} recording rules"


def chart_sources(rendered):
    with open(rendered, encoding="utf-8") as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    rules = {d["metadata"]["name"]: d["spec"] for d in docs if d.get("kind") == "PrometheusRule"}
    cms = {d["metadata"]["name"]: d.get("data", {}) for d in docs if d.get("kind") == "ConfigMap"}
    dash_data = {k: v for data in cms.values() for k, v in data.items() if k.endswith(".json")}
    problems = []
    for path in sorted(glob.glob(os.path.join(RULES, "*.yml"))):
        name = "platform-" + re.sub(r"(\.rules)?\.yml$", "", os.path.basename(path))
        if rules.pop(name, None) != load(path):
            problems.append(f"PrometheusRule {name}: missing or not equal to {os.path.relpath(path, REPO)}")
    problems += [f"PrometheusRule {n}: no rule file of that name" for n in rules]
    for path in sorted(glob.glob(os.path.join(REPO, "observability/grafana/dashboards/*.json"))):
        with open(path, encoding="utf-8") as f:
            want = json.load(f)
        got = dash_data.pop(os.path.basename(path), None)
        if got is None or json.loads(got) != want:
            problems.append(f"dashboard ConfigMap: missing or not equal to {os.path.relpath(path, REPO)}")
    problems += [f"dashboard ConfigMap key {k}: no dashboard file of that name" for k in dash_data]
    relay = next((d["relay"] for d in cms.values() if "relay" in d), None)
    if relay is None or yaml.safe_load(relay) != load(os.path.join(REPO, "observability/otel/collector.yaml")):
        problems.append("otel collector ConfigMap: missing or not equal to observability/otel/collector.yaml")
    for d in docs:
        if d.get("kind") == "ConfigMap" and any(k.endswith(".json") for k in d.get("data", {})):
            if (d["metadata"].get("labels") or {}).get("grafana_dashboard") != "1":
                problems.append(f'ConfigMap {d["metadata"]["name"]}: no label grafana_dashboard: "1"')
    return problems, f"{len(docs)} rendered documents"


def main(argv):
    if argv[:1] == ["alert-coverage"]:
        problems, what = alert_coverage()
    elif argv[:1] == ["chart-sources"] and len(argv) == 2:
        problems, what = chart_sources(argv[1])
    else:
        print(__doc__)
        return 2
    for p in problems:
        print(p)
    print(f"{argv[0]}: {what}, {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
