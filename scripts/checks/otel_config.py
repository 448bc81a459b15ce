#!/usr/bin/env python3
"""Consistency checks of the OpenTelemetry Collector configuration (observability/otel/collector.yaml):
every component a pipeline or the service names is defined, every defined one is used, OTLP is
received on 4317 (gRPC) and 4318 (HTTP), the traces pipeline samples and exports to Jaeger.
There is no otelcol binary in the package registries reachable here, so this stands in for
`otelcol validate`.
  otel_config.py [collector.yaml]
"""
from __future__ import annotations

import os
import re
import sys

import yaml

REPO = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def main(argv):
    path = argv[0] if argv else os.path.join(REPO, "observability/otel/collector.yaml")
    with open(path, encoding="utf-8") as f:
        cfg = yaml.safe_load(f) or {}
    problems = []
    service = cfg.get("service") or {}
    used = {"extensions": set(service.get("extensions") or [])}
    for kind in ("receivers", "processors", "exporters"):
        used[kind] = set()
    pipelines = service.get("pipelines") or {}
    for name, p in pipelines.items():
        for kind in ("receivers", "processors", "exporters"):
            for comp in p.get(kind) or []:
                used[kind].add(comp)
                if comp not in (cfg.get(kind) or {}):
                    problems.append(f"pipeline {name}: {kind[:-1]} {comp!r} is not defined")
        if not p.get("receivers") or not p.get("exporters"):
            problems.append(f"pipeline {name}: needs receivers and exporters")
    for kind in ("receivers", "processors", "exporters", "extensions"):
        for comp in (cfg.get(kind) or {}):
            if comp not in used[kind]:
                problems.append(f"{kind[:-1]} {comp!r} is defined but not used")
        for comp in used["extensions"] if kind == "extensions" else []:
            if comp not in (cfg.get("extensions") or {}):
                problems.append(f"extension {comp!r} is not defined")
    otlp = ((cfg.get("receivers") or {}).get("otlp") or {}).get("protocols") or {}
    for proto, port in (("grpc", "4317"), ("http", "4318")):
        endpoint = str((otlp.get(proto) or {}).get("endpoint", ""))
        if not endpoint.endswith(":" + port):
            problems.append(f"receiver otlp {proto}: endpoint {endpoint!r} is not on port {port}")
    traces = pipelines.get("traces") or {}
    if not any(re.match(r"(probabilistic_sampler|tail_sampling)(/|$)", p) for p in traces.get("processors") or []):
        problems.append("pipeline traces: no sampling processor")
    if not any("jaeger" in e for e in traces.get("exporters") or []):
        problems.append("pipeline traces: no exporter to Jaeger")
    procs = traces.get("processors") or []
    if procs and procs[0] != "memory_limiter":
        problems.append("pipeline traces: memory_limiter must be the first processor")
    for p in problems:
        print(f"{os.path.relpath(path, REPO)}: {p}")
    print(f"otel_config: {len(pipelines)} pipeline(s), {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
