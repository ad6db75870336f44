// Compiles one kind of the TypeScript tests (test/<kind>/*.test.ts) to out/<kind>/ for node's own
// test runner (node --test): Node 20 runs no TypeScript itself. Each kind has its own output
// folder, so ctest may build and run both at once.
//
//   node build-tests.mjs unit|integration
import {build} from "esbuild";
import {existsSync, readdirSync, rmSync} from "node:fs";
import {execFileSync} from "node:child_process";
import {dirname, join} from "node:path";
import {fileURLToPath} from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const kind = process.argv[2];
if (kind !== "unit" && kind !== "integration") {
  console.error("usage: node build-tests.mjs unit|integration");
  process.exit(2);
}
// The API types come from the build (clients/js/CMakeLists.txt); generate them when run by hand.
if (!existsSync(join(here, "src/generated/openapi.ts")) || !existsSync(join(here, "src/generated/frames.ts")) ||
    !existsSync(join(here, "src/generated/fbs/imlog/ws/frame.ts"))) {
  execFileSync("npm", ["run", "--silent", "generate"], {cwd: here, stdio: "inherit"});
}
const dir = join(here, "test", kind);
const entries = readdirSync(dir).filter((f) => f.endsWith(".test.ts")).map((f) => join(dir, f));
rmSync(join(here, "out", kind), {recursive: true, force: true});
await build({
  entryPoints: entries, outdir: join(here, "out", kind), bundle: true,
  platform: "node", format: "esm", target: "node20", packages: "external", sourcemap: "inline",
  outExtension: {".js": ".mjs"}, logLevel: "warning",
});
