"""Cross-checks the rendered chart, docker-compose.yml and the Dockerfile against the services'
contract: docs/CONTRACTS.md, each service's config/default.toml and its router (once written).

  charts_contract.py renders DIR       # DIR/<env>.<service>.<track>.yaml from `helm template`
  charts_contract.py compose FILE      # the output of `docker-compose config --format json`

Prints one line per check: "ok - WHAT" or "not ok - WHAT" and the reasons indented below.
Exits 1 if any check failed.
"""

import json
import pathlib
import re
import sys
import tomllib

import yaml

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from kong_istio_contract import CONTRACTS, REPO, load  # noqa: E402  (the shared contract reader)

CONTRACT = load()
SERVICES = CONTRACT["services"]  # {name: port}
TRACKS = set(CONTRACT["tracks"])
DEFAULT_DRAIN_SECONDS = 10
SECURITY = {  # container securityContext the platform requires
    "runAsNonRoot": True,
    "readOnlyRootFilesystem": True,
    "allowPrivilegeEscalation": False,
}
failures = 0


def report(what, errors):
    global failures
    if errors:
        failures += 1
        print(f"not ok - {what}")
        for e in errors:
            print(f"    {e}")
    else:
        print(f"ok - {what}")


def prefix(service):
    return service.replace("-", "_").upper()


def allowed_env(service):
    """Variable names docs/CONTRACTS.md lists under "Settings", for one service."""
    text = CONTRACTS.read_text(encoding="utf-8")
    section = text.split("## Settings", 1)[1].split("\n## ", 1)[0]
    names = set(re.findall(r"`(<SVC>__[A-Z0-9_]+|[A-Z][A-Z0-9_]*)`", section))
    names |= set(re.findall(r"\$([A-Z][A-Z0-9_]*)", section))
    own = {n.replace("<SVC>", prefix(service)) for n in names}
    others = tuple(prefix(s) + "__" for s in SERVICES if s != service)
    return {n for n in own if not n.startswith(others)}


def service_config(service):
    """[http] from <service>/config/default.toml, or None before the service has one."""
    path = REPO / service / "config" / "default.toml"
    if not path.is_file():
        return None
    return tomllib.loads(path.read_text(encoding="utf-8")).get("http", {})


def router_paths(service):
    """Probe paths found in the Rust sources of the service and the shared crates."""
    found = set()
    for src in REPO.glob("*/src/**/*.rs"):
        crate = src.relative_to(REPO).parts[0]
        if crate == service or crate not in SERVICES:
            text = src.read_text(encoding="utf-8", errors="replace")
            found |= {p for p in ("/health", "/ready", "/metrics") if f'"{p}"' in text}
    return found


def quantity(v):
    units = {"m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
             "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
    m = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(v))
    if not m or (m.group(2) and m.group(2) not in units):
        raise ValueError(f"bad quantity {v!r}")
    return float(m.group(1)) * units.get(m.group(2), 1)


