#!/usr/bin/env python3
"""Argo Rollouts checks (issue 12) that schemas cannot make; used by scripts/validate.d/60-rollouts.sh.

  rollouts.py routing ROLLOUT.yaml ISTIO.yaml
      the Rollout's VirtualService, routes, DestinationRule and subsets exist in the istio
      chart's render, each route sends traffic to exactly the stable and canary subsets of the
      service, the subsets select the `version` the Rollout stamps on its pods; blue-green:
      active and preview Services in the render, the mesh routes the host to the active pods;
      every AnalysisTemplate the Rollout names is in the render
  rollouts.py envs
      per environment: a service with rollout.enabled in charts/microservice/env is flagged
      `rollout: true` in argocd/platform/env (so Argo CD ignores what the controller owns) and
      routed by istio/env with the strategy its Rollout needs; and no flag without a Rollout
  rollouts.py argocd RENDERED.yaml SERVICE
      the Applications of one environment rendered with services.SERVICE.rollout=true: the
      routing Application ignores that VirtualService's weights and DestinationRule's subset
      labels with RespectIgnoreDifferences=true; the controller is a pinned Application
  rollouts.py rules ROLLOUT.yaml OUT.yml
      writes every AnalysisTemplate query as a recording rule `rollout:<template>` and its
      successCondition as `rollout:<template>:ok` (1 passes, 0 fails), for promtool
"""
from __future__ import annotations

import os
import re
import sys

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checklib import Report, load, load_all, merge  # noqa: E402

REPO = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
ENVS = ["dev", "staging", "prod"]
SERVICES = ["user-service", "order-service", "notification-service"]
report = Report()






def by_kind(docs, kind):
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def check_routing(rollout_file, istio_file):
    chart, mesh = load_all(rollout_file), load_all(istio_file)
    problems = []
    rollouts = list(by_kind(chart, "Rollout").values())
    if len(rollouts) != 1:
        report(f"rollout routing: {os.path.basename(rollout_file)}", [f"expected one Rollout, found {len(rollouts)}"])
        return
    ro = rollouts[0]
    app = ro["metadata"]["labels"]["app"]
    strategy = ro["spec"]["strategy"]
    vss, drs, services = by_kind(mesh, "VirtualService"), by_kind(mesh, "DestinationRule"), by_kind(chart, "Service")
    templates = by_kind(chart, "AnalysisTemplate")
    refs = []
    if "canary" in strategy:
        c = strategy["canary"]
        istio = c["trafficRouting"]["istio"]
        vs_name, dr = istio["virtualService"]["name"], istio["destinationRule"]
        subsets = {"canary": dr["canarySubsetName"], "stable": dr["stableSubsetName"]}
        stamped = {"canary": c["canaryMetadata"]["labels"].get("version"),
                   "stable": c["stableMetadata"]["labels"].get("version")}
        vs, drule = vss.get(vs_name), drs.get(dr["name"])
        if vs is None:
            problems.append(f"VirtualService {vs_name} not in the istio render ({sorted(vss)})")
        if drule is None:
            problems.append(f"DestinationRule {dr['name']} not in the istio render ({sorted(drs)})")
        if vs is not None and drule is not None:
            host = drule["spec"]["host"]
            if not host.startswith(f"{app}."):
                problems.append(f"DestinationRule {dr['name']} is for host {host}, not {app}")
            routes = {r.get("name"): r for r in vs["spec"].get("http") or []}
            for name in istio["virtualService"].get("routes") or []:
                r = routes.get(name)
                if r is None:
                    problems.append(f"VirtualService {vs_name} has no route {name!r} (routes: {sorted(routes)}; "
                                    "the istio chart renders the weighted pair only with strategy canary)")
                    continue
                dests = sorted((d["destination"]["host"], d["destination"].get("subset")) for d in r.get("route") or [])
                want = sorted((host, s) for s in subsets.values())
                if dests != want:
                    problems.append(f"route {name!r} goes to {dests}; Argo Rollouts needs exactly {want}")
            defined = {s["name"]: s.get("labels") or {} for s in drule["spec"].get("subsets") or []}
            for role, subset in subsets.items():
                if subset not in defined:
                    problems.append(f"DestinationRule {dr['name']} has no subset {subset!r} ({sorted(defined)})")
                elif defined[subset] != {"version": stamped[role]}:
                    problems.append(f"subset {subset} selects {defined[subset]}, the {role} pods carry version={stamped[role]}")
        for step in c.get("steps") or []:
            refs += [t["templateName"] for t in (step.get("analysis") or {}).get("templates") or []]
        for svc_name in (c.get("stableService"), c.get("canaryService")):
            if svc_name and svc_name not in services:
                problems.append(f"Service {svc_name} not in the render")
    else:
        bg = strategy["blueGreen"]
        for key in ("activeService", "previewService"):
            s = services.get(bg.get(key))
            if s is None:
                problems.append(f"{key} {bg.get(key)} is not a Service of the render ({sorted(services)})")
            elif s["spec"].get("selector") != {"app": app}:
                problems.append(f"{key} {bg.get(key)} selects {s['spec'].get('selector')}, expected app={app} "
                                "(the controller adds the ReplicaSet hash)")
        active_version = bg["activeMetadata"]["labels"].get("version")
        vs = vss.get(app)
        if vs is None:
            problems.append(f"no VirtualService {app} in the istio render")
        else:
            subsets = {d["destination"].get("subset") for r in vs["spec"].get("http") or [] for d in r.get("route") or []
                       if r.get("name", "").split("-")[0] != "fault" and not r.get("match", [{}])[0].get("headers")}
            if subsets != {active_version}:
                problems.append(f"VirtualService {app} sends its default routes to {sorted(subsets)}; the active "
                                f"pods are version={active_version} (istio strategy must be stable)")
        refs += [t["templateName"] for t in (bg.get("prePromotionAnalysis") or {}).get("templates") or []]
    if not refs:
        problems.append("the Rollout runs no analysis")
    for t in refs:
        if t not in templates:
            problems.append(f"AnalysisTemplate {t} not in the render ({sorted(templates)})")
    kind = "canary" if "canary" in strategy else "blueGreen"
    report(f"rollout routing: {os.path.basename(rollout_file)} ({kind}) matches {os.path.basename(istio_file)}", problems)


