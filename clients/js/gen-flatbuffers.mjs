// Generates src/generated/fbs/ (the binary protocol's readers and builders) from
// docs/api/websocket.fbs with Debian's flatc (`flatc --ts --gen-object-api`; flatbuffers-compiler,
// installed by scripts/setup), then makes its relative imports name their `.js` files, as Node's
// ES modules (and tsc's NodeNext resolution) require. Nothing generated is committed.
import {execFileSync} from "node:child_process";
import {readdirSync, readFileSync, rmSync, statSync, writeFileSync} from "node:fs";
import {dirname, join, resolve} from "node:path";
import {fileURLToPath} from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const schema = resolve(here, "../../docs/api/websocket.fbs");
const out = resolve(here, "src/generated/fbs");
const flatc = process.env.FLATC || "flatc";

rmSync(out, {recursive: true, force: true});
try {
  execFileSync(flatc, ["--ts", "--gen-object-api", "-o", out, schema], {stdio: "inherit"});
} catch (e) {
  console.error(`gen-flatbuffers: ${flatc} failed (Debian's flatbuffers-compiler; scripts/setup installs it): ${e.message}`);
  process.exit(1);
}

function* files(dir) {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) yield* files(p);
    else if (p.endsWith(".ts")) yield p;
  }
}
let count = 0;
for (const file of files(out)) {
  // flatc imports every table into data.ts and frame.ts whether used or not, which this
  // package's noUnusedLocals refuses: the generated files are not type-checked themselves
  // (their declarations still type the code that uses them).
  const text = "// @ts-nocheck\n" + readFileSync(file, "utf8")
    .replace(/(from\s+')(\.{1,2}\/[^']+?)(?<!\.js)(')/g, "$1$2.js$3");
  writeFileSync(file, text);
  count++;
}
if (count === 0) {
  console.error(`gen-flatbuffers: ${flatc} wrote nothing into ${out}`);
  process.exit(1);
}