def selects(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def check_port_and_probes(what, service, objs):
    errors = []
    port = SERVICES[service]
    cfg = service_config(service)
    if cfg is not None and cfg.get("port", port) != port:
        errors.append(f"{service}/config/default.toml http.port {cfg.get('port')} != {port} in CONTRACTS.md")
    dep = objs.get(("Deployment", f"{service}-{what['track']}"))
    if not dep:
        return [f"no Deployment {service}-{what['track']}"]
    c = dep["spec"]["template"]["spec"]["containers"][0]
    ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
    if ports.get("http") != port:
        errors.append(f"container port named http is {ports.get('http')}, CONTRACTS.md says {port}")
    for where, tpl in pod_specs(objs):
        cmd = tpl["spec"]["containers"][0].get("command", [])
        if cmd[:1] != [f"/app/{service}"]:
            errors.append(f"{where}: command {cmd} should start with /app/{service} (the Dockerfile's binary)")
    paths = router_paths(service)
    for probe, path in (("startupProbe", "/health"), ("livenessProbe", "/health"), ("readinessProbe", "/ready")):
        get = (c.get(probe) or {}).get("httpGet") or {}
        if get.get("path") != path:
            errors.append(f"{probe} path {get.get('path')!r}, expected {path}")
        if get.get("port") not in ("http", port):
            errors.append(f"{probe} port {get.get('port')!r} is not the http port {port}")
        if paths and path not in paths:
            errors.append(f"{probe}: no route {path} in the Rust sources")
    svc = objs.get(("Service", service))
    if svc:
        sp = svc["spec"]["ports"]
        if [(p.get("name"), p.get("port"), p.get("targetPort")) for p in sp] != [("http", port, "http")]:
            errors.append(f"Service ports {sp} should be one port named http, {port} -> targetPort http")
    return errors


def env_names(container):
    return [e["name"] for e in container.get("env", [])]


def check_env(what, service, objs):
    errors = []
    allowed = allowed_env(service)
    names = []
    for (kind, name), o in objs.items():
        if kind == "ConfigMap":
            names += [(f"ConfigMap {name}", k) for k in o.get("data", {})]
        if kind in ("Deployment", "Job"):
            for c in o["spec"]["template"]["spec"]["containers"]:
                names += [(f"{kind} {name}", n) for n in env_names(c)]
                for ef in c.get("envFrom", []):
                    if "secretRef" in ef:
                        errors.append(f"{kind} {name}: envFrom a whole Secret hides which settings it sets")
    for where, n in names:
        if n not in allowed:
            errors.append(f"{where}: {n} is not a setting CONTRACTS.md lists for {service}")
    if not names:
        errors.append("no settings found")
    return errors


def pod_specs(objs):
    for (kind, name), o in objs.items():
        if kind in ("Deployment", "Job"):
            yield f"{kind} {name}", o["spec"]["template"]


def check_resources(what, service, objs):
    errors = []
    for where, tpl in pod_specs(objs):
        for c in tpl["spec"]["containers"]:
            res = c.get("resources") or {}
            for r in ("cpu", "memory"):
                req = (res.get("requests") or {}).get(r)
                lim = (res.get("limits") or {}).get(r)
                if req is None or lim is None:
                    errors.append(f"{where}/{c['name']}: {r} request and limit must both be set")
                elif quantity(req) > quantity(lim):
                    errors.append(f"{where}/{c['name']}: {r} request {req} > limit {lim}")
    return errors


def check_security(what, service, objs):
    errors = []
    for where, tpl in pod_specs(objs):
        spec = tpl["spec"]
        for c in spec["containers"]:
            sc = c.get("securityContext") or {}
            for k, v in SECURITY.items():
                if sc.get(k) is not v:
                    errors.append(f"{where}/{c['name']}: securityContext.{k} should be {v}")
            if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
                errors.append(f"{where}/{c['name']}: capabilities must drop ALL")
            seccomp = (sc.get("seccompProfile") or (spec.get("securityContext") or {}).get("seccompProfile") or {})
            if seccomp.get("type") != "RuntimeDefault":
                errors.append(f"{where}/{c['name']}: seccompProfile should be RuntimeDefault")
            mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
            for path in ("/app/data", "/tmp"):
                if path not in mounts:
                    errors.append(f"{where}/{c['name']}: no writable volume at {path} (read-only root)")
    return errors


def check_labels(what, service, objs):
    errors = []
    track = what["track"]
    if track not in TRACKS:
        errors.append(f"track {track!r} is not one of {sorted(TRACKS)}")
    dep = objs.get(("Deployment", f"{service}-{track}"))
    if not dep:
        return errors + [f"no Deployment named {service}-{track}"]
    pod = dep["spec"]["template"]["metadata"]["labels"]
    image = dep["spec"]["template"]["spec"]["containers"][0]["image"]
    tag = image.rsplit(":", 1)[-1] if "@" not in image else None
    want = {"app": service, "version": track, "app.kubernetes.io/name": service}
    for k, v in want.items():
        if pod.get(k) != v:
            errors.append(f"pod label {k}={pod.get(k)!r}, expected {v!r}")
    if tag and pod.get("app.kubernetes.io/version") != tag:
        errors.append(f"pod label app.kubernetes.io/version={pod.get('app.kubernetes.io/version')!r}, image tag {tag!r}")
    if dep["spec"]["template"]["spec"].get("serviceAccountName") != service:
        errors.append(f"serviceAccountName should be {service}")
    if not selects(dep["spec"]["selector"].get("matchLabels"), pod):
        errors.append("Deployment selector does not match its pod labels")
    if dep["spec"]["selector"].get("matchLabels", {}).get("version") != track:
        errors.append("Deployment selector must include version (tracks would adopt each other's pods)")
    for (kind, name), o in objs.items():
        spec = o.get("spec", {})
        if kind == "Service" and spec.get("selector") != {"app": service}:
            errors.append(f"Service {name} must select on app={service} only, has {spec.get('selector')}")
        if kind == "Service" and name != service:
            errors.append(f"Service is named {name}, CONTRACTS.md says {service}")
        if kind == "ServiceAccount" and name != service:
            errors.append(f"ServiceAccount is named {name}, CONTRACTS.md says {service}")
        if kind in ("PodDisruptionBudget", "NetworkPolicy"):
            key = "selector" if kind == "PodDisruptionBudget" else "podSelector"
            pods = [t["metadata"]["labels"] for _, t in pod_specs(objs)]
            if not any(selects(spec[key].get("matchLabels"), p) for p in pods):
                errors.append(f"{kind} {name} selects no pod of the release")
        if kind == "HorizontalPodAutoscaler" and spec["scaleTargetRef"]["name"] != dep["metadata"]["name"]:
            errors.append(f"HPA {name} targets {spec['scaleTargetRef']['name']}")
        if kind == "ServiceMonitor":
            svc = objs.get(("Service", service), {})
            if not selects(spec["selector"].get("matchLabels"), svc.get("metadata", {}).get("labels", {})):
                errors.append(f"ServiceMonitor {name} does not select the Service")
            if any(e.get("port") != "http" or e.get("path") != "/metrics" for e in spec.get("endpoints", [])):
                errors.append("ServiceMonitor endpoints must scrape port http at /metrics")
            if not {"app", "version"} <= set(spec.get("podTargetLabels", [])):
                errors.append("ServiceMonitor podTargetLabels must include app and version")
        if kind == "Job" and "app" in o["spec"]["template"]["metadata"].get("labels", {}):
            errors.append(f"Job {name} pods carry the app label, so the Service would route to them")
    return errors


def check_shutdown(what, service, objs):
    dep = objs.get(("Deployment", f"{service}-{what['track']}"))
    cm = objs.get(("ConfigMap", f"{service}-{what['track']}"), {}).get("data", {})
    if not dep:
        return ["no Deployment"]
    spec = dep["spec"]["template"]["spec"]
    drain = int(cm.get(f"{prefix(service)}__HTTP__SHUTDOWN_TIMEOUT_SECONDS",
                       (service_config(service) or {}).get("shutdown_timeout_seconds", DEFAULT_DRAIN_SECONDS)))
    pre = ((spec["containers"][0].get("lifecycle") or {}).get("preStop") or {}).get("sleep", {}).get("seconds", 0)
    grace = spec.get("terminationGracePeriodSeconds", 30)
    if grace <= drain + pre:
        return [f"terminationGracePeriodSeconds {grace} <= preStop sleep {pre} + drain {drain}"]
    return []


def egress_ports(np):
    ports = set()
    for rule in np["spec"].get("egress", []):
        for p in rule.get("ports", []):
            ports.add((p.get("protocol", "TCP"), p["port"]))
    return ports


def check_network(what, service, objs):
    np = objs.get(("NetworkPolicy", service))
    if not np:
        return ["no NetworkPolicy"] if ("Service", service) in objs else []  # owned by the primary
    errors = []
    spec = np["spec"]
    if set(spec.get("policyTypes", [])) != {"Ingress", "Egress"}:
        errors.append("policyTypes must be Ingress and Egress (deny by default)")
    have = egress_ports(np)
    need = {("UDP", 53): "DNS", ("TCP", 4222): "NATS", ("TCP", 4317): "OTLP collector"}
    if service == "order-service":
        need[("TCP", SERVICES["user-service"])] = "user-service"
    for p, why in need.items():
        if p not in have:
            errors.append(f"egress to {why} ({p[1]}/{p[0]}) not allowed")
    if service == "order-service" and not any(
        any((peer.get("podSelector") or {}).get("matchLabels") == {"app": "user-service"} for peer in r.get("to", []))
        and any(p["port"] == SERVICES["user-service"] for p in r.get("ports", []))
        for r in spec.get("egress", [])
    ):
        errors.append(f"no egress rule to app=user-service port {SERVICES['user-service']}")
    for rule in spec.get("ingress", []):
        for p in rule.get("ports", []):
            if isinstance(p["port"], int) and p["port"] not in (SERVICES[service], 15020):
                errors.append(f"ingress port {p['port']} is neither the http port nor the sidecar's")
    return errors


def load_render(path):
    objs = {}
    for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
        if doc:
            objs[(doc["kind"], doc["metadata"]["name"])] = doc
    return objs


def check_side_by_side(env, service, renders):
    """Two tracks of one service: disjoint object names, one owner of the shared objects,
    and the shared Service selects the pods of both."""
    errors = []
    names = {}
    for track, objs in renders.items():
        for key in objs:
            if key in names:
                errors.append(f"{key[0]} {key[1]} rendered by both {names[key]} and {track}")
            names[key] = track
    shared = [k for k in names if k[0] in ("Service", "ServiceAccount", "NetworkPolicy", "ServiceMonitor")]
    svc = next((renders[names[k]][k] for k in shared if k[0] == "Service"), None)
    if not svc:
        errors.append("no release creates the Service")
    else:
        for track, objs in renders.items():
            dep = objs.get(("Deployment", f"{service}-{track}"))
            if not dep or not selects(svc["spec"]["selector"], dep["spec"]["template"]["metadata"]["labels"]):
                errors.append(f"the Service does not select the {track} pods")
    report(f"contract: {env}/{service} tracks {' + '.join(sorted(renders))} install side by side", errors)


def cmd_renders(directory):
    groups = {}
    for path in sorted(pathlib.Path(directory).glob("*.yaml")):
        env, service, track = path.stem.split(".")
        what = {"env": env, "service": service, "track": track}
        if service not in SERVICES:
            report(f"contract: {path.name}", [f"{service} is not a service in CONTRACTS.md"])
            continue
        objs = load_render(path)
        groups.setdefault((env, service), {})[track] = objs
        for aspect, fn in (("port, probes and command", check_port_and_probes), ("settings", check_env),
                           ("labels and selectors", check_labels), ("requests <= limits", check_resources),
                           ("security context", check_security), ("graceful shutdown", check_shutdown),
                           ("network policy", check_network)):
            try:
                errors = fn(what, service, objs)
            except (KeyError, TypeError, ValueError, IndexError) as e:
                errors = [f"cannot read the render: {type(e).__name__}: {e}"]
            report(f"contract: {env}/{service}/{track} {aspect}", errors)
    for (env, service), renders in groups.items():
        if len(renders) > 1:
            check_side_by_side(env, service, renders)


def cmd_compose(path):
    cfg = json.loads(pathlib.Path(path).read_text(encoding="utf-8"))
    dockerfile = (REPO / "Dockerfile").read_text(encoding="utf-8")
    for service, port in SERVICES.items():
        errors = []
        s = cfg.get("services", {}).get(service)
        if not s:
            report(f"compose: {service}", ["not in docker-compose.yml"])
            continue
        args = (s.get("build") or {}).get("args") or {}
        if args.get("SERVICE") != service:
            errors.append(f"build arg SERVICE={args.get('SERVICE')!r}")
        if str(args.get("PORT")) != str(port):
            errors.append(f"build arg PORT={args.get('PORT')!r}, CONTRACTS.md says {port}")
        env = s.get("environment") or {}
        allowed = allowed_env(service)
        errors += [f"environment {k} is not a setting CONTRACTS.md lists" for k in env if k not in allowed]
        if str(env.get(f"{prefix(service)}__HTTP__PORT", port)) != str(port):
            errors.append(f"{prefix(service)}__HTTP__PORT={env.get(f'{prefix(service)}__HTTP__PORT')}")
        targets = {int(p["target"]) for p in s.get("ports", [])}
        if targets and targets != {port}:
            errors.append(f"published container ports {sorted(targets)}, expected {port}")
        if not s.get("read_only"):
            errors.append("read_only root filesystem not set")
        cfgd = service_config(service)
        if cfgd is not None and cfgd.get("port", port) != port:
            errors.append(f"{service}/config/default.toml http.port {cfgd.get('port')} != {port}")
        report(f"compose: {service} port {port}, build args, settings", errors)
    errors = []
    for name, s in sorted(cfg.get("services", {}).items()):
        for v in s.get("volumes", []):
            if v.get("type") == "bind" and not pathlib.Path(v["source"]).exists():
                errors.append(f"{name}: mounts {v['source']}, which does not exist")
        for dep, cond in (s.get("depends_on") or {}).items():
            if cond.get("condition") == "service_healthy" and not cfg["services"].get(dep, {}).get("healthcheck"):
                errors.append(f"{name} waits for {dep} to be healthy, but {dep} has no healthcheck")
    report("compose: bind mounts exist, healthy-conditions have health checks", errors)
    cargo = (REPO / "Cargo.toml").read_text(encoding="utf-8")
    errors = []
    if "[profile.dist]" not in cargo or "--profile dist" not in dockerfile:
        errors.append("the Dockerfile must build with --profile dist, defined in Cargo.toml")
    if not re.search(r"^EXPOSE \$\{?PORT\}?\s*$", dockerfile, re.M):
        errors.append("Dockerfile must EXPOSE ${PORT} (the build arg compose and CI pass)")
    if not re.search(r"^USER 65532(:65532)?\s*$", dockerfile, re.M):
        errors.append("Dockerfile must run as USER 65532")
    if not re.search(r"^ENV CONFIG_DIR=/app/config\s*$", dockerfile, re.M):
        errors.append("Dockerfile must set CONFIG_DIR=/app/config")
    report("dockerfile: --profile dist, EXPOSE ${PORT}, USER 65532, CONFIG_DIR", errors)


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("renders", "compose"):
        sys.exit(__doc__)
    {"renders": cmd_renders, "compose": cmd_compose}[sys.argv[1]](sys.argv[2])
    sys.exit(1 if failures else 0)
