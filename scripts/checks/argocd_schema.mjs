// Validates Argo CD resources against the Argo CD CRD schemas, two ways:
//   1. @kubernetes-models/argo-cd's validate(): types, enums, patterns, required fields;
//   2. each document typed as the package's TypeScript interface and compiled with tsc
//      (excess-property checks), because the CRD schemas accept unknown fields and so a
//      misspelled field (`syncPolicy.automated.selfheal`) would otherwise pass.
//
// usage: node argocd_schema.mjs DOCS.json
//   DOCS.json: [{"origin": "where it came from", "doc": {...}}] (argocd_lint.py --dump)
// Needs NODE_PATH pointing at node_modules with @kubernetes-models/argo-cd and typescript
// (scripts/lib/tools.sh: tools_npm). Prints `ok - ...` / `not ok - ...`; exits 1 on failure.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

const MODELS = {
  Application: "Application",
  ApplicationSet: "ApplicationSet",
  AppProject: "AppProject",
};

const nodeModules = (process.env.NODE_PATH || "").split(path.delimiter).find(Boolean);
if (!nodeModules) {
  console.log("not ok - argocd: schema check needs NODE_PATH (source scripts/lib/tools.sh; tools_npm)");
  process.exit(1);
}
const pkg = path.join(nodeModules, "@kubernetes-models", "argo-cd", "argoproj.io", "v1alpha1");
const entries = JSON.parse(readFileSync(process.argv[2], "utf8"));
let failed = 0;

function report(what, problems) {
  if (problems.length) {
    failed++;
    console.log(`not ok - ${what}`);
    for (const p of problems) console.log(`    ${p}`);
  } else {
    console.log(`ok - ${what}`);
  }
}

const label = (e) => `${e.doc.kind}/${e.doc.metadata?.name ?? "?"} (${e.origin})`;

// 1. validate() of each model
const schemaProblems = [];
for (const e of entries) {
  const model = MODELS[e.doc.kind];
  if (!model || e.doc.apiVersion !== "argoproj.io/v1alpha1") {
    schemaProblems.push(`${label(e)}: not an argoproj.io/v1alpha1 Application, ApplicationSet or AppProject`);
    continue;
  }
  const mod = await import(pathToFileURL(path.join(pkg, `${model}.js`)).href);
  try {
    new mod[model](e.doc).validate();
  } catch (err) {
    const details = (err.errors ?? []).map((x) => `${x.instancePath || "/"} ${x.message}`).join("; ");
    schemaProblems.push(`${label(e)}: ${details || err.message}`);
  }
}
report(`argocd: ${entries.length} Argo CD resources valid against the CRD schemas (@kubernetes-models/argo-cd)`, schemaProblems);

// 2. typed through TypeScript: one file per document, so errors name the document
const dir = mkdtempSync(path.join(path.dirname(nodeModules), ".argocd-typecheck-"));
const typeProblems = [];
try {
  const files = entries.map((e, i) => {
    const model = MODELS[e.doc.kind];
    const file = path.join(dir, `doc${i}.ts`);
    const body = model
      ? `import type { I${model} } from "@kubernetes-models/argo-cd/argoproj.io/v1alpha1/${model}";\n` +
        `export const doc: I${model} = ${JSON.stringify(e.doc, null, 2)};\n`
      : "export {};\n";
    writeFileSync(file, body);
    return file;
  });
  writeFileSync(
    path.join(dir, "tsconfig.json"),
    JSON.stringify({
      compilerOptions: {
        strict: true, noEmit: true, skipLibCheck: true, module: "esnext",
        moduleResolution: "bundler", target: "es2022", types: [],
      },
      files: files.map((f) => path.basename(f)),
    }),
  );
  const tsc = path.join(nodeModules, "typescript", "bin", "tsc");
  try {
    execFileSync(process.execPath, [tsc, "-p", dir], { encoding: "utf8", stdio: "pipe" });
  } catch (err) {
    const out = `${err.stdout ?? ""}${err.stderr ?? ""}`;
    for (const line of out.split("\n")) {
      const m = line.match(/doc(\d+)\.ts\((\d+),\d+\): error TS\d+: (.*)/);
      if (m) typeProblems.push(`${label(entries[Number(m[1])])}: line ${m[2]} of its JSON: ${m[3]}`);
      else if (line.trim() && !line.startsWith(" ")) typeProblems.push(line.trim());
    }
    if (!typeProblems.length) typeProblems.push(out.trim() || String(err));
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
report(`argocd: ${entries.length} Argo CD resources type-check against the Argo CD TypeScript models (misspelled fields fail)`, typeProblems);

process.exit(failed ? 1 : 0);
