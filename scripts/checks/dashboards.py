#!/usr/bin/env python3
"""Structural checks of the Grafana dashboards (observability/grafana/dashboards/*.json).

Valid JSON; a uid (unique across the files, at most 40 characters) and a title; panel ids unique
within a dashboard (panels inside collapsed rows included); every panel has a gridPos within the
24-column grid; every query target has a unique refId, an expression and a Prometheus datasource
that is the dashboard's `datasource` variable; every $variable a query uses is defined.
  dashboards.py [FILE.json...]      (default: every dashboard of the repository)
"""
from __future__ import annotations

import glob
import json
import os
import re
import sys

REPO = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
BUILTIN_VARS = {"__rate_interval", "__interval", "__interval_ms", "__range", "__range_s", "__range_ms",
                "__from", "__to", "__dashboard", "__name", "__org", "__user", "timeFilter"}
PANEL_TYPES = {"row", "timeseries", "stat", "table", "heatmap", "gauge", "bargauge", "text", "piechart",
               "logs", "traces", "nodeGraph", "state-timeline", "status-history", "histogram", "barchart"}


def panels(ps):
    for p in ps:
        yield p
        yield from panels(p.get("panels", []))


def check(path, uids):
    rel = os.path.relpath(path, REPO)
    try:
        with open(path, encoding="utf-8") as f:
            d = json.load(f)
    except (OSError, ValueError) as e:
        return [f"{rel}: not valid JSON: {e}"]
    problems = []
    uid = d.get("uid")
    if not uid or len(uid) > 40 or not re.fullmatch(r"[a-zA-Z0-9_-]+", uid):
        problems.append(f"{rel}: uid {uid!r} missing, longer than 40 characters or not [a-zA-Z0-9_-]")
    elif uid in uids:
        problems.append(f"{rel}: uid {uid!r} also used by {uids[uid]}")
    else:
        uids[uid] = rel
    if not d.get("title"):
        problems.append(f"{rel}: no title")
    variables = {v.get("name") for v in d.get("templating", {}).get("list", [])}
    if "datasource" not in variables:
        problems.append(f"{rel}: no `datasource` variable")
    ids = {}
    for p in panels(d.get("panels", [])):
        where = f'{rel}: panel {p.get("id")} "{p.get("title", "")}"'
        if not isinstance(p.get("id"), int):
            problems.append(f"{where}: id is not an integer")
        elif p["id"] in ids:
            problems.append(f'{where}: id {p["id"]} also used by "{ids[p["id"]]}"')
        else:
            ids[p["id"]] = p.get("title", "")
        if p.get("type") not in PANEL_TYPES:
            problems.append(f"{where}: unknown panel type {p.get('type')!r}")
        g = p.get("gridPos") or {}
        if not all(isinstance(g.get(k), int) for k in "hwxy") or g["x"] + g["w"] > 24 or g["w"] < 1 or g["h"] < 1:
            problems.append(f"{where}: gridPos {g} outside the 24-column grid")
        refs = set()
        for t in p.get("targets", []):
            ref = t.get("refId")
            if not ref or ref in refs:
                problems.append(f"{where}: refId {ref!r} missing or repeated")
            refs.add(ref)
            ds = t.get("datasource") or p.get("datasource") or {}
            if ds.get("type") != "prometheus" or ds.get("uid") != "${datasource}":
                problems.append(f"{where} {ref}: datasource {ds} is not the dashboard's Prometheus variable")
            if not str(t.get("expr", "")).strip():
                problems.append(f"{where} {ref}: empty expression")
            for var in re.findall(r"\$\{?(\w+)", t.get("expr", "") + t.get("legendFormat", "")):
                if var not in variables and var not in BUILTIN_VARS:
                    problems.append(f"{where} {ref}: ${var} is not a variable of the dashboard")
        if p.get("type") not in ("row", "text") and not p.get("targets"):
            problems.append(f"{where}: no query")
    for v in d.get("templating", {}).get("list", []):
        q = v.get("query")
        q = q.get("query", "") if isinstance(q, dict) else str(q or "")
        for var in re.findall(r"\$\{?(\w+)", q) if v.get("type") == "query" else []:
            if var not in variables and var not in BUILTIN_VARS:
                problems.append(f'{rel}: variable ${v.get("name")} uses undefined ${var}')
    return problems


def main(paths):
    paths = paths or sorted(glob.glob(os.path.join(REPO, "observability/grafana/dashboards/*.json")))
    uids, problems = {}, []
    for path in paths:
        problems += check(path, uids)
    for p in problems:
        print(p)
    print(f"dashboards: {len(paths)} file(s), {len(problems)} problem(s)")
    return 1 if problems or not paths else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
