#!/usr/bin/env python3
"""Kong's Kubernetes side against kong/kong.yml and the mesh chart (istio/values.yaml).

    kong_k8s.py            check, one `ok - ` / `not ok - ` line per check
    kong_k8s.py --write    regenerate kong/k8s/configmap.yaml and the config checksum in
                           kong/k8s/chart/values.yaml from kong/kong.yml

Checks: the ConfigMap carries kong.yml byte for byte and the pods' checksum annotation matches
it (so a config change rolls Kong); the chart values use only keys of Kong's chart that this
platform relies on, spelled right (a small schema of our own: no schema of Kong's chart is
published in the registries reachable here); and they agree with the mesh chart on namespace,
Service, ports, ServiceAccount and pod labels, so Istio's policies select the pods Kong's chart
creates.
"""

import hashlib
import pathlib
import re
import sys

import jsonschema
import yaml

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import kong_istio_contract  # noqa: E402
from kong_istio_contract import REPO  # noqa: E402

KONG_YML = REPO / "kong" / "kong.yml"
CONFIGMAP = REPO / "kong" / "k8s" / "configmap.yaml"
CHART_VALUES = REPO / "kong" / "k8s" / "chart" / "values.yaml"
MESH_VALUES = REPO / "istio" / "values.yaml"
CONFIGMAP_NAME = "kong-declarative-config"
CHECKSUM_KEY = "checksum/kong-config"


def strict(props, required=()):
    return {"type": "object", "additionalProperties": False, "properties": props,
            "required": list(required)}


PORT = {"type": "integer", "minimum": 1, "maximum": 65535}
LISTENER = strict({"enabled": {"type": "boolean"}, "servicePort": PORT, "containerPort": PORT,
                   "parameters": {"type": "array"}}, ["enabled"])
# The subset of Kong's chart values (chart 2.x) this platform sets; unknown keys fail.
CHART_SCHEMA = strict({
    "fullnameOverride": {"type": "string"},
    "image": strict({"repository": {"type": "string"}, "tag": {"type": "string"}}, ["repository", "tag"]),
    "ingressController": strict({"enabled": {"const": False}}, ["enabled"]),
    "env": {"type": "object", "additionalProperties": {"type": "string"},
            "required": ["database", "tracing_instrumentations"],
            "properties": {"database": {"const": "off"}}},
    "dblessConfig": strict({"configMap": {"type": "string"}}, ["configMap"]),
    "admin": strict({"enabled": {"type": "boolean"}}),
    "manager": strict({"enabled": {"type": "boolean"}}),
    "proxy": strict({"enabled": {"const": True}, "type": {"enum": ["ClusterIP", "NodePort", "LoadBalancer"]},
                     "http": LISTENER, "tls": LISTENER}, ["http"]),
    "status": strict({"enabled": {"type": "boolean"}, "http": LISTENER}, ["http"]),
    "deployment": strict({"serviceAccount": strict({
        "create": {"type": "boolean"}, "name": {"type": "string"},
        "automountServiceAccountToken": {"type": "boolean"}}, ["name"])}, ["serviceAccount"]),
    "replicaCount": {"type": "integer", "minimum": 1},
    "podDisruptionBudget": strict({"enabled": {"type": "boolean"}, "maxUnavailable": {},
                                   "minAvailable": {}}),
    "podLabels": {"type": "object", "additionalProperties": {"type": "string"},
                  "required": ["sidecar.istio.io/inject"]},
    "podAnnotations": {"type": "object", "additionalProperties": {"type": "string"},
                       "required": [CHECKSUM_KEY]},
    "resources": {"type": "object"},
    "containerSecurityContext": {"type": "object"},
    "securityContext": {"type": "object"},
    "serviceMonitor": strict({"enabled": {"type": "boolean"}, "labels": {"type": "object"},
                              "interval": {"type": "string"}}),
}, ["image", "ingressController", "env", "dblessConfig", "proxy", "status", "deployment",
    "podLabels", "podAnnotations"])


