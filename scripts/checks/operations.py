#!/usr/bin/env python3
"""Operations checks (issue 13) that schemas cannot make; used by scripts/validate.d/61-operations.sh.

  operations.py keda RENDERED.yaml         the ScaledObject scales the workload of its render (no
                                           HPA beside it) on the stream and durable consumer of
                                           docs/CONTRACTS.md, through the NATS monitoring port
  operations.py secrets RENDERED.yaml...   ExternalSecrets create exactly the Secrets the pods
                                           need (names and keys), from the ClusterSecretStore of
                                           charts/platform-namespace; no Secret object rendered
  operations.py restricted RENDERED.yaml...
                                           every pod template meets Pod Security `restricted`,
                                           every rolling update has maxUnavailable 0
  operations.py namespace                  the namespace carries the PSA labels; ResourceQuota
                                           sized from the services' requests (need <= quota <=
                                           2 x need), LimitRange bounds fit every container
  operations.py logs                       Loki/Promtail/Grafana wiring: push URL, data sources,
                                           trace_id derived field on a real log line -> Jaeger

Prints `ok - ...` / `not ok - ...` lines; exits 1 if any failed. Needs PyYAML.
"""
from __future__ import annotations

import glob
import math
import os
import re
import sys

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checklib import Report, load, load_all, merge  # noqa: E402

REPO = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
CHART = os.path.join(REPO, "charts", "microservice")
NS_CHART = os.path.join(REPO, "charts", "platform-namespace")
ARGO = os.path.join(REPO, "argocd", "platform")
NAMESPACE = "microservices-platform"
ENVS = ["dev", "staging", "prod"]
SERVICES = ["user-service", "order-service", "notification-service"]
report = Report()




def docs(paths):
    for p in paths:
        for d in load_all(p):
            yield p, d



