#!/usr/bin/env python3
"""Plugin configurations and the jwt consumer of kong/kong.yml.

    kong_plugins.py [kong/kong.yml]

SchemaStore's Kong schema (checked first, by check-jsonschema) stops at `config`: any key is
accepted there. This check holds a small schema of our own for the config of each plugin the
platform uses (field names and enums of Kong 3.9's plugins), so a misspelled option fails here
rather than when Kong loads the config in the cluster. It also checks that every required
plugin is on, and that the issuer credential is an RS256 key Kong can load.
"""

import base64
import pathlib
import sys

import jsonschema
import yaml

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import kong_istio_contract  # noqa: E402
from kong_istio_contract import REPO  # noqa: E402

REQUIRED = ("jwt", "rate-limiting", "cors", "correlation-id", "request-size-limiting",
            "prometheus", "opentelemetry")
ISSUER = "user-service"  # docs/CONTRACTS.md: <SVC>__AUTH__ISSUER default
MAX_BODY_BYTES = 65536  # docs/CONTRACTS.md: <SVC>__HTTP__MAX_BODY_BYTES default

STR = {"type": "string"}
STRS = {"type": "array", "items": STR}
BOOL = {"type": "boolean"}
NUM = {"type": "number", "minimum": 0}
TIMEOUT = {"type": "integer", "minimum": 0}
PROPAGATION_FORMATS = ["preserve", "ignore", "w3c", "b3", "b3-single", "jaeger", "ot", "aws",
                       "gcp", "datadog", "instana"]


def config(props):
    return {"type": "object", "additionalProperties": False, "properties": props}


SCHEMAS = {
    "jwt": config({
        "uri_param_names": STRS, "cookie_names": STRS, "header_names": STRS,
        "key_claim_name": STR, "secret_is_base64": BOOL,
        "claims_to_verify": {"type": "array", "items": {"enum": ["exp", "nbf"]}},
        "anonymous": STR, "run_on_preflight": BOOL, "maximum_expiration": NUM, "realm": STR}),
    "rate-limiting": config({
        **{unit: {"type": "number", "minimum": 1}
           for unit in ("second", "minute", "hour", "day", "month", "year")},
        "limit_by": {"enum": ["consumer", "credential", "ip", "service", "header", "path",
                              "consumer-group"]},
        "header_name": STR, "path": STR, "policy": {"enum": ["local", "cluster", "redis"]},
        "fault_tolerant": BOOL, "hide_client_headers": BOOL, "error_code": NUM,
        "error_message": STR, "sync_rate": {"type": "number"}, "redis": {"type": "object"}}),
    "cors": config({
        "origins": STRS, "methods": {"type": "array", "items": {"enum": [
            "GET", "HEAD", "PUT", "PATCH", "POST", "DELETE", "OPTIONS", "TRACE", "CONNECT"]}},
        "headers": STRS, "exposed_headers": STRS, "credentials": BOOL, "max_age": NUM,
        "preflight_continue": BOOL, "private_network": BOOL}),
    "correlation-id": config({
        "header_name": STR, "generator": {"enum": ["uuid", "uuid#counter", "tracker"]},
        "echo_downstream": BOOL}),
    "request-size-limiting": config({
        "allowed_payload_size": {"type": "integer", "minimum": 1},
        "size_unit": {"enum": ["megabytes", "kilobytes", "bytes"]},
        "require_content_length": BOOL}),
    "prometheus": config({
        "per_consumer": BOOL, "status_code_metrics": BOOL, "latency_metrics": BOOL,
        "bandwidth_metrics": BOOL, "upstream_health_metrics": BOOL, "ai_metrics": BOOL}),
    "opentelemetry": config({
        "endpoint": STR, "traces_endpoint": {"type": "string", "pattern": "^https?://"},
        "logs_endpoint": STR, "headers": {"type": "object"},
        "resource_attributes": {"type": "object"}, "queue": {"type": "object"},
        "batch_span_count": {"type": "integer"}, "batch_flush_delay": {"type": "integer"},
        "connect_timeout": TIMEOUT, "send_timeout": TIMEOUT, "read_timeout": TIMEOUT,
        "http_response_header_for_traceid": STR, "sampling_rate": {"type": "number"},
        "header_type": {"enum": PROPAGATION_FORMATS},
        "propagation": config({
            "extract": {"type": "array", "items": {"enum": PROPAGATION_FORMATS}},
            "inject": {"type": "array", "items": {"enum": PROPAGATION_FORMATS}},
            "clear": STRS, "default_format": {"enum": PROPAGATION_FORMATS}})}),
}
UNITS = {"bytes": 1, "kilobytes": 1024, "megabytes": 1024 * 1024}


