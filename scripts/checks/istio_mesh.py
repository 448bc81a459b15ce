#!/usr/bin/env python3
"""Cross-checks the rendered mesh chart (istio/) against the services' chart and the contract.

    istio_mesh.py --renders DIR [--chart-renders DIR]

--renders holds `helm template` outputs of istio/, named for what they render:
  <env>.yaml            env/<env>.yaml as committed (values in force: istio/env/<env>.yaml)
  canary-<W>.yaml       every service in canary mode with canary.weight W
  bluegreen-<C>.yaml    every service in blue-green mode with colour C active
  fault-<service>.yaml  faultInjection.enabled for that service (header-gated by default)
--chart-renders holds renders of charts/microservice (one per service and track). Without it
(the chart not written yet) Services, ports, pod labels and ServiceAccounts come from
docs/CONTRACTS.md.

One `ok - ` / `not ok - ` line per check, failures name the render they come from.
"""

import argparse
import base64
import json
import pathlib
import re
import sys

import yaml

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import kong_istio_contract  # noqa: E402
from kong_istio_contract import REPO  # noqa: E402
from kong_plugins import pem_rsa_public_key  # noqa: E402
from kong_routes import OPEN_OPERATIONS  # noqa: E402

CONTRACT = kong_istio_contract.load()
NS = CONTRACT["namespace"]
SERVICES = CONTRACT["services"]
TRACKS = CONTRACT["tracks"]
MESH_VALUES = yaml.safe_load((REPO / "istio" / "values.yaml").read_text(encoding="utf-8"))
KONG = MESH_VALUES["kong"]
TRUST = MESH_VALUES["trustDomain"]
ISSUER, AUDIENCE = "user-service", "microservices-platform"  # docs/CONTRACTS.md auth defaults
IDEMPOTENT = {"GET", "HEAD"}
DEPS = MESH_VALUES["dependencies"]
PLAINTEXT = "(plaintext, no mesh identity)"


def principal(namespace, sa):
    return kong_istio_contract.principal(sa, namespace, TRUST)


def load_docs(path):
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


class Platform:
    """Services, pod labels per track and ServiceAccounts, from the chart's renders or the contract."""

    def __init__(self, chart_dir):
        self.services = {}  # fqdn -> {"ports": {int}, "selector": {}, "pods": [labels...]}
        self.service_accounts = set()  # (namespace, name)
        self.pod_labels = []  # pod template labels of every rendered workload
        self.source = "docs/CONTRACTS.md"
        if chart_dir and any(pathlib.Path(chart_dir).glob("*.yaml")):
            self.source = "charts/microservice renders"
            for f in sorted(pathlib.Path(chart_dir).glob("*.yaml")):
                for d in load_docs(f):
                    self._add(d)
        else:
            for svc, port in SERVICES.items():
                fq = kong_istio_contract.service_fqdn(svc, NS)
                self.services[fq] = {"ports": {port}, "selector": {"app": svc},
                                     "pods": [{"app": svc, "version": t} for t in TRACKS]}
                self.service_accounts.add((NS, svc))
        # Kong's proxy Service, from Kong's chart values (kong/k8s/chart/values.yaml, checked
        # against istio/values.yaml by kong_k8s.py); Kong's chart is not rendered here.
        kong_fq = kong_istio_contract.service_fqdn(KONG["service"], KONG["namespace"])
        self.services.setdefault(kong_fq, {"ports": {KONG["port"]}, "selector": KONG["selector"],
                                           "pods": [KONG["selector"]]})
        self.service_accounts.add((KONG["namespace"], KONG["serviceAccount"]))

    def _add(self, d):
        kind, meta = d.get("kind"), d.get("metadata") or {}
        ns = meta.get("namespace") or NS
        if kind == "Service":
            fq = kong_istio_contract.service_fqdn(meta["name"], ns)
            entry = self.services.setdefault(fq, {"ports": set(), "selector": {}, "pods": []})
            entry["ports"] |= {p["port"] for p in d["spec"].get("ports") or []}
            entry["selector"] = d["spec"].get("selector") or {}
        elif kind == "ServiceAccount":
            self.service_accounts.add((ns, meta["name"]))
        elif kind in ("Deployment", "StatefulSet"):
            self.pod_labels.append(d["spec"]["template"]["metadata"].get("labels") or {})

    def pods_of(self, fqdn):
        """Labels of the pods behind a Service: the contract's, or rendered ones its selector picks."""
        svc = self.services.get(fqdn) or {}
        sel = svc.get("selector") or {}
        return (svc.get("pods") or []) + [p for p in self.pod_labels if sel and sel.items() <= p.items()]