def qty(v):
    """A Kubernetes quantity as a number (cpu in cores, memory in bytes)."""
    s = str(v)
    m = re.fullmatch(r"([0-9.]+)(m|Ki|Mi|Gi|Ti|k|M|G|T)?", s)
    if not m:
        raise ValueError(f"not a quantity: {v!r}")
    mult = {None: 1, "m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40,
            "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}[m.group(2)]
    return float(m.group(1)) * mult


def contract_events():
    with open(os.path.join(REPO, "docs", "CONTRACTS.md"), encoding="utf-8") as f:
        text = f.read()
    stream = re.search(r"One JetStream stream `([^`]+)`", text)
    consumer = re.search(r"durable pull consumer\s+`([^`]+)`", text)
    return (stream and stream.group(1)), (consumer and consumer.group(1))


def pod_templates(d):
    kind, spec = d["kind"], d.get("spec") or {}
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job", "Rollout"):
        yield spec.get("template") or {}
    elif kind == "CronJob":
        yield spec["jobTemplate"]["spec"]["template"]
    elif kind == "Pod":
        yield d


# ---------------------------------------------------------------------------------- keda
def check_keda(path):
    problems = []
    stream, consumer = contract_events()
    if not (stream and consumer):
        problems.append("docs/CONTRACTS.md: stream or durable consumer name not found")
    all_docs = [d for _, d in docs([path])]
    scaled = [d for d in all_docs if d["kind"] == "ScaledObject"]
    workloads = {(d["kind"], d["metadata"]["name"]) for d in all_docs if d["kind"] in ("Deployment", "Rollout")}
    if len(scaled) != 1:
        problems.append(f"expected one ScaledObject, found {len(scaled)}")
    for so in scaled:
        spec = so["spec"]
        ref = spec["scaleTargetRef"]
        if (ref.get("kind", "Deployment"), ref["name"]) not in workloads:
            problems.append(f"scaleTargetRef {ref.get('kind')}/{ref['name']} is not a workload of the render {sorted(workloads)}")
        for d in all_docs:
            if d["kind"] == "HorizontalPodAutoscaler" and d["spec"]["scaleTargetRef"]["name"] == ref["name"]:
                problems.append(f"HPA {d['metadata']['name']} scales the same workload as KEDA (two autoscalers fight)")
        if spec.get("minReplicaCount", 0) > spec.get("maxReplicaCount", 100):
            problems.append("minReplicaCount > maxReplicaCount")
        for t in spec["triggers"]:
            if t["type"] != "nats-jetstream":
                problems.append(f"trigger {t['type']}: expected nats-jetstream")
                continue
            md = t["metadata"]
            if md.get("stream") != stream:
                problems.append(f"stream {md.get('stream')!r} is not the stream of docs/CONTRACTS.md ({stream!r})")
            if md.get("consumer") != consumer:
                problems.append(f"consumer {md.get('consumer')!r} is not the durable consumer of docs/CONTRACTS.md ({consumer!r})")
            if md.get("account") != "$G":
                problems.append(f"account {md.get('account')!r}: the platform's NATS has no accounts, use $G")
            host, _, port = md.get("natsServerMonitoringEndpoint", "").partition(":")
            if port != "8222" or not host.startswith(("nats-headless.", "nats.")):
                problems.append(f"natsServerMonitoringEndpoint {host}:{port}: expected the NATS chart's monitoring port 8222")
    report(f"keda ({os.path.basename(path)}): ScaledObject scales its workload on stream {stream} / consumer {consumer} (docs/CONTRACTS.md)", problems)


# ---------------------------------------------------------------------------------- secrets
def check_secrets(paths):
    problems = []
    store = merge(load(os.path.join(NS_CHART, "values.yaml")))["secretStore"]
    n_es = 0
    for path in paths:
        all_docs = [d for _, d in docs([path])]
        name = os.path.basename(path)
        needed, optional = {}, {}  # secret -> keys the pods read
        for d in all_docs:
            if d["kind"] == "Secret":
                problems.append(f"{name}: renders Secret {d['metadata']['name']} (secrets never come from the chart)")
            for t in pod_templates(d):
                spec = t.get("spec") or {}
                for c in spec.get("containers", []) + spec.get("initContainers", []):
                    for e in c.get("env") or []:
                        ref = ((e.get("valueFrom") or {}).get("secretKeyRef")) or {}
                        if ref:
                            target = optional if ref.get("optional") else needed
                            target.setdefault(ref["name"], set()).add(ref["key"])
                for v in spec.get("volumes") or []:
                    sec = v.get("secret")
                    if sec:
                        (optional if sec.get("optional") else needed).setdefault(sec["secretName"], set())
        made = {}
        for d in all_docs:
            if d["kind"] != "ExternalSecret":
                continue
            n_es += 1
            spec = d["spec"]
            made[spec["target"].get("name") or d["metadata"]["name"]] = {x["secretKey"] for x in spec.get("data") or []}
            ref = spec["secretStoreRef"]
            if (ref.get("kind"), ref["name"]) != ("ClusterSecretStore", store["name"]):
                problems.append(f"{name}: ExternalSecret {d['metadata']['name']} reads {ref.get('kind')}/{ref['name']}, "
                                f"not the ClusterSecretStore {store['name']} of charts/platform-namespace")
        for secret, keys in needed.items():
            if secret not in made:
                problems.append(f"{name}: the pods need Secret {secret}, no ExternalSecret creates it")
            elif keys - made[secret]:
                problems.append(f"{name}: Secret {secret} lacks keys {sorted(keys - made[secret])} the pods read")
        for secret, keys in optional.items():
            if secret in made and keys - made[secret]:
                problems.append(f"{name}: Secret {secret} lacks keys {sorted(keys - made[secret])} the pods read")
        for secret in made:
            if secret not in needed and secret not in optional:
                problems.append(f"{name}: ExternalSecret creates {secret}, which no pod reads")
    if not n_es:
        problems.append("no ExternalSecret rendered")
    report(f"external secrets: {n_es} ExternalSecrets create exactly the Secrets and keys the pods read, no Secret in Git", problems)


# ---------------------------------------------------------------------------------- restricted
def restricted_problems(t, where):
    """Pod Security Standards, `restricted` profile (Kubernetes 1.31)."""
    p = []
    spec = t.get("spec") or {}
    psc = spec.get("securityContext") or {}
    for host in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(host):
            p.append(f"{where}: {host}")
    allowed_volumes = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                       "projected", "secret"}
    for v in spec.get("volumes") or []:
        kinds = set(v) - {"name"}
        if kinds - allowed_volumes:
            p.append(f"{where}: volume {v['name']} of type {sorted(kinds)}")
    if (psc.get("seLinuxOptions") or {}).get("type") not in (None, "container_t", "container_init_t", "container_kvm_t"):
        p.append(f"{where}: seLinuxOptions.type")
    if psc.get("runAsUser") == 0:
        p.append(f"{where}: pod runAsUser 0")
    pod_seccomp = (psc.get("seccompProfile") or {}).get("type")
    for c in spec.get("containers", []) + spec.get("initContainers", []):
        sc = c.get("securityContext") or {}
        cw = f"{where} container {c['name']}"
        if sc.get("privileged"):
            p.append(f"{cw}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            p.append(f"{cw}: allowPrivilegeEscalation must be false")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            p.append(f"{cw}: capabilities must drop ALL")
        if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
            p.append(f"{cw}: adds capabilities {caps['add']}")
        if not (sc.get("runAsNonRoot") or psc.get("runAsNonRoot")) or sc.get("runAsNonRoot") is False:
            p.append(f"{cw}: runAsNonRoot must be true")
        if sc.get("runAsUser") == 0:
            p.append(f"{cw}: runAsUser 0")
        if ((sc.get("seccompProfile") or {}).get("type") or pod_seccomp) not in ("RuntimeDefault", "Localhost"):
            p.append(f"{cw}: seccompProfile must be RuntimeDefault or Localhost")
        if any(port.get("hostPort") for port in c.get("ports") or []):
            p.append(f"{cw}: hostPort")
    return p


def check_restricted(paths):
    problems, pods, rolling = [], 0, 0
    for path, d in docs(paths):
        where = f"{os.path.basename(path)} {d['kind']}/{d['metadata']['name']}"
        for t in pod_templates(d):
            pods += 1
            problems += restricted_problems(t, where)
        spec = d.get("spec") or {}
        if d["kind"] == "Deployment":
            rolling += 1
            ru = (spec.get("strategy") or {}).get("rollingUpdate") or {}
            if spec.get("strategy", {}).get("type", "RollingUpdate") != "RollingUpdate" or ru.get("maxUnavailable") not in (0, "0", "0%"):
                problems.append(f"{where}: rolling update must have maxUnavailable: 0")
        if d["kind"] == "Rollout" and "canary" in (spec.get("strategy") or {}):
            rolling += 1
            if spec["strategy"]["canary"].get("maxUnavailable") not in (0, "0", "0%"):
                problems.append(f"{where}: canary maxUnavailable must be 0")
    report(f"pod security: {pods} pod templates meet `restricted`, {rolling} rolling updates keep maxUnavailable 0", problems)


# ---------------------------------------------------------------------------------- namespace
def service_values(env, svc, extra=None):
    files = [os.path.join(CHART, "values.yaml"), os.path.join(CHART, "services", f"{svc}.yaml"),
             os.path.join(CHART, "env", env, f"{svc}.yaml")] + ([extra] if extra else [])
    return merge({}, *[load(f) for f in files])


def max_pods(v):
    if v.get("keda", {}).get("enabled"):
        n = v["keda"]["maxReplicas"]
    elif v["autoscaling"]["enabled"]:
        n = v["autoscaling"]["maxReplicas"]
    else:
        n = v["replicas"]
    return n + math.ceil(n * 0.25)  # maxSurge 25 % during a rolling update (maxUnavailable 0)


def check_namespace():
    argo = load(os.path.join(ARGO, "values.yaml"))
    labels = (argo.get("namespaceMetadata", {}).get(NAMESPACE) or {}).get("labels") or {}
    problems = []
    for mode in ("enforce", "audit", "warn"):
        if labels.get(f"pod-security.kubernetes.io/{mode}") != "restricted":
            problems.append(f"argocd namespaceMetadata {NAMESPACE}: pod-security.kubernetes.io/{mode} is not restricted")
    comps = argo.get("components", {})
    pn = comps.get("platform-namespace") or {}
    if pn.get("path") != "charts/platform-namespace" or pn.get("namespace") != NAMESPACE:
        problems.append("argocd: no component platform-namespace deploying charts/platform-namespace into " + NAMESPACE)
    elif pn.get("wave", 0) >= min(c.get("wave", 0) for n, c in comps.items()
                                  if c.get("namespace") == NAMESPACE and n != "platform-namespace"):
        problems.append("argocd: platform-namespace must sync before everything else in " + NAMESPACE)
    if (comps.get("istiod", {}).get("values", {}).get("pilot", {}).get("cni") or {}).get("enabled") is not True \
            or "istio-cni" not in comps:
        problems.append("argocd: meshed pods need the Istio CNI (istio-cni component, istiod pilot.cni.enabled) "
                        "under `restricted`: istio-init needs NET_ADMIN/NET_RAW")
    report(f"namespace {NAMESPACE}: Pod Security `restricted` labels, guard rails first, Istio CNI", problems)

    ns_base = load(os.path.join(NS_CHART, "values.yaml"))
    for env in ENVS:
        problems, lines = [], []
        nv = merge(ns_base, load(os.path.join(NS_CHART, "env", f"{env}.yaml")))
        argo_env = merge(argo, load(os.path.join(ARGO, "env", f"{env}.yaml")))
        side = nv["sizing"]["sidecar"]
        lim = nv["limitRange"]
        need_cpu = need_mem = need_pods = 0.0
        for svc in SERVICES:
            releases = [(svc, service_values(env, svc))]
            for track in argo_env["services"][svc].get("tracks") or []:
                releases.append((f"{svc}-{track}", service_values(env, svc, os.path.join(CHART, "env", env, f"{svc}-{track}.yaml"))))
            for rel, v in releases:
                req, limits = v["resources"]["requests"], v["resources"]["limits"]
                n = max_pods(v)
                jobs = 1 if v["migrations"]["enabled"] else 0  # the hook Job runs without a sidecar
                need_cpu += n * (qty(req["cpu"]) + qty(side["cpu"])) + jobs * qty(req["cpu"])
                need_mem += n * (qty(req["memory"]) + qty(side["memory"])) + jobs * qty(req["memory"])
                need_pods += n + jobs
                lines.append(f"{rel}: {n} pods + {jobs} job")
                for k in ("cpu", "memory"):
                    if qty(limits[k]) > qty(lim["max"][k]):
                        problems.append(f"{rel}: limits.{k} {limits[k]} above the LimitRange max {lim['max'][k]}")
                    if qty(req[k]) > qty(limits[k]):
                        problems.append(f"{rel}: requests.{k} above limits.{k}")
        # infrastructure: the declared sizes must be what argocd/platform deploys
        infra = nv["sizing"]["infrastructure"]
        nats = argo_env["components"]["nats"]["values"]
        cluster = (nats.get("config", {}).get("cluster") or {})
        nats_pods = cluster.get("replicas", 1) if cluster.get("enabled") else 1
        nats_req = [nats["container"]["merge"]["resources"]["requests"], nats["reloader"]["merge"]["resources"]["requests"], side]
        db = argo_env["databases"]["values"]["primary"]
        expect = {
            "nats": (nats_pods, sum(qty(r["cpu"]) for r in nats_req), sum(qty(r["memory"]) for r in nats_req)),
            "databases": (len(SERVICES), qty(db["resources"]["requests"]["cpu"]) + qty(side["cpu"]),
                          qty(db["resources"]["requests"]["memory"]) + qty(side["memory"])),
        }
        for name, (pods, cpu, mem) in expect.items():
            got = infra.get(name)
            def key(n, c, m):
                return n, round(c * 1000), round(m / 2**20)
            if not got or key(got["pods"], qty(got["cpu"]), qty(got["memory"])) != key(pods, cpu, mem):
                problems.append(f"sizing.infrastructure.{name} {got} is not what argocd/platform deploys "
                                f"({pods} pods x {cpu * 1000:.0f}m / {mem / 2**20:.0f}Mi, sidecar included)")
        for name, x in infra.items():
            need_cpu += x["pods"] * qty(x["cpu"])
            need_mem += x["pods"] * qty(x["memory"])
            need_pods += x["pods"]
        vols = nv["sizing"]["volumes"]
        expect_vols = {"nats": (nats_pods, qty(nats["config"]["jetstream"]["fileStore"]["pvc"]["size"])),
                       "databases": (len(SERVICES), qty(db["persistence"]["size"]))}
        for name, (claims, size) in expect_vols.items():
            got = vols.get(name)
            if not got or (got["claims"], qty(got["size"])) != (claims, size):
                problems.append(f"sizing.volumes.{name} {got} is not what argocd/platform deploys ({claims} x {size / 2**30:.0f}Gi)")
        need_claims = sum(x["claims"] for x in vols.values())
        need_storage = sum(x["claims"] * qty(x["size"]) for x in vols.values())
        q = nv["quota"]
        for what, have, need, unit in (("requests.cpu", qty(q["requestsCpu"]), need_cpu, 1),
                                       ("requests.memory", qty(q["requestsMemory"]), need_mem, 2**20),
                                       ("pods", q["pods"], need_pods, 1),
                                       ("persistentvolumeclaims", q["persistentVolumeClaims"], need_claims, 1),
                                       ("requests.storage", qty(q["requestsStorage"]), need_storage, 2**30)):
            if not need <= have <= 2 * need:
                problems.append(f"quota {what} = {have / unit:g}: needs between {need / unit:g} and {2 * need / unit:g}")
        for k in ("cpu", "memory"):
            if not qty(lim["defaultRequest"][k]) <= qty(lim["default"][k]) <= qty(lim["max"][k]):
                problems.append(f"LimitRange {k}: defaultRequest <= default <= max does not hold")
            if qty(lim["max"][k]) < {"cpu": 2, "memory": 2**30}[k]:
                problems.append(f"LimitRange max {k} below the Istio sidecar's limits (2 CPU, 1Gi)")
        report(f"namespace {env}: ResourceQuota covers the services' requests ({need_cpu:.2f} CPU, "
               f"{need_mem / 2**20:.0f}Mi, {need_pods:.0f} pods) within 2x, LimitRange fits every container", problems)


# ---------------------------------------------------------------------------------- logs
SAMPLE_LOG = ('{"timestamp":"2025-01-01T00:00:00.000000Z","level":"INFO","fields":{"message":"request finished",'
              '"status":200},"target":"service_kit::http","spans":[{"method":"GET","route":"/api/orders",'
              '"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","name":"request"}]}')


def svc_host(url):
    m = re.match(r"https?://([^/:]+)(?::(\d+))?", url or "")
    return (m.group(1).split(".")[0], (m.group(1).split(".") + [""])[1], m.group(2)) if m else (None, None, None)


def check_logs():
    problems = []
    comps = load(os.path.join(ARGO, "values.yaml"))["components"]
    loki, promtail, jaeger = comps.get("loki"), comps.get("promtail"), comps.get("jaeger")
    if not (loki and promtail):
        report("logs: Loki and Promtail Applications", ["argocd components loki and promtail missing"])
        return
    loki_ns = loki["namespace"]
    push = promtail["values"]["config"]["clients"][0]["url"]
    name, ns, port = svc_host(push)
    if (name, ns, port) != ("loki", loki_ns, "3100") or not push.endswith("/loki/api/v1/push"):
        problems.append(f"promtail pushes to {push}, not Loki's push API at loki.{loki_ns}:3100")
    sources = comps["kube-prometheus-stack"]["values"]["grafana"].get("additionalDataSources") or []
    by_uid = {s.get("uid"): s for s in sources}
    lds = [s for s in sources if s.get("type") == "loki"]
    if len(lds) != 1:
        problems.append(f"Grafana: expected one Loki data source, found {len(lds)}")
    for ds in lds:
        if svc_host(ds.get("url"))[:3] != ("loki", loki_ns, "3100"):
            problems.append(f"Grafana Loki data source url {ds.get('url')} is not loki.{loki_ns}:3100")
        fields = (ds.get("jsonData") or {}).get("derivedFields") or []
        if not fields:
            problems.append("Grafana Loki data source has no derivedFields")
        for f in fields:
            target = by_uid.get(f.get("datasourceUid"))
            if not target or target.get("type") != "jaeger":
                problems.append(f"derived field {f.get('name')}: datasourceUid {f.get('datasourceUid')!r} is no Jaeger data source")
            elif jaeger and svc_host(target.get("url"))[1] != jaeger["namespace"]:
                problems.append(f"Jaeger data source {target.get('url')} is not in the jaeger component's namespace")
            try:
                m = re.search(f.get("matcherRegex", ""), SAMPLE_LOG)
            except re.error as e:
                problems.append(f"derived field {f.get('name')}: bad regex: {e}")
                continue
            if not m or m.group(1) != "4bf92f3577b34da6a3ce929d0e0e4736":
                problems.append(f"derived field {f.get('name')}: regex {f.get('matcherRegex')} does not capture the "
                                "trace_id of a service log line")
            if "${__value.raw}" not in (f.get("url") or ""):
                problems.append(f"derived field {f.get('name')}: url must be $${{__value.raw}} (the captured trace id)")
    report("logs: Promtail -> Loki, Grafana Loki data source with a trace_id derived field -> Jaeger", problems)


def main(argv):
    cmd, args = argv[0], argv[1:]
    if cmd == "keda":
        check_keda(args[0])
    elif cmd == "secrets":
        check_secrets(args)
    elif cmd == "restricted":
        check_restricted(args)
    elif cmd == "namespace":
        check_namespace()
    elif cmd == "logs":
        check_logs()
    else:
        print(__doc__)
        return 2
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
