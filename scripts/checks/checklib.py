"""Shared by the Python checks of scripts/validate.d (rollouts.py, operations.py): TAP-style
reporting and YAML loading with Helm-like value merging."""
from __future__ import annotations

import copy

import yaml


class Report:
    """One `ok - WHAT` / `not ok - WHAT` line per check, reasons indented; counts failures."""

    def __init__(self):
        self.failed = 0

    def __call__(self, what, problems):
        if problems:
            self.failed += 1
            print(f"not ok - {what}")
            for p in problems:
                print(f"    {p}")
        else:
            print(f"ok - {what}")


def load(path):
    """One YAML document ({} when empty)."""
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f) or {}


def load_all(path):
    """The Kubernetes objects of a multi-document YAML file (a render)."""
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if isinstance(d, dict) and d.get("kind")]


def merge(base, *overs):
    """Values files layered like helm -f: maps merge recursively, anything else replaces."""
    out = copy.deepcopy(base)
    for o in overs:
        for k, v in (o or {}).items():
            out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out