def render_configmap(text, namespace):
    body = "".join(f"    {line}\n" if line else "\n" for line in text.splitlines())
    return (
        "# Generated from kong/kong.yml by `python3 scripts/checks/kong_k8s.py --write`: edit\n"
        "# kong/kong.yml, regenerate, commit both (30-kong.sh fails when they differ).\n"
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n"
        f"  name: {CONFIGMAP_NAME}\n  namespace: {namespace}\n"
        "  labels:\n    app.kubernetes.io/name: kong\n    app.kubernetes.io/component: declarative-config\n"
        f"data:\n  kong.yml: |\n{body}"
    )


def main(argv):
    text = KONG_YML.read_text(encoding="utf-8")
    digest = hashlib.sha256(text.encode()).hexdigest()
    mesh = yaml.safe_load(MESH_VALUES.read_text(encoding="utf-8"))
    mk = mesh["kong"]
    values_text = CHART_VALUES.read_text(encoding="utf-8")

    if argv[1:] == ["--write"]:
        CONFIGMAP.write_text(render_configmap(text, mk["namespace"]), encoding="utf-8")
        new = re.sub(rf'({re.escape(CHECKSUM_KEY)}: )"[0-9a-f]*"', rf'\g<1>"{digest}"', values_text)
        CHART_VALUES.write_text(new, encoding="utf-8")
        print(f"wrote {CONFIGMAP.relative_to(REPO)} and {CHECKSUM_KEY} {digest[:12]}…")
        return 0

    checks = kong_istio_contract.Checks()
    report = checks.report

    cm = yaml.safe_load(CONFIGMAP.read_text(encoding="utf-8"))
    values = yaml.safe_load(values_text)
    errors = []
    if (cm.get("data") or {}).get("kong.yml") != text:
        errors.append("data.kong.yml differs from kong/kong.yml: run python3 scripts/checks/kong_k8s.py --write")
    if (values.get("podAnnotations") or {}).get(CHECKSUM_KEY) != digest:
        errors.append(f"{CHECKSUM_KEY} in kong/k8s/chart/values.yaml is not sha256(kong/kong.yml): run --write")
    if cm.get("metadata", {}).get("namespace") != mk["namespace"]:
        errors.append(f"ConfigMap namespace {cm.get('metadata', {}).get('namespace')} != kong.namespace {mk['namespace']}")
    report("kong ConfigMap and checksum annotation match kong/kong.yml", errors)

    errors = [f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
              for e in jsonschema.Draft7Validator(CHART_SCHEMA).iter_errors(values)]
    report("kong chart values: known keys only, DB-less, no ingress controller, sidecar injected", errors)
    agreement = "kong chart values agree with the mesh chart (Service, ports, ServiceAccount, pod labels)"
    if errors:
        report(agreement, ["not compared: the values do not match the schema above"])
        return checks.exit_code()

    errors = []

    def expect(what, got, want):
        if got != want:
            errors.append(f"{what}: {got!r}, expected {want!r}")

    expect("dblessConfig.configMap", values["dblessConfig"]["configMap"], cm["metadata"]["name"])
    expect("proxy Service (fullnameOverride-proxy)", f"{values.get('fullnameOverride')}-proxy", mk["service"])
    expect("proxy.http.servicePort", values["proxy"]["http"].get("servicePort"), mk["port"])
    expect("proxy.http.containerPort", values["proxy"]["http"].get("containerPort"), mk["proxyPort"])
    expect("status.http.containerPort", values["status"]["http"].get("containerPort"), mk["statusPort"])
    expect("deployment.serviceAccount.name", values["deployment"]["serviceAccount"]["name"], mk["serviceAccount"])
    # Kong's chart labels its pods app.kubernetes.io/name: kong; podLabels add to that.
    pod_labels = {"app.kubernetes.io/name": "kong", **values["podLabels"]}
    for k, v in mk["selector"].items():
        expect(f"pod label {k} (istio kong.selector)", pod_labels.get(k), v)
    expect("pod label sidecar.istio.io/inject", pod_labels.get("sidecar.istio.io/inject"), "true")
    report(agreement, errors)
    return checks.exit_code()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