def check_envs():
    problems = []
    chart = os.path.join(REPO, "charts", "microservice")
    argo_base = load(os.path.join(REPO, "argocd", "platform", "values.yaml"))
    for env in ENVS:
        argo = merge(argo_base, load(os.path.join(REPO, "argocd", "platform", "env", f"{env}.yaml")))
        mesh = merge(load(os.path.join(REPO, "istio", "values.yaml")), load(os.path.join(REPO, "istio", "env", f"{env}.yaml")))
        for svc in SERVICES:
            v = merge(load(os.path.join(chart, "values.yaml")), load(os.path.join(chart, "services", f"{svc}.yaml")),
                      load(os.path.join(chart, "env", env, f"{svc}.yaml")))
            ro = v["rollout"]
            flag = bool(argo["services"][svc].get("rollout"))
            if ro["enabled"] != flag:
                problems.append(f"{env}/{svc}: chart rollout.enabled={ro['enabled']} but argocd/platform/env/{env}.yaml "
                                f"services.{svc}.rollout={flag}")
            if not ro["enabled"]:
                continue
            if argo["services"][svc].get("tracks"):
                problems.append(f"{env}/{svc}: a Rollout runs both tracks, remove tracks {argo['services'][svc]['tracks']}")
            strategy = merge(mesh["defaults"], mesh["services"].get(svc) or {})["strategy"]
            want = "canary" if ro["strategy"] == "canary" else "stable"
            if strategy != want:
                problems.append(f"{env}/{svc}: Rollout strategy {ro['strategy']} needs istio/env/{env}.yaml "
                                f"services.{svc}.strategy: {want} (is {strategy})")
    report("rollout environments: chart, Argo CD and istio values agree on which services roll out how", problems)


def check_argocd(path, service):
    problems = []
    apps = {d["metadata"]["name"]: d for d in load_all(path) if d["kind"] == "Application"}
    routing = [a for n, a in apps.items() if n.endswith("-istio-routing")]
    if len(routing) != 1:
        problems.append(f"expected one *-istio-routing Application, found {len(routing)}")
    for a in routing:
        ign = a["spec"].get("ignoreDifferences") or []
        def has(kind, needle):
            return any(i.get("kind") == kind and i.get("name") == service and i.get("group") == "networking.istio.io"
                       and any(needle in e for e in i.get("jqPathExpressions") or []) for i in ign)
        if not has("VirtualService", ".weight"):
            problems.append(f"{a['metadata']['name']}: weights of VirtualService {service} not ignored")
        if not has("DestinationRule", "rollouts-pod-template-hash"):
            problems.append(f"{a['metadata']['name']}: rollouts-pod-template-hash of DestinationRule {service} not ignored")
        if "RespectIgnoreDifferences=true" not in a["spec"].get("syncPolicy", {}).get("syncOptions", []):
            problems.append(f"{a['metadata']['name']}: ignoreDifferences without RespectIgnoreDifferences=true")
    ctrl = [a for a in apps.values() if (a["spec"].get("source") or {}).get("chart") == "argo-rollouts"]
    if len(ctrl) != 1:
        problems.append("no Application installing the argo-rollouts chart")
    for a in ctrl:
        if not re.fullmatch(r"\d+\.\d+\.\d+", str(a["spec"]["source"].get("targetRevision"))):
            problems.append(f"{a['metadata']['name']}: argo-rollouts chart not pinned")
        wave = int(a["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"])
        svc_waves = [int(x["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"]) for x in apps.values()
                     if x["metadata"]["labels"].get("platform.microservices/tier") == "services"]
        if svc_waves and wave >= min(svc_waves):
            problems.append(f"{a['metadata']['name']}: wave {wave} is not before the services' ({min(svc_waves)})")
    report(f"rollout in Argo CD: routing ignores what the controller of {service} owns, controller pinned", problems)


def write_rules(path, out):
    rules = []
    for t in load_all(path):
        if t["kind"] != "AnalysisTemplate":
            continue
        for m in t["spec"]["metrics"]:
            q = m["provider"]["prometheus"]["query"].strip()
            name = "rollout:" + re.sub(r"[^a-zA-Z0-9_]", "_", m["name"])
            rules.append({"record": name, "expr": q})
            cond = re.fullmatch(r"result\[0\]\s*(>=|<=|>|<|==)\s*([0-9.eE+-]+)", m.get("successCondition", "").strip())
            if not cond:
                raise SystemExit(f"{t['metadata']['name']}: successCondition {m.get('successCondition')!r} not understood")
            rules.append({"record": f"{name}:ok", "expr": f"({q}) {cond.group(1)} bool {cond.group(2)}"})
    with open(out, "w", encoding="utf-8") as f:
        yaml.safe_dump({"groups": [{"name": "analysis", "rules": rules}]}, f, sort_keys=False, width=1000)
    print(f"{len(rules)} rules from {os.path.basename(path)}")


def main(argv):
    cmd, args = argv[0], argv[1:]
    if cmd == "routing":
        check_routing(*args)
    elif cmd == "envs":
        check_envs()
    elif cmd == "argocd":
        check_argocd(*args)
    elif cmd == "rules":
        write_rules(*args)
    else:
        print(__doc__)
        return 2
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
