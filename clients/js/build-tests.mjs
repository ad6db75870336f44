// Compiles the TypeScript tests (test/**/*.test.ts) to out/test/ for node's own test runner
// (node --test): Node 20 runs no TypeScript itself. Generates the API types first when missing.
import {build} from "esbuild";
import {existsSync, readdirSync, rmSync} from "node:fs";
import {execFileSync} from "node:child_process";
import {dirname, join} from "node:path";
import {fileURLToPath} from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
if (!existsSync(join(here, "src/generated/openapi.ts")) || !existsSync(join(here, "src/generated/frames.ts"))) {
  execFileSync("npm", ["run", "--silent", "generate"], {cwd: here, stdio: "inherit"});
}
const entries = [];
for (const kind of ["unit", "integration"]) {
  const dir = join(here, "test", kind);
  for (const f of readdirSync(dir)) if (f.endsWith(".test.ts")) entries.push(join(dir, f));
}
rmSync(join(here, "out"), {recursive: true, force: true});
await build({
  entryPoints: entries, outdir: join(here, "out/test"), outbase: join(here, "test"), bundle: true,
  platform: "node", format: "esm", target: "node20", packages: "external", sourcemap: "inline",
  outExtension: {".js": ".mjs"}, logLevel: "warning",
});
