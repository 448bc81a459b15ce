#!/usr/bin/env node
// Checks custom resources in YAML files against the @kubernetes-models packages:
//   1. each document is typed against the package's TypeScript interface (I<Kind>) and `tsc`
//      runs over them: misspelled or unknown field names fail (the CRD JSON schemas allow them);
//   2. each model's validate() runs: wrong types, enums, patterns, missing required fields fail.
// Documents of built-in Kubernetes groups are skipped (kubernetes-validate covers them); a
// custom resource of a group with no model is a failure.
// Usage: node charts_crd_types.mjs FILE...   (NODE_PATH = the node_modules of tools_npm)
// Prints one line per file: "ok - crd types: FILE (...)" or "not ok - ..." with reasons.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { execFileSync } from "node:child_process";
import { createRequire } from "node:module";
import path from "node:path";
import { pathToFileURL } from "node:url";

const nodeModules = process.env.NODE_PATH;
if (!nodeModules) {
  console.error("NODE_PATH must point at the tools' node_modules (tools_npm)");
  process.exit(2);
}
const require = createRequire(path.join(nodeModules, "noop.js"));
const { parseAllDocuments } = require("yaml");

// API group -> npm package holding its models.
const PACKAGES = {
  "monitoring.coreos.com": "@kubernetes-models/prometheus-operator",
  "networking.istio.io": "@kubernetes-models/istio",
  "security.istio.io": "@kubernetes-models/istio",
  "telemetry.istio.io": "@kubernetes-models/istio",
  "extensions.istio.io": "@kubernetes-models/istio",
  "argoproj.io": ["@kubernetes-models/argo-cd", "@kubernetes-models/argo-rollouts"],
};
const isBuiltIn = (group) =>
  group === "" || !group.includes(".") || group.endsWith(".k8s.io") || group === "apiextensions.k8s.io";

function packageFor(apiVersion, kind) {
  const group = apiVersion.includes("/") ? apiVersion.split("/")[0] : "";
  const candidates = [PACKAGES[group] ?? []].flat();
  for (const pkg of candidates) {
    try {
      require.resolve(`${pkg}/package.json`);
    } catch {
      continue;
    }
    const dts = path.join(nodeModules, pkg, apiVersion, `${kind}.d.ts`);
    try {
      readFileSync(dts);
      return pkg;
    } catch {
      /* next */
    }
  }
  return null;
}

const files = process.argv.slice(2);
const results = new Map(files.map((f) => [f, { kinds: [], errors: [] }]));
const typed = []; // {file, label, pkg, apiVersion, kind, doc}

for (const file of files) {
  const r = results.get(file);
  let docs;
  try {
    docs = parseAllDocuments(readFileSync(file, "utf8"));
  } catch (e) {
    r.errors.push(`cannot read: ${e.message}`);
    continue;
  }
  docs.forEach((d, i) => {
    if (d.errors.length) {
      r.errors.push(`document ${i}: ${d.errors[0].message}`);
      return;
    }
    const doc = d.toJS();
    if (!doc || typeof doc !== "object") return;
    const { apiVersion = "", kind = "" } = doc;
    const group = apiVersion.includes("/") ? apiVersion.split("/")[0] : "";
    if (isBuiltIn(group)) return;
    const label = `${kind}/${doc.metadata?.name ?? `#${i}`}`;
    const pkg = packageFor(apiVersion, kind);
    if (!pkg) {
      r.errors.push(`${label}: no model for ${apiVersion} ${kind}`);
      return;
    }
    r.kinds.push(label);
    typed.push({ file, label, pkg, apiVersion, kind, doc });
  });
}

// 1. runtime validation through each model's validate()
for (const t of typed) {
  try {
    const mod = await import(pathToFileURL(path.join(nodeModules, t.pkg, t.apiVersion, `${t.kind}.js`)).href);
    new mod[t.kind](t.doc).validate();
  } catch (e) {
    results.get(t.file).errors.push(`${t.label}: ${e.message.split("\n").slice(0, 8).join("; ")}`);
  }
}

// 2. compile-time: excess property checks catch misspelled field names
if (typed.length) {
  const dir = mkdtempSync(path.join(path.dirname(nodeModules), ".crd-types-"));
  try {
    const lines = [];
    const owner = []; // line number -> typed index
    typed.forEach((t, i) => {
      lines.push(`import type { I${t.kind} as T${i} } from "${t.pkg}/${t.apiVersion}/${t.kind}";`);
      owner.push(i);
    });
    typed.forEach((t, i) => {
      const body = `export const d${i}: T${i} = ${JSON.stringify(t.doc, null, 2)};`.split("\n");
      for (const l of body) {
        lines.push(l);
        owner.push(i);
      }
    });
    writeFileSync(path.join(dir, "docs.mts"), lines.join("\n") + "\n");
    const tsc = path.join(nodeModules, "typescript", "bin", "tsc");
    const args = ["--noEmit", "--strict", "--skipLibCheck", "--target", "es2022", "--module", "nodenext",
      "--moduleResolution", "nodenext", path.join(dir, "docs.mts")];
    try {
      execFileSync(process.execPath, [tsc, ...args], { encoding: "utf8", stdio: "pipe" });
    } catch (e) {
      const out = `${e.stdout ?? ""}${e.stderr ?? ""}`;
      let matched = false;
      for (const line of out.split("\n")) {
        const m = line.match(/docs\.mts\((\d+),\d+\): error (TS\d+: .*)/);
        if (!m) continue;
        matched = true;
        const t = typed[owner[Number(m[1]) - 1]];
        results.get(t.file).errors.push(`${t.label}: ${m[2]}`);
      }
      if (!matched) for (const f of files) results.get(f).errors.push(`tsc failed: ${out.trim().slice(0, 500)}`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

let failed = 0;
for (const [file, r] of results) {
  const what = `crd types: ${path.relative(process.cwd(), file)} (${r.kinds.length ? r.kinds.join(", ") : "no custom resources"})`;
  if (r.errors.length) {
    failed++;
    console.log(`not ok - ${what}`);
    for (const e of r.errors) console.log(`    ${e}`);
  } else console.log(`ok - ${what}`);
}
process.exit(failed ? 1 : 0);