def deployed_tracks(env, service):
    """Tracks of SERVICE that run in ENV: the primary release's track and Argo CD's extra tracks,
    or None when those files are not there to tell."""
    primary = REPO / "charts" / "microservice" / "env" / env / f"{service}.yaml"
    argo = REPO / "argocd" / "platform" / "env" / f"{env}.yaml"
    if not primary.exists() or not argo.exists():
        return None
    tracks = {(yaml.safe_load(primary.read_text(encoding="utf-8")) or {}).get("track", "stable")}
    argo_services = (yaml.safe_load(argo.read_text(encoding="utf-8")) or {}).get("services") or {}
    return tracks | set((argo_services.get(service) or {}).get("tracks") or [])


def variant_of(name):
    if m := re.fullmatch(r"canary-(\d+)", name):
        return "canary", int(m.group(1))
    if m := re.fullmatch(r"bluegreen-(blue|green)", name):
        return "blueGreen", m.group(1)
    if m := re.fullmatch(r"fault-([a-z-]+)", name):
        return "fault", m.group(1)
    return "env", name


def allows_nothing(policy):
    """An ALLOW policy without rules matches no request: with no selector it denies by default."""
    spec = policy.get("spec") or {}
    return spec.get("action", "ALLOW") == "ALLOW" and not spec.get("rules") and not spec.get("selector")


def methods_of(match_list):
    """The methods a route is limited to, or None when some match allows any method."""
    if not match_list:
        return None
    methods = set()
    for m in match_list:
        method = (m or {}).get("method")
        if not method or "exact" not in method:
            return None
        methods.add(method["exact"])
    return methods


