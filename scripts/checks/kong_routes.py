#!/usr/bin/env python3
"""Kong routes against the services' OpenAPI documents, by the matching Kong itself applies.

    kong_routes.py [--kong kong/kong.yml] --openapi user=FILE order=FILE notification=FILE

Checks, one `ok - ` / `not ok - ` line each (details as `#` lines):
  upstreams   every Kong service targets <service>.<namespace>.svc.cluster.local:<contract port>
              (the Kubernetes Service, so the Kong sidecar applies Istio subsets and weights);
  reachable   every operation of every OpenAPI document is routed to a service declaring it,
              unchanged path (operations declared by several services, like /health, may go to any
              one of them); /metrics, /openapi.json and /api/audit must not be routed at all (internal);
  owned       every route and each of its methods serves an operation its service declares (no
              dead or over-broad route);
  unambiguous no request is matched by two routes of the same priority on different services;
  auth        exactly the open operations (registration, login, JWKS, health, ready) pass without
              a token; every other routed operation needs one.

Matching is Kong 3's traditional_compatible router (kong/router/transform.lua): a route with
several paths is split per path; candidates are ordered by (number of matching fields, plain
hosts, header count, regex path, regex_priority, prefix length); regex paths are anchored at the
start; HEAD is served by a GET handler and OPTIONS by the cors plugin.
"""

import argparse
import json
import pathlib
import re
import sys
import urllib.parse

import yaml

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import kong_istio_contract  # noqa: E402

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
# Not for the gateway: Prometheus scrapes /metrics and the OpenAPI documents inside the mesh;
# /api/audit exists on every service at the same path and is an operator API (admins reach a
# service's trail inside the cluster), so no single Kong route could serve it honestly.
INTERNAL_PATHS = ("/metrics", "/openapi.json", "/api/audit")
OPEN_OPERATIONS = {
    ("POST", "/api/users"),
    ("POST", "/api/auth/login"),
    ("GET", "/.well-known/jwks.json"),
    ("GET", "/health"),
    ("GET", "/ready"),
}
# Two samples per path parameter: a UUID and a number, as either kind of id may be used.
SAMPLES = ("3f2b8c1e-9d4a-4e5b-8c7d-1a2b3c4d5e6f", "42")


def load_openapi(files):
    """{service: {(METHOD, template)}} from name=FILE arguments (name: user or user-service)."""
    ops = {}
    for arg in files:
        name, _, file = arg.partition("=")
        if not file:
            raise SystemExit(f"--openapi expects NAME=FILE, got {arg!r}")
        service = name if name.endswith("-service") else f"{name}-service"
        doc = json.loads(pathlib.Path(file).read_text(encoding="utf-8"))
        ops[service] = {
            (m.upper(), path)
            for path, item in (doc.get("paths") or {}).items()
            for m in item
            if m.upper() in METHODS + ("OPTIONS", "TRACE")
        }
    return ops


def concrete(template, sample):
    return re.sub(r"\{[^/}]+\}", sample, template)


class Route:
    def __init__(self, raw, service, plugins):
        self.name = raw.get("name") or raw.get("id") or "?"
        self.service = service
        self.methods = [m.upper() for m in raw["methods"]] if raw.get("methods") else None
        self.hosts = raw.get("hosts")
        self.headers = raw.get("headers") or {}
        self.strip_path = raw.get("strip_path", True)
        self.regex_priority = raw.get("regex_priority", 0)
        self.plugins = plugins
        self.candidates = []
        for path in raw.get("paths") or ["/"]:
            regex = path.startswith("~")
            weight = sum(1 for f in ("methods", "hosts", "snis", "paths") if raw.get(f))
            weight += 1 if self.headers else 0
            plain_hosts = self.hosts is not None and all("*" not in h for h in self.hosts)
            priority = (
                weight,
                plain_hosts,
                len(self.headers),
                regex,
                self.regex_priority if regex else 0,
                0 if regex else len(path),
            )
            matcher = re.compile("^" + path[1:].replace("(?<", "(?P<")) if regex else path
            self.candidates.append((priority, path, matcher))

    def match(self, method, path):
        """The (priority, path) of the best of this route's paths matching, or None."""
        if self.methods is not None and method not in self.methods:
            return None
        if self.headers:  # probes carry no routing headers
            return None
        best = None
        for priority, raw_path, matcher in self.candidates:
            if isinstance(matcher, str):
                hit = path.startswith(matcher)
                consumed = matcher
            else:
                m = matcher.match(path)
                hit = m is not None
                consumed = m.group(0) if m else ""
            if hit and (best is None or priority > best[0]):
                best = (priority, raw_path, consumed)
        return best


class Kong:
    def __init__(self, config):
        self.global_plugins = {p["name"]: p for p in config.get("plugins") or [] if p.get("enabled", True)}
        self.services = {}
        self.routes = []
        for svc in config.get("services") or []:
            self.services[svc["name"]] = svc
            svc_plugins = {p["name"]: p for p in svc.get("plugins") or [] if p.get("enabled", True)}
            for raw in svc.get("routes") or []:
                plugins = {p["name"]: p for p in raw.get("plugins") or [] if p.get("enabled", True)}
                self.routes.append(Route(raw, svc["name"], (plugins, svc_plugins)))
        for raw in config.get("routes") or []:  # top-level routes reference their service
            ref = raw.get("service")
            name = ref.get("name") if isinstance(ref, dict) else ref
            svc_plugins = {p["name"]: p for p in self.services.get(name, {}).get("plugins") or []}
            plugins = {p["name"]: p for p in raw.get("plugins") or []}
            self.routes.append(Route(raw, name, (plugins, svc_plugins)))

    def resolve(self, method, path):
        """All routes tied for the best priority for this request ([] when nothing matches)."""
        hits = []
        for route in self.routes:
            m = route.match(method, path)
            if m:
                hits.append((m[0], route, m[2]))
        if not hits:
            return []
        top = max(h[0] for h in hits)
        return [(route, consumed) for prio, route, consumed in hits if prio == top]

    def plugin(self, route, name):
        """The plugin instance Kong runs for this route: route, then service, then global."""
        route_plugins, svc_plugins = route.plugins
        return route_plugins.get(name) or svc_plugins.get(name) or self.global_plugins.get(name)

    def upstream(self, service_name):
        svc = self.services.get(service_name) or {}
        if svc.get("url"):
            u = urllib.parse.urlsplit(svc["url"])
            return u.hostname, u.port or (443 if u.scheme == "https" else 80), u.path or None
        return svc.get("host"), svc.get("port", 80), svc.get("path")


