#!/usr/bin/env python3
"""Cross-checks every PromQL expression of the platform against what the services export.

Sources of PromQL:
  - Grafana dashboards (observability/grafana/dashboards/*.json): panel targets, including
    panels inside collapsed rows, and template-variable queries (label_values(...)).
  - Prometheus rule files (observability/prometheus/rules/*.yml): alert and record expressions.
  - Argo Rollouts AnalysisTemplates under --charts (default charts/): spec.metrics[].provider.prometheus.query
    of plain manifests. Helm chart templates are skipped: their queries exist only once rendered,
    so scripts/validate.d/60-rollouts.sh passes the rendered AnalysisTemplates as --charts DIR.

Each expression is tokenised (a small PromQL lexer, no full parser) into selectors with their
matcher labels, grouping labels (by/without/on/ignoring/group_left/group_right), label_replace /
label_join targets, and labels named in legend formats. Each metric name must be
  - a sample name in one of the expositions given with --metrics (Prometheus text format as the
    services' /metrics serve it: counters end in _total, histograms in _bucket/_sum/_count), or
  - a recording rule defined in the rule files, or
  - a metric of an exporter in EXPORTERS below (kube-state-metrics, Kong, Istio, Prometheus).
Each label must exist on the metrics of its expression (or be a target label Prometheus adds).

  metrics_names.py --metrics scripts/checks/fixtures/metrics/*.txt
  metrics_names.py --metrics captured/*.txt --dashboards D.json --rules R.yml

Exit status 1 and one line per problem when anything does not match; the last line is a summary.
"""
from __future__ import annotations

import argparse
import difflib
import glob
import json
import os
import re
import sys
from dataclasses import dataclass, field

import yaml

REPO = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

# Labels Prometheus attaches to every scraped series of the services: job/instance always;
# app/version from the pod labels (ServiceMonitor podTargetLabels; static labels locally);
# namespace/pod/service/endpoint/container from the Prometheus Operator's ServiceMonitor
# relabelling.
TARGET_LABELS = {"job", "instance", "app", "version", "namespace", "pod", "service", "endpoint", "container"}

# Metrics that do not come from the services, with the exporter that serves them and their labels.
# Histograms are listed by base name and accept _bucket (plus le), _sum and _count.
EXPORTERS: dict[str, dict] = {
    "Prometheus (per scrape target)": {
        "up": set(TARGET_LABELS),
        "scrape_duration_seconds": set(TARGET_LABELS),
        "scrape_samples_scraped": set(TARGET_LABELS),
    },
    "Prometheus (rule evaluation)": {
        "ALERTS": {"alertname", "alertstate", "severity"} | TARGET_LABELS | {"channel"},
        "ALERTS_FOR_STATE": {"alertname", "severity"} | TARGET_LABELS | {"channel"},
    },
    "kube-state-metrics": {
        "kube_pod_container_status_restarts_total": {"namespace", "pod", "container", "uid"},
        "kube_pod_container_status_waiting_reason": {"namespace", "pod", "container", "reason", "uid"},
        "kube_deployment_status_replicas_available": {"namespace", "deployment"},
        "kube_deployment_spec_replicas": {"namespace", "deployment"},
        "kube_pod_labels": {"namespace", "pod", "uid", "label_app", "label_version"},
    },
    "Kong prometheus plugin (Kong 3.x)": {
        "kong_http_requests_total": {"service", "route", "code", "source", "workspace", "consumer"},
        "kong_request_latency_ms": {"service", "route", "workspace", "type"},
        "kong_upstream_latency_ms": {"service", "route", "workspace", "type"},
        "kong_kong_latency_ms": {"service", "route", "workspace", "type"},
        "kong_bandwidth_bytes": {"service", "route", "direction", "workspace", "consumer"},
        "kong_nginx_connections_total": {"node_id", "subsystem", "state"},
        "kong_nginx_requests_total": {"node_id", "subsystem"},
        "kong_datastore_reachable": {"node_id"},
        "kong_node_info": {"node_id", "version"},
    },
    "Istio (Envoy sidecars, standard metrics)": {
        name: {"reporter", "source_app", "source_version", "source_workload", "source_workload_namespace",
               "source_principal", "destination_app", "destination_version", "destination_workload",
               "destination_workload_namespace", "destination_service", "destination_service_name",
               "destination_service_namespace", "destination_principal", "request_protocol",
               "response_code", "response_flags", "grpc_response_status", "connection_security_policy",
               "destination_cluster", "source_cluster"}
        for name in ("istio_requests_total", "istio_request_duration_milliseconds", "istio_request_bytes",
                     "istio_response_bytes", "istio_tcp_connections_opened_total")
    },
}
EXPORTER_HISTOGRAMS = {"kong_request_latency_ms", "kong_upstream_latency_ms", "kong_kong_latency_ms",
                       "istio_request_duration_milliseconds", "istio_request_bytes", "istio_response_bytes"}

KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left",
            "group_right", "inf", "nan", "atan2", "start", "end"}
AGGREGATORS = {"sum", "avg", "min", "max", "count", "stddev", "stdvar", "topk", "bottomk", "quantile",
               "count_values", "group"}
GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}

TOKEN = re.compile(r"""
    (?P<ws>\s+|\#[^\n]*)
  | (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<dur>(?:\d+(?:ms|[smhdwy]))+(?![\w:]))
  | (?P<num>0x[0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<ident>[a-zA-Z_:][a-zA-Z0-9_:]*)
  | (?P<op>=~|!~|!=|==|>=|<=|[-+*/%^<>=@,(){}\[\]])
""", re.X)


@dataclass
class Uses:
    selectors: list = field(default_factory=list)  # (metric or None, [labels in matchers])
    grouping: set = field(default_factory=set)      # labels in by/without/on/ignoring/group_*
    sources: set = field(default_factory=set)       # label_replace/label_join source labels
    defined: set = field(default_factory=set)       # label_replace/label_join target labels
    errors: list = field(default_factory=list)


def grafana_substitute(expr: str) -> str:
    """Replaces Grafana's variables outside string literals so the expression lexes."""
    out, i = [], 0
    for m in re.finditer(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', expr):
        out.append(_subst_code(expr[i:m.start()]))
        out.append(m.group(0))
        i = m.end()
    out.append(_subst_code(expr[i:]))
    return "".join(out)


def _subst_code(code: str) -> str:
    code = re.sub(r"\$\{?__(?:rate_interval|interval|range)(?:_ms|_s)?\}?", "5m", code)
    return re.sub(r"\$\{\w+(?::\w+)?\}|\$\w+|\[\[\w+\]\]", "1", code)


def tokenize(expr: str):
    toks, pos = [], 0
    while pos < len(expr):
        m = TOKEN.match(expr, pos)
        if not m:
            raise ValueError(f"cannot lex at {expr[pos:pos + 20]!r}")
        pos = m.end()
        if m.lastgroup != "ws":
            toks.append((m.lastgroup, m.group(0)))
    return toks


def _unquote(s: str) -> str:
    return s[1:-1]


def analyse(expr: str) -> Uses:
    uses = Uses()
    try:
        toks = tokenize(grafana_substitute(expr))
    except ValueError as e:
        uses.errors.append(str(e))
        return uses
    i, n = 0, len(toks)
    calls = []  # stack of [function name, depth, strings seen]
    depth = 0
    while i < n:
        kind, val = toks[i]
        nxt = toks[i + 1][1] if i + 1 < n else None
        if kind == "op" and val == "(":
            depth += 1
        elif kind == "op" and val == ")":
            if calls and calls[-1][1] == depth:
                name, _, strs = calls.pop()
                if name == "label_replace" and len(strs) >= 3:
                    uses.defined.add(strs[0])
                    if strs[2]:
                        uses.sources.add(strs[2])
                elif name == "label_join" and strs:
                    uses.defined.add(strs[0])
                    uses.sources.update(s for s in strs[2:] if s)
            depth -= 1
        elif kind == "str":
            if calls and calls[-1][1] == depth:
                calls[-1][2].append(_unquote(val))
        elif kind == "op" and val == "[":
            while i < n and toks[i][1] != "]":  # range or subquery: durations only
                i += 1
        elif kind == "ident" and val in GROUPING:
            if nxt == "(":
                i += 2
                while i < n and toks[i][1] != ")":
                    if toks[i][0] == "ident":
                        uses.grouping.add(toks[i][1])
                    i += 1
        elif kind == "ident" and val in KEYWORDS:
            pass
        elif kind == "ident" and (nxt == "(" or (val in AGGREGATORS and nxt in ("by", "without"))):
            calls.append([val, depth + 1 if nxt == "(" else None, []])
            if nxt != "(":  # `sum by (x) (`: the call's own parenthesis comes after the grouping
                calls[-1][1] = depth + 1
        elif kind == "ident":
            labels, j = [], i + 1
            if nxt == "{":
                labels, j = _matchers(toks, i + 2, uses)
            uses.selectors.append((val, labels))
            i = j - 1
        elif kind == "op" and val == "{":  # selector without a name: {__name__="..."}
            labels, j = _matchers(toks, i + 1, uses)
            names = [v for (l, v) in labels if l == "__name__"]
            uses.selectors.append((names[0] if names else None, labels))
            i = j - 1
        i += 1
    for sel in range(len(uses.selectors)):
        name, labels = uses.selectors[sel]
        uses.selectors[sel] = (name, [l for (l, _) in labels if l != "__name__"])
    return uses


def _matchers(toks, i, uses):
    """Reads `label op "value", ...}` from toks[i]; returns ([(label, value)], index after `}`)."""
    labels = []
    while i < len(toks) and toks[i][1] != "}":
        if toks[i][0] == "ident" and i + 2 < len(toks) and toks[i + 1][1] in ("=", "!=", "=~", "!~"):
            labels.append((toks[i][1], _unquote(toks[i + 2][1]) if toks[i + 2][0] == "str" else ""))
            i += 3
        else:
            i += 1
    return labels, i + 1


# ------------------------------------------------------------------------------------ expositions
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+\S+")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"(?:[^"\\]|\\.)*"')


def read_exposition(paths):
    """{sample name: set of label names} from Prometheus / OpenMetrics text files."""
    series: dict[str, set] = {}
    for path in paths:
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                m = SAMPLE.match(line)
                if not m:
                    raise SystemExit(f"{path}: not a sample line: {line[:80]}")
                series.setdefault(m.group(1), set()).update(LABEL.findall(m.group(3) or ""))
    return series


# ------------------------------------------------------------------------------------ sources
@dataclass
class Expr:
    where: str
    expr: str
    legend: str = ""
    extra_labels: tuple = ()  # e.g. the label of label_values(metric, label)


def dashboard_exprs(path):
    with open(path, encoding="utf-8") as f:
        d = json.load(f)
    base = os.path.relpath(path, REPO)

    def panels(ps):
        for p in ps:
            yield p
            yield from panels(p.get("panels", []))

    for p in panels(d.get("panels", [])):
        for t in p.get("targets", []):
            if t.get("expr"):
                yield Expr(f'{base}: panel {p.get("id")} "{p.get("title", "")}" {t.get("refId", "")}',
                           t["expr"], t.get("legendFormat", ""))
    for v in d.get("templating", {}).get("list", []):
        if v.get("type") != "query":
            continue
        q = v.get("query")
        q = q.get("query", "") if isinstance(q, dict) else (q or "")
        where = f'{base}: variable ${v.get("name")}'
        m = re.fullmatch(r"\s*label_values\((.*),\s*(\w+)\s*\)\s*", q, re.S)
        if m:
            yield Expr(where, m.group(1), extra_labels=(m.group(2),))
            continue
        m = re.fullmatch(r"\s*query_result\((.*)\)\s*", q, re.S)
        if m:
            yield Expr(where, m.group(1))
        elif q and not re.match(r"\s*(label_values|label_names|metrics)\(", q):
            yield Expr(where, q)


def rule_files(paths):
    """(records: [(name, expr, static labels)], exprs: [Expr])"""
    records, exprs = [], []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            doc = yaml.safe_load(f) or {}
        base = os.path.relpath(path, REPO)
        for g in doc.get("groups", []):
            for r in g.get("rules", []):
                name = r.get("record") or r.get("alert")
                exprs.append(Expr(f'{base}: {g.get("name")}/{name}', str(r.get("expr", ""))))
                if r.get("record"):
                    records.append((r["record"], str(r["expr"]), set((r.get("labels") or {}).keys())))
    return records, exprs


HELM_LINE = re.compile(r"^\s*\{\{-?.*-?\}\}\s*$")


def analysis_template_exprs(root):
    for path in sorted(glob.glob(os.path.join(root, "**", "*.y*ml"), recursive=True)):
        with open(path, encoding="utf-8") as f:
            text = f.read()
        if "AnalysisTemplate" not in text:
            continue
        chart_templates = os.path.dirname(os.path.dirname(path))
        if os.path.basename(os.path.dirname(path)) == "templates" and \
                os.path.isfile(os.path.join(chart_templates, "Chart.yaml")):
            continue  # a Helm template: checked rendered (60-rollouts.sh)
        # Helm actions alone on a line go; inline ones (and Argo's {{args.x}}) become a word.
        text = "\n".join(l for l in text.splitlines() if not HELM_LINE.match(l))
        text = re.sub(r"\{\{.*?\}\}", "X", text)
        base = os.path.relpath(path, REPO)
        try:
            docs = list(yaml.safe_load_all(text))
        except yaml.YAMLError as e:
            yield Expr(f"{base}: unparseable YAML after removing Helm actions", "", ""), str(e)
            continue
        for doc in docs:
            if not isinstance(doc, dict) or doc.get("kind") not in ("AnalysisTemplate", "ClusterAnalysisTemplate"):
                continue
            for m in (doc.get("spec") or {}).get("metrics", []) or []:
                q = (((m.get("provider") or {}).get("prometheus")) or {}).get("query")
                if q:
                    yield Expr(f'{base}: {doc.get("metadata", {}).get("name")}/{m.get("name")}', q), None


# ------------------------------------------------------------------------------------ checking
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--metrics", nargs="+", required=True, help="/metrics captures (Prometheus text)")
    ap.add_argument("--dashboards", nargs="*",
                    default=sorted(glob.glob(os.path.join(REPO, "observability/grafana/dashboards/*.json"))))
    ap.add_argument("--rules", nargs="*",
                    default=sorted(glob.glob(os.path.join(REPO, "observability/prometheus/rules/*.yml"))))
    ap.add_argument("--charts", default=os.path.join(REPO, "charts"),
                    help="folder searched for Argo Rollouts AnalysisTemplates")
    ap.add_argument("-v", "--verbose", action="store_true", help="also list exported metrics nobody queries")
    args = ap.parse_args(argv)

    exported = read_exposition(args.metrics)
    known: dict[str, tuple[set, str]] = {}  # metric name -> (labels, where it comes from)
    for name, labels in exported.items():
        known[name] = (labels | TARGET_LABELS, "exposition")
    for source, metrics in EXPORTERS.items():
        for name, labels in metrics.items():
            labels = labels | {"job", "instance"}
            if name in EXPORTER_HISTOGRAMS:
                known[name + "_bucket"] = (labels | {"le"}, source)
                known[name + "_sum"] = (labels, source)
                known[name + "_count"] = (labels, source)
            else:
                known[name] = (labels, source)

    records, exprs = rule_files(args.rules)
    problems = []
    # Recording rules: their labels are what their grouping keeps, else what their inputs carry.
    pending = list(records)
    for _ in range(len(records) + 1):
        still = []
        for name, expr, static in pending:
            u = analyse(expr)
            inputs = [s for s, _ in u.selectors if s]
            if any(s not in known for s in inputs if s in {r[0] for r in pending}):
                still.append((name, expr, static))
                continue
            if u.grouping and not re.search(r"\b(without|ignoring|on|group_left|group_right)\b", expr):
                labels = set(u.grouping)
            else:
                labels = set().union(*(known.get(s, (set(), ""))[0] for s in inputs)) if inputs else set()
            if "histogram_quantile" in expr:
                labels.discard("le")
            known[name] = (labels | static | u.defined, "recording rule")
        pending = still
        if not pending:
            break
    for name, _, _ in pending:
        problems.append(f"recording rule {name}: depends on itself or on an undefined rule")

    sources = [e for p in args.dashboards for e in dashboard_exprs(p)] + exprs
    if os.path.isdir(args.charts):
        for e, err in analysis_template_exprs(args.charts):
            if err:
                problems.append(f"{e.where}: {err.splitlines()[0]}")
            else:
                sources.append(e)

    used = set()
    n_selectors = 0
    for e in sources:
        u = analyse(e.expr)
        problems += [f"{e.where}: {err}" for err in u.errors]
        available = set(u.defined)
        for name, labels in u.selectors:
            n_selectors += 1
            if name is None:
                problems.append(f"{e.where}: selector without a metric name")
                continue
            used.add(name)
            if name not in known:
                hint = difflib.get_close_matches(name, list(known), n=1, cutoff=0.75)
                problems.append(f'{e.where}: unknown metric "{name}"' +
                                (f' (did you mean "{hint[0]}"?)' if hint else ""))
                continue
            have, _ = known[name]
            available |= have
            for label in labels:
                if label not in have:
                    problems.append(f'{e.where}: metric "{name}" has no label "{label}"')
        if u.selectors and all(n in known for n, _ in u.selectors):
            wanted = (u.grouping | u.sources | set(e.extra_labels) |
                      set(re.findall(r"\{\{\s*([a-zA-Z_]\w*)\s*\}\}", e.legend)))
            for label in sorted(wanted - available):
                problems.append(f'{e.where}: label "{label}" is on none of the metrics of the expression')

    for p in problems:
        print(p)
    if args.verbose:
        bases = {re.sub(r"_(bucket|sum|count)$", "", n) for n in used}
        for name in sorted(exported):
            if name not in used and re.sub(r"_(bucket|sum|count)$", "", name) not in bases:
                print(f"info: exported but not queried: {name}")
    print(f"metrics_names: {len(sources)} expressions, {n_selectors} selectors, "
          f"{len(used)} metric names checked against {len(args.metrics)} exposition file(s): "
          f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