def headers_of(match_list):
    return {h: v.get("exact") for m in match_list or [] for h, v in ((m or {}).get("headers") or {}).items()}


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--renders", required=True)
    ap.add_argument("--chart-renders")
    args = ap.parse_args(argv)
    platform = Platform(args.chart_renders)
    checks = kong_istio_contract.Checks()
    errs = {k: [] for k in ("destinations", "weights", "shape", "retries", "dr", "mtls", "authz",
                            "principals", "jwt", "telemetry", "gateway")}
    renders = sorted(pathlib.Path(args.renders).glob("*.yaml"))
    if not renders:
        raise SystemExit(f"no renders in {args.renders}")

    kong_doc = yaml.safe_load((REPO / "kong" / "kong.yml").read_text(encoding="utf-8"))
    kong_keys = [pem_rsa_public_key(s["rsa_public_key"]) for c in kong_doc.get("consumers") or []
                 for s in c.get("jwt_secrets") or [] if s.get("key") == ISSUER]

    for path in renders:
        name = path.stem
        kind_of_variant, variant = variant_of(name)
        docs = load_docs(path)
        by_kind = {}
        for d in docs:
            by_kind.setdefault(d["kind"], []).append(d)
        drs = {d["spec"]["host"]: d for d in by_kind.get("DestinationRule", [])}

        # DestinationRules: one per service with mTLS, limits, outlier detection, every track.
        for svc in SERVICES:
            fq = kong_istio_contract.service_fqdn(svc, NS)
            dr = drs.get(fq)
            if not dr:
                errs["dr"].append(f"{name}: no DestinationRule for {fq}")
                continue
            tp = dr["spec"].get("trafficPolicy") or {}
            if (tp.get("tls") or {}).get("mode") != "ISTIO_MUTUAL":
                errs["dr"].append(f"{name}: {fq} tls.mode is not ISTIO_MUTUAL")
            for key in ("connectionPool", "outlierDetection"):
                if not tp.get(key):
                    errs["dr"].append(f"{name}: {fq} has no trafficPolicy.{key}")
            subsets = {s["name"]: s.get("labels") or {} for s in dr["spec"].get("subsets") or []}
            if set(subsets) != set(TRACKS):
                errs["dr"].append(f"{name}: {fq} subsets {sorted(subsets)} != tracks {sorted(TRACKS)}")

        # VirtualServices: destinations, weights, retries, strategy shape.
        for vs in by_kind.get("VirtualService", []):
            vname = vs["metadata"]["name"]
            where = f"{name}: VirtualService {vname}"
            for i, route in enumerate(vs["spec"].get("http") or []):
                rname = route.get("name", f"#{i}")
                dests = route.get("route") or []
                for dst in dests:
                    d = dst["destination"]
                    host, port, subset = d["host"], (d.get("port") or {}).get("number"), d.get("subset")
                    svc = platform.services.get(host)
                    if svc is None:
                        errs["destinations"].append(f"{where} route {rname}: host {host} is no Service ({platform.source})")
                        continue
                    if port not in svc["ports"]:
                        errs["destinations"].append(f"{where} route {rname}: {host} port {port} not in {sorted(svc['ports'])}")
                    if subset is not None:
                        dr = drs.get(host)
                        labels = next((s.get("labels") or {} for s in (dr or {}).get("spec", {}).get("subsets") or []
                                       if s["name"] == subset), None)
                        if labels is None:
                            errs["destinations"].append(f"{where} route {rname}: subset {subset} of {host} is in no DestinationRule")
                        elif not any(labels.items() <= p.items() for p in platform.pods_of(host)):
                            errs["destinations"].append(f"{where} route {rname}: subset {subset} labels {labels} match no pod of {host} ({platform.source})")
                weights = [dst.get("weight") for dst in dests]
                if len(dests) > 1 or any(w is not None for w in weights):
                    if any(not isinstance(w, int) or not 0 <= w <= 100 for w in weights) or sum(w or 0 for w in weights) != 100:
                        errs["weights"].append(f"{where} route {rname}: weights {weights} do not sum to 100")
                methods = methods_of(route.get("match"))
                attempts = (route.get("retries") or {}).get("attempts")
                if methods is None or not methods <= IDEMPOTENT:
                    if attempts != 0:
                        errs["retries"].append(f"{where} route {rname}: not limited to GET/HEAD but retries.attempts={attempts} (must be 0)")
                if not route.get("timeout"):
                    errs["retries"].append(f"{where} route {rname}: no timeout")

            if vname in SERVICES and kind_of_variant == "env":
                running = deployed_tracks(variant, vname)
                routed = {d["destination"].get("subset") for r in vs["spec"]["http"] if not r.get("fault")
                          for d in r.get("route") or [] if d.get("weight", 100) > 0}
                if running is not None and not routed <= running:
                    errs["shape"].append(f"{where}: routes traffic to {sorted(routed - running)}, but only "
                                         f"{sorted(running)} run in {variant} (charts/microservice/env, argocd/platform/env)")
            if vname not in SERVICES or kind_of_variant == "env":
                continue
            http = vs["spec"]["http"]
            if kind_of_variant == "fault":
                faults = [r for r in http if r.get("fault")]
                if (vname == variant) != bool(faults):
                    errs["shape"].append(f"{where}: {len(faults)} fault-injection routes")
                elif faults and (http[0] is not faults[0] or not headers_of(faults[0].get("match"))):
                    errs["shape"].append(f"{where}: the fault route must come first and be gated by a header")
                continue
            plain = [r for r in http if not headers_of(r.get("match"))]
            subsets_of = lambda r: {d["destination"].get("subset"): d.get("weight") for d in r.get("route") or []}  # noqa: E731
            if kind_of_variant == "canary":
                want = {"stable": 100 - variant, "canary": variant}
                testers = [r for r in http if headers_of(r.get("match")).get("x-canary") == "always"]
                if not testers or any(subsets_of(r) != {"canary": 100} for r in testers):
                    errs["shape"].append(f"{where}: x-canary: always does not send every method to the canary")
                if not plain or any(subsets_of(r) != want for r in plain):
                    errs["shape"].append(f"{where}: default routes {[subsets_of(r) for r in plain]} != {want}")
            else:
                idle = "green" if variant == "blue" else "blue"
                preview = [r for r in http if headers_of(r.get("match")).get("x-preview") == "true"]
                if not preview or any(subsets_of(r) != {idle: 100} for r in preview):
                    errs["shape"].append(f"{where}: x-preview: true does not reach the idle colour {idle}")
                if not plain or any(subsets_of(r) != {variant: 100} for r in plain):
                    errs["shape"].append(f"{where}: default routes {[subsets_of(r) for r in plain]} != {{{variant!r}: 100}}")

        # Gateway: HTTP and HTTPS with a credential; the edge VirtualService binds to it.
        gws = by_kind.get("Gateway", [])
        if len(gws) != 1:
            errs["gateway"].append(f"{name}: {len(gws)} Gateways, expected 1")
        else:
            gw = gws[0]
            servers = {s["port"]["protocol"]: s for s in gw["spec"]["servers"]}
            if "HTTP" not in servers:
                errs["gateway"].append(f"{name}: Gateway has no HTTP server")
            https = servers.get("HTTPS")
            if https and not (https.get("tls") or {}).get("credentialName"):
                errs["gateway"].append(f"{name}: HTTPS server without tls.credentialName")
            if kind_of_variant == "env":
                env_values = yaml.safe_load((REPO / "istio" / "env" / f"{variant}.yaml").read_text()) or {}
                tls_on = ((env_values.get("gateway") or {}).get("tls") or {}).get("enabled", MESH_VALUES["gateway"]["tls"]["enabled"])
                if bool(https) != bool(tls_on):
                    errs["gateway"].append(f"{name}: HTTPS server {'missing' if tls_on else 'present'} (tls.enabled={tls_on})")
            gw_ref = f"{gw['metadata']['namespace']}/{gw['metadata']['name']}"
            edge = [v for v in by_kind.get("VirtualService", []) if gw_ref in (v["spec"].get("gateways") or [])]
            kong_fq = kong_istio_contract.service_fqdn(KONG["service"], KONG["namespace"])
            if not edge or any(d["destination"]["host"] != kong_fq for v in edge for r in v["spec"]["http"] for d in r["route"]):
                errs["gateway"].append(f"{name}: no VirtualService on {gw_ref} sending everything to {kong_fq}")

        # Workloads policies may select: Kong, the services, NATS and each service's database.
        targets = {frozenset(KONG["selector"].items()): "kong"}
        targets |= {frozenset({"app": svc}.items()): svc for svc in SERVICES}
        targets[frozenset(DEPS["nats"]["selector"].items())] = "nats"
        targets |= {frozenset({DEPS["databases"]["instanceLabel"]: f"{svc}-db"}.items()): f"{svc}-db" for svc in SERVICES}

        # mTLS: STRICT for whole namespaces holding platform workloads.
        namespaces = {NS, KONG["namespace"]}
        strict = {p["metadata"]["namespace"] for p in by_kind.get("PeerAuthentication", [])
                  if not p["spec"].get("selector") and (p["spec"].get("mtls") or {}).get("mode") == "STRICT"
                  and all((v or {}).get("mode") == "STRICT" for v in (p["spec"].get("portLevelMtls") or {}).values())}
        for ns in sorted(namespaces - strict):
            errs["mtls"].append(f"{name}: namespace {ns} has no namespace-wide STRICT PeerAuthentication")
        for pa in by_kind.get("PeerAuthentication", []):
            labels = ((pa["spec"].get("selector") or {}).get("matchLabels")) or {}
            loose = {str(port) for port, v in (pa["spec"].get("portLevelMtls") or {}).items() if (v or {}).get("mode") != "STRICT"}
            if (pa["spec"].get("mtls") or {}).get("mode", "STRICT") != "STRICT" or (
                    loose and not (targets.get(frozenset(labels.items()), "").endswith("-db")
                                   and DEPS["databases"]["plaintextMigrations"] and loose == {str(DEPS["databases"]["port"])})):
                errs["mtls"].append(f"{name}: PeerAuthentication {pa['metadata']['name']} relaxes mTLS "
                                    f"(only the databases' port may, for the sidecar-less migration Job)")

        # Authorization: deny-all per namespace, then exactly the expected edges.
        policies = by_kind.get("AuthorizationPolicy", [])
        for ns in sorted(namespaces):
            if not any(p["metadata"]["namespace"] == ns and allows_nothing(p) for p in policies):
                errs["authz"].append(f"{name}: namespace {ns} has no deny-all (empty spec) AuthorizationPolicy")
        gateway_p = principal(MESH_VALUES["gateway"]["workloadNamespace"], MESH_VALUES["gateway"]["serviceAccount"])
        prom_p = principal(MESH_VALUES["prometheus"]["namespace"], MESH_VALUES["prometheus"]["serviceAccount"])
        kong_p = principal(KONG["namespace"], KONG["serviceAccount"])
        expected = {(gateway_p, "kong"), (prom_p, "kong")}
        expected |= {(kong_p, s) for s in SERVICES} | {(prom_p, s) for s in SERVICES}
        expected |= {(principal(NS, "order-service"), "user-service"),
                     (principal(NS, "notification-service"), "user-service")}
        if DEPS["nats"]["enabled"]:
            expected |= {(principal(NS, s), "nats") for s in SERVICES}
            expected.add((principal(NS, DEPS["nats"]["serviceAccount"]), "nats"))
        if DEPS["databases"]["enabled"]:
            expected |= {(principal(NS, s), f"{s}-db") for s in SERVICES}
            if DEPS["databases"]["plaintextMigrations"]:
                expected |= {(PLAINTEXT, f"{s}-db") for s in SERVICES}
        edges = {}
        for p in policies:
            spec = p.get("spec") or {}
            if allows_nothing(p):
                continue
            pw = f"{name}: AuthorizationPolicy {p['metadata']['namespace']}/{p['metadata']['name']}"
            if spec.get("action", "ALLOW") != "ALLOW":
                errs["authz"].append(f"{pw}: action {spec.get('action')}, only ALLOW policies expected")
            labels = (spec.get("selector") or {}).get("matchLabels") or {}
            target = targets.get(frozenset(labels.items()))
            if not labels:
                errs["authz"].append(f"{pw}: ALLOW policy without a selector opens a whole namespace")
            elif target is None:
                errs["authz"].append(f"{pw}: selector {labels} is no platform workload")
            for rule in spec.get("rules") or []:
                sources = [f.get("source") or {} for f in rule.get("from") or []]
                principals = [pr for s in sources for pr in s.get("principals") or []]
                plaintext = [s for s in sources if s.get("notPrincipals") == ["*"] and len(s) == 1]
                if plaintext and len(plaintext) == len(sources):
                    ports = {p for t in rule.get("to") or [{}] for p in (t.get("operation") or {}).get("ports") or ["*"]}
                    if ports != {str(DEPS["databases"]["port"])}:
                        errs["authz"].append(f"{pw}: plaintext callers allowed on ports {sorted(ports)}")
                    edges.setdefault((PLAINTEXT, target), []).append(rule)
                    continue
                if not principals:
                    errs["authz"].append(f"{pw}: a rule without source principals allows any caller")
                for pr in principals:
                    edges.setdefault((pr, target), []).append(rule)
                    ns_sa = re.fullmatch(rf"{re.escape(TRUST)}/ns/([a-z0-9-]+)/sa/([a-z0-9-]+)", pr)
                    if not ns_sa:
                        errs["principals"].append(f"{pw}: principal {pr!r} is not {TRUST}/ns/<ns>/sa/<sa>")
                    elif ns_sa.group(1) in namespaces and ns_sa.group(2) != "default" and \
                            (ns_sa.group(1), ns_sa.group(2)) not in platform.service_accounts:
                        errs["principals"].append(f"{pw}: principal {pr} names no ServiceAccount of {platform.source}")
        got = set(edges)
        for edge in sorted(got - expected):
            errs["authz"].append(f"{name}: unexpected call allowed: {edge[0]} -> {edge[1]}")
        for edge in sorted(expected - got):
            errs["authz"].append(f"{name}: expected call not allowed: {edge[0]} -> {edge[1]}")
        narrow = {  # caller -> target: the only operations allowed
            (principal(NS, "order-service"), "user-service"): {"GET": {"/api/users/*", "/.well-known/jwks.json"}},
            (principal(NS, "notification-service"), "user-service"): {"GET": {"/.well-known/jwks.json"}},
            **{(prom_p, s): {"GET": {"/metrics"}} for s in [*SERVICES, "kong"]},
        }
        for edge, allowed in narrow.items():
            for rule in edges.get(edge, []):
                for to in rule.get("to") or [{}]:
                    op = to.get("operation") or {}
                    ms, ps = op.get("methods"), op.get("paths")
                    if not ms or not ps or any(m not in allowed or not set(ps) <= allowed[m] for m in ms):
                        errs["authz"].append(f"{name}: {edge[0]} -> {edge[1]} allows {ms or 'any method'} {ps or 'any path'}, "
                                             f"only {dict((k, sorted(v)) for k, v in allowed.items())}")

        # Kong -> services without a token: exactly Kong's open operations (kong_routes.py).
        tokenless = set()
        for (pr, target), rules in edges.items():
            if pr != kong_p:
                continue
            for rule in rules:
                if any((f.get("source") or {}).get("requestPrincipals") for f in rule.get("from") or []):
                    continue
                for to in rule.get("to") or [{}]:
                    op = to.get("operation") or {}
                    for m in op.get("methods") or ["*"]:
                        for p in op.get("paths") or ["*"]:
                            tokenless.add((m, p))
        want_open = OPEN_OPERATIONS | {("HEAD", p) for m, p in OPEN_OPERATIONS if m == "GET"}
        if tokenless != want_open:
            errs["authz"].append(f"{name}: Kong may call without a token {sorted(tokenless)}, "
                                 f"Kong's open operations are {sorted(want_open)}")

        # JWT: inline JWKS (istiod cannot fetch an in-mesh jwksUri under STRICT mTLS), same key as Kong.
        ras = by_kind.get("RequestAuthentication", [])
        if not ras:
            errs["jwt"].append(f"{name}: no RequestAuthentication")
        for ra in ras:
            for rule in ra["spec"].get("jwtRules") or []:
                rw = f"{name}: RequestAuthentication {ra['metadata']['name']}"
                if rule.get("issuer") != ISSUER or AUDIENCE not in (rule.get("audiences") or []):
                    errs["jwt"].append(f"{rw}: issuer/audiences {rule.get('issuer')}/{rule.get('audiences')} != {ISSUER}/{AUDIENCE}")
                if not rule.get("forwardOriginalToken"):
                    errs["jwt"].append(f"{rw}: forwardOriginalToken is off: the services would not see the token they verify")
                uri = rule.get("jwksUri")
                if uri and re.search(r"\.svc(\.cluster\.local)?(:\d+)?/|//[a-z-]+(:\d+)?/", uri):
                    errs["jwt"].append(f"{rw}: jwksUri {uri} is in-mesh: istiod cannot fetch it under STRICT mTLS")
                if rule.get("jwks"):
                    keys = json.loads(rule["jwks"]).get("keys") or []
                    b64 = lambda s: int.from_bytes(base64.urlsafe_b64decode(s + "=" * (-len(s) % 4)), "big")  # noqa: E731
                    ne = [(b64(k["n"]), b64(k["e"])) for k in keys if k.get("kty") == "RSA"]
                    if not kong_keys or not set(ne) & set(kong_keys):
                        errs["jwt"].append(f"{rw}: inline JWKS holds no key equal to Kong's rsa_public_key for iss={ISSUER}")
                elif not uri:
                    errs["jwt"].append(f"{rw}: neither jwks nor jwksUri")

        # Telemetry: sampling from values in each namespace.
        want = MESH_VALUES["tracing"]["samplingPercentage"]
        if kind_of_variant == "env":
            env_values = yaml.safe_load((REPO / "istio" / "env" / f"{variant}.yaml").read_text()) or {}
            want = (env_values.get("tracing") or {}).get("samplingPercentage", want)
        tel = {t["metadata"]["namespace"]: t for t in by_kind.get("Telemetry", [])}
        for ns in sorted(namespaces):
            got_pct = [tr.get("randomSamplingPercentage") for tr in ((tel.get(ns) or {}).get("spec") or {}).get("tracing") or []]
            if got_pct != [want]:
                errs["telemetry"].append(f"{name}: Telemetry in {ns} samples {got_pct}, values say {want}")

    n = len(renders)
    titles = {
        "destinations": f"istio destinations name a Service, port and subset whose labels match pods ({platform.source}; {n} renders)",
        "weights": "istio route weights sum to 100 in every render",
        "shape": "istio canary steps, blue/green colours, fault drills route as asked; each env routes only to tracks it runs",
        "retries": "istio retries only on GET/HEAD routes, every route has a timeout",
        "dr": "istio DestinationRules: ISTIO_MUTUAL, connection pool, outlier detection, a subset per track",
        "mtls": "istio PeerAuthentication STRICT in the services' and Kong's namespaces (only the DB port relaxed, for migrations)",
        "authz": "istio authorization: deny-all, then exactly gateway->kong, kong->services, order->user, jwks, /metrics, NATS, databases",
        "principals": f"istio principals are ServiceAccounts the charts create ({platform.source})",
        "jwt": "istio RequestAuthentication: user-service issuer, inline JWKS equal to Kong's key, token forwarded",
        "telemetry": "istio Telemetry sampling equals the values of each render",
        "gateway": "istio Gateway: HTTP (+HTTPS with credentialName when enabled), edge VirtualService to Kong",
    }
    for key, title in titles.items():
        checks.report(title, errs[key][:40])
    return checks.exit_code()


if __name__ == "__main__":
    sys.exit(main())