def pem_rsa_public_key(pem):
    """(n, e) of a PEM SubjectPublicKeyInfo RSA key; raises ValueError when it is not one."""
    lines = [line.strip() for line in pem.strip().splitlines()]
    if lines[0] != "-----BEGIN PUBLIC KEY-----" or lines[-1] != "-----END PUBLIC KEY-----":
        raise ValueError("not a PEM 'PUBLIC KEY' block")
    der = base64.b64decode("".join(lines[1:-1]), validate=True)

    def tlv(buf, pos):
        tag, length = buf[pos], buf[pos + 1]
        pos += 2
        if length & 0x80:
            n = length & 0x7F
            length = int.from_bytes(buf[pos:pos + n], "big")
            pos += n
        return tag, buf[pos:pos + length], pos + length

    _, spki, _ = tlv(der, 0)
    _, algorithm, pos = tlv(spki, 0)
    if b"\x2a\x86\x48\x86\xf7\x0d\x01\x01\x01" not in algorithm:  # rsaEncryption OID
        raise ValueError("not an RSA key")
    _, bitstring, _ = tlv(spki, pos)
    _, rsa, _ = tlv(bitstring[1:], 0)
    _, n, pos = tlv(rsa, 0)
    _, e, _ = tlv(rsa, pos)
    return int.from_bytes(n, "big"), int.from_bytes(e, "big")


def all_plugins(config_doc):
    yield "global", config_doc.get("plugins") or []
    for svc in config_doc.get("services") or []:
        yield f"service {svc.get('name')}", svc.get("plugins") or []
        for route in svc.get("routes") or []:
            yield f"route {route.get('name')}", route.get("plugins") or []
    for route in config_doc.get("routes") or []:
        yield f"route {route.get('name')}", route.get("plugins") or []


def main(argv):
    path = pathlib.Path(argv[1]) if len(argv) > 1 else REPO / "kong" / "kong.yml"
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    checks = kong_istio_contract.Checks()
    report = checks.report

    errors, seen = [], set()
    for where, plugins in all_plugins(doc):
        for p in plugins:
            name = p.get("name")
            schema = SCHEMAS.get(name)
            if schema is None:
                errors.append(f"{where}: plugin {name!r} has no schema here (add one to kong_plugins.py)")
                continue
            if p.get("enabled", True):
                seen.add(name)
            for e in jsonschema.Draft7Validator(schema).iter_errors(p.get("config") or {}):
                field = ".".join(["config", *map(str, e.absolute_path)])
                errors.append(f"{where}: {name}.{field}: {e.message}")
            cfg = p.get("config") or {}
            if name == "request-size-limiting":
                size = cfg.get("allowed_payload_size", 128) * UNITS.get(cfg.get("size_unit", "megabytes"), 0)
                if size > MAX_BODY_BYTES:
                    errors.append(f"{where}: request-size-limiting allows {size} bytes, services accept {MAX_BODY_BYTES}")
            if name == "jwt" and cfg.get("anonymous"):
                consumers = {c.get("username") for c in doc.get("consumers") or []}
                if cfg["anonymous"] not in consumers:
                    errors.append(f"{where}: jwt anonymous consumer {cfg['anonymous']!r} is not defined")
    missing = [n for n in REQUIRED if n not in seen]
    if missing:
        errors.append(f"required plugins not enabled anywhere: {missing}")
    report(f"kong plugin configs match their schemas, all of {len(REQUIRED)} required plugins on", errors)

    errors = []
    creds = [(c.get("username"), s) for c in doc.get("consumers") or [] for s in c.get("jwt_secrets") or []]
    issuer = [(u, s) for u, s in creds if s.get("key") == ISSUER]
    if len(issuer) != 1:
        errors.append(f"expected one jwt credential with key {ISSUER!r} (the token's iss), found {len(issuer)}")
    for user, s in issuer:
        if s.get("algorithm") != "RS256":
            errors.append(f"consumer {user}: algorithm {s.get('algorithm')!r}, user-service signs RS256")
        try:
            n, _ = pem_rsa_public_key(s.get("rsa_public_key") or "")
            if n.bit_length() < 2048:
                errors.append(f"consumer {user}: RSA key of {n.bit_length()} bits, want >= 2048")
        except (ValueError, IndexError) as exc:
            errors.append(f"consumer {user}: rsa_public_key unreadable: {exc}")
    report(f"kong jwt credential for iss={ISSUER}: RS256 with a readable RSA public key", errors)
    return checks.exit_code()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
