#!/usr/bin/env python3
"""Type-checks rendered Kubernetes documents against the kubernetes-models TypeScript packages.

Each document becomes an object literal typed with its kind's interface (IPrometheusRule,
IConfigMap, ...). `tsc --strict` rejects misspelled or unknown fields (excess-property checks on
fresh object literals), wrong types and missing required fields; then node runs each model's
validate() (the CRD's JSON schema: enums, patterns, formats).

  k8s_typecheck.py RENDERED.yaml...        (needs tsc on PATH and NODE_PATH pointing at the
                                            node_modules holding typescript and the models)
Prints one line per problem and exits 1 if any; a document of an unmapped kind is a problem.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile

import yaml

# kind (apiVersion) -> (module, class). Extend when the project renders more kinds.
MODELS = {
    ("v1", "ConfigMap"): ("kubernetes-models/v1", "ConfigMap"),
    ("monitoring.coreos.com/v1", "PrometheusRule"): ("@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1",
                                                      "PrometheusRule"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"): ("@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1",
                                                      "ServiceMonitor"),
}


def main(paths):
    node_modules = os.environ.get("NODE_PATH", "").split(os.pathsep)[0]
    if not node_modules or not os.path.isdir(os.path.join(node_modules, "typescript")):
        print("k8s_typecheck: NODE_PATH must point at node_modules with typescript and the models")
        return 1
    docs, problems = [], []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            for i, doc in enumerate(yaml.safe_load_all(f)):
                if not doc:
                    continue
                key = (doc.get("apiVersion"), doc.get("kind"))
                name = f'{path}: {key[1]} {(doc.get("metadata") or {}).get("name", f"#{i}")}'
                if key not in MODELS:
                    problems.append(f"{name}: no model for {key[0]} {key[1]}")
                    continue
                docs.append((name, key, doc))

    imports, body, line_of = {}, [], []
    for idx, (name, key, doc) in enumerate(docs):
        module, cls = MODELS[key]
        imports.setdefault(module, set()).update({cls, f"I{cls}"})
        line_of.append((len(body), name))
        body.append(f"// {name}")
        text = json.dumps(doc, indent=1).splitlines()
        body.append(f"const d{idx}: I{cls} = {text[0]}")
        body.extend(text[1:])
        body.append(f"check({json.dumps(name)}, () => new {cls}(d{idx}).validate());")
    head = [f'import {{ {", ".join(sorted(names))} }} from "{module}";' for module, names in sorted(imports.items())]
    head += ["let failed = 0;",
             "function check(name: string, f: () => void): void {",
             "  try { f(); } catch (e) { failed++; console.log(`${name}: ${(e as Error).message}`); }",
             "}"]
    tail = ["if (failed > 0) { (globalThis as unknown as { process: { exitCode: number } }).process.exitCode = 1; }"]
    offset = len(head) + 1  # 1-based lines in the .ts file

    with tempfile.TemporaryDirectory() as tmp:
        os.symlink(node_modules, os.path.join(tmp, "node_modules"))
        with open(os.path.join(tmp, "package.json"), "w") as f:
            json.dump({"type": "module", "private": True}, f)
        with open(os.path.join(tmp, "tsconfig.json"), "w") as f:
            json.dump({"compilerOptions": {"strict": True, "module": "nodenext", "moduleResolution": "nodenext",
                                           "target": "es2022", "skipLibCheck": True, "types": [],
                                           "outDir": "out"}, "files": ["check.ts"]}, f)
        with open(os.path.join(tmp, "check.ts"), "w") as f:
            f.write("\n".join(head + body + tail) + "\n")
        tsc = subprocess.run(["tsc", "-p", tmp], capture_output=True, text=True)
        for line in (tsc.stdout + tsc.stderr).splitlines():
            m = re.search(r"check\.ts\((\d+),\d+\): (.*)", line.strip())
            if m:
                n = int(m.group(1)) - offset
                where = next((nm for start, nm in reversed(line_of) if start <= n), "?")
                problems.append(f"{where}: {m.group(2)}")
            elif line.strip() and not line.startswith(" "):
                problems.append(f"tsc: {line.strip()}")
            elif line.strip():
                problems[-1:] = [problems[-1] + " " + line.strip()] if problems else [line.strip()]
        if tsc.returncode == 0:
            run = subprocess.run(["node", os.path.join(tmp, "out", "check.js")], capture_output=True, text=True)
            problems += [l for l in (run.stdout + run.stderr).splitlines() if l.strip()]
            if run.returncode and not run.stdout.strip():
                problems.append(f"node exited {run.returncode}")
    for p in problems:
        print(p)
    print(f"k8s_typecheck: {len(docs)} document(s), {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
