// Bundles the chat app: src/main.tsx (Preact, on the SDK in clients/js/src) → <out>/app.js,
// src/app.css → <out>/app.css, and index.html beside them. The gateway compiles the three into
// `imlog` (gateway/CMakeLists.txt runs this at build time; nothing built is committed).
//
//   node build.mjs --out DIR [--dev]     (--dev: no minifying, inline source maps)
import {build} from "esbuild";
import {copyFileSync, mkdirSync} from "node:fs";
import {dirname, resolve} from "node:path";
import {fileURLToPath} from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const outIdx = args.indexOf("--out");
if (outIdx < 0 || !args[outIdx + 1]) {
  console.error("usage: node build.mjs --out DIR [--dev]");
  process.exit(2);
}
const out = resolve(args[outIdx + 1]);
const dev = args.includes("--dev");
mkdirSync(out, {recursive: true});
await build({
  entryPoints: {app: resolve(here, "src/main.tsx")},
  outdir: out,
  bundle: true,
  format: "iife",
  target: ["chrome100", "firefox100", "safari15"],
  jsx: "automatic",
  jsxImportSource: "preact",
  alias: {"@imlog/sdk": resolve(here, "../clients/js/src/index.ts")},
  // The SDK's sources import with .js suffixes (NodeNext); resolve them to the .ts files.
  resolveExtensions: [".tsx", ".ts", ".js"],
  minify: !dev,
  sourcemap: dev ? "inline" : false,
  legalComments: "none",
  charset: "utf8",
  logLevel: "warning",
});
await build({entryPoints: [resolve(here, "src/app.css")], outfile: resolve(out, "app.css"), bundle: true, minify: !dev, logLevel: "warning"});
copyFileSync(resolve(here, "index.html"), resolve(out, "index.html"));