def forwarded_path(route, kong, request_path, consumed):
    _, _, base = kong.upstream(route.service)
    rest = request_path[len(consumed):] if route.strip_path else request_path
    if not base or base == "/":
        return rest if rest.startswith("/") else "/" + rest
    return base.rstrip("/") + ("/" + rest.lstrip("/") if rest else "")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kong", default=str(kong_istio_contract.REPO / "kong" / "kong.yml"))
    ap.add_argument("--openapi", nargs="+", required=True, metavar="NAME=FILE")
    ap.add_argument("--contracts", default=str(kong_istio_contract.CONTRACTS))
    args = ap.parse_args(argv)

    contract = kong_istio_contract.load(args.contracts)
    kong = Kong(yaml.safe_load(pathlib.Path(args.kong).read_text(encoding="utf-8")))
    ops = load_openapi(args.openapi)
    failures = {}

    def fail(check, msg):
        msgs = failures.setdefault(check, [])
        if msg not in msgs:  # the two samples of one path report the same miss once
            msgs.append(msg)

    # Which platform service each Kong service reaches.
    owner = {}
    for name in kong.services:
        host, port, _ = kong.upstream(name)
        found = [
            s for s in contract["services"]
            if host == kong_istio_contract.service_fqdn(s, contract["namespace"])
        ]
        if not found:
            fail("upstreams", f"Kong service {name}: host {host} is not <service>."
                 f"{contract['namespace']}.svc.cluster.local of a contract service")
            continue
        owner[name] = found[0]
        if port != contract["services"][found[0]]:
            fail("upstreams", f"Kong service {name}: port {port}, contract says "
                 f"{contract['services'][found[0]]}")
    missing_docs = set(owner.values()) - set(ops)
    if missing_docs:
        fail("reachable", f"no OpenAPI document given for {sorted(missing_docs)}")

    declared_by = {}
    for svc, svc_ops in ops.items():
        for op in svc_ops:
            declared_by.setdefault(op, set()).add(svc)

    served = set()  # (route name, method) pairs some declared operation reaches
    for (method, template), owners in sorted(declared_by.items()):
        if method in ("OPTIONS", "TRACE"):
            continue
        for sample in SAMPLES:
            path = concrete(template, sample)
            hits = kong.resolve(method, path)
            where = f"{method} {template}"
            if template in INTERNAL_PATHS:
                if hits:
                    fail("reachable", f"{where} is internal but routed by {hits[0][0].name}")
                continue
            if not hits:
                fail("reachable", f"{where} ({path}): no Kong route matches")
                continue
            services = {owner.get(r.service) for r, _ in hits}
            if len(services) > 1:
                fail("unambiguous", f"{where}: routes {[r.name for r, _ in hits]} tie on "
                     f"priority and reach {sorted(map(str, services))}")
            route, consumed = hits[0]
            target = owner.get(route.service)
            if target not in owners:
                fail("reachable", f"{where}: route {route.name} sends it to {target}, declared by "
                     f"{sorted(owners)}")
                continue
            fwd = forwarded_path(route, kong, path, consumed)
            if fwd != path:
                fail("reachable", f"{where}: route {route.name} forwards {path} as {fwd}")
            served.add((route.name, method))
            if method == "GET":
                served.add((route.name, "HEAD"))
            jwt = kong.plugin(route, "jwt")
            is_open = jwt is None or bool((jwt.get("config") or {}).get("anonymous"))
            if is_open != ((method, template) in OPEN_OPERATIONS):
                fail("auth", f"{where} via {route.name}: "
                     f"{'open without a token' if is_open else 'needs a token'}, expected "
                     f"{'open' if (method, template) in OPEN_OPERATIONS else 'a token'}")

    for route in kong.routes:
        for method in route.methods or METHODS:
            if method in ("OPTIONS",):
                continue
            if (route.name, method) not in served:
                fail("owned", f"route {route.name} ({route.service}) {method} "
                     f"{[c[1] for c in route.candidates]} serves no operation its service declares")

    n_ops = sum(1 for op in declared_by if op[0] not in ("OPTIONS", "TRACE"))
    summary = {
        "upstreams": f"kong services target the contract's Service DNS names and ports ({len(owner)} services)",
        "reachable": f"kong routes every OpenAPI operation to a service declaring it ({n_ops} operations, internal ones unexposed)",
        "owned": f"every kong route method serves an operation of its own service ({len(kong.routes)} routes)",
        "unambiguous": "no request ties between routes of different services",
        "auth": f"kong jwt open exactly for {len(OPEN_OPERATIONS)} public operations",
    }
    for check, what in summary.items():
        if check in failures:
            print(f"not ok - {what}")
            for msg in failures[check]:
                print(f"#   {msg}")
        else:
            print(f"ok - {what}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
