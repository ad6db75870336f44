// What the browser tests stand on: a real `imlog serve` (the built binary, $IMLOG_BIN, with the
// bundled app compiled in) on a free loopback port with an embedded data dir under a temp dir,
// which can be killed and restarted on the same port and data; and Debian's Chromium driven by
// puppeteer-core (never a downloaded browser).
import {spawn} from "node:child_process";
import {existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync} from "node:fs";
import {createServer} from "node:net";
import {tmpdir} from "node:os";
import {dirname, join, resolve} from "node:path";
import {fileURLToPath} from "node:url";
import puppeteer from "puppeteer-core";

const here = dirname(fileURLToPath(import.meta.url));
export const imlogBin = process.env.IMLOG_BIN ?? resolve(here, "../../build/bin/imlog");
export const chromiumBin = process.env.IMLOG_CHROMIUM ?? "/usr/bin/chromium";
/** Screenshots go here (ctest sets it under the build dir). */
export const artifacts = process.env.IMLOG_TEST_ARTIFACTS ?? resolve(here, "../../build/test-artifacts/web");

export async function freePort() {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once("error", rej);
    s.listen(0, "127.0.0.1", () => { const {port} = s.address(); s.close(() => res(port)); });
  });
}

/** Polls `cond` every 25 ms until it is truthy; throws naming `what` after `ms`. */
export async function waitFor(what, cond, ms = 15_000) {
  const until = Date.now() + ms;
  let last;
  for (;;) {
    try { const v = await cond(); if (v) return v; } catch (e) { last = e; }
    if (Date.now() > until) throw new Error(`timed out after ${ms} ms waiting for ${what}${last ? ` (last error: ${last.message})` : ""}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

export class ImlogServer {
  constructor() {
    this.dir = mkdtempSync(join(tmpdir(), "imlog-web-"));
    this.port = 0;
    this.proc = null;
    writeFileSync(join(this.dir, "imlog.yaml"), [
      "log: {level: warn}",
      "gateway:",
      "  password_ops_limit: 1",      // cheap hashing: sign-ups take no time
      "  password_mem_limit: 8KiB",
      "  read_model_wait: 5s",
      // A bundle from `node build.mjs --out DIR --dev` instead of the compiled-in one (no relink).
      ...(process.env.IMLOG_WEB_DIR ? [`  web_dir: ${JSON.stringify(process.env.IMLOG_WEB_DIR)}`] : []),
    ].join("\n") + "\n");
  }
  get url() { return `http://127.0.0.1:${this.port}`; }
  async start() {
    if (!existsSync(imlogBin)) throw new Error(`${imlogBin} is missing: build it (scripts/build --target imlog)`);
    if (!this.port) this.port = await freePort();
    const chunks = [];
    const proc = spawn(imlogBin, ["serve", "--data-dir", join(this.dir, "data"), "--listen", `127.0.0.1:${this.port}`,
                                  "--config", join(this.dir, "imlog.yaml")], {stdio: ["ignore", "ignore", "pipe"]});
    proc.stderr.on("data", (c) => { chunks.push(c); writeFileSync(join(this.dir, "imlog.log"), Buffer.concat(chunks)); });
    this.proc = proc;
    try {
      await waitFor(`imlog ready on ${this.url}`, async () => {
        if (proc.exitCode !== null) throw new Error(`exited with ${proc.exitCode}`);
        return (await fetch(`${this.url}/readyz`)).status === 200;
      }, 30_000);
    } catch (e) {
      let log = "";
      try { log = readFileSync(join(this.dir, "imlog.log"), "utf8"); } catch { /* none */ }
      throw new Error(`${e.message}; log:\n${log}`);
    }
  }
  /** SIGKILL: a crash mid-conversation. */
  async kill() {
    const p = this.proc;
    if (!p || p.exitCode !== null) return;
    const exited = new Promise((r) => p.once("exit", r));
    p.kill("SIGKILL");
    await exited;
    this.proc = null;
  }
  async dispose() {
    const p = this.proc;
    if (p && p.exitCode === null) {
      const exited = new Promise((r) => p.once("exit", r));
      p.kill("SIGTERM");
      await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
      if (p.exitCode === null) p.kill("SIGKILL");
    }
    rmSync(this.dir, {recursive: true, force: true});
  }
}

/** Debian's Chromium, headless; --no-sandbox only as root (Chromium refuses to start otherwise). */
export async function launchChromium() {
  if (!existsSync(chromiumBin)) throw new Error(`${chromiumBin} is missing: run scripts/setup (Debian's chromium)`);
  const args = ["--disable-gpu", "--disable-dev-shm-usage", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--lang=en-US"];
  if (process.getuid?.() === 0) args.push("--no-sandbox");
  return puppeteer.launch({executablePath: chromiumBin, headless: true, args, defaultViewport: {width: 1100, height: 720}});
}

export function screenshotPath(name) {
  mkdirSync(artifacts, {recursive: true});
  return join(artifacts, `${name}.png`);
}

/** axe-core's source, to evaluate in a page (over the DevTools protocol, which the CSP does not govern). */
export const axeSource = readFileSync(resolve(here, "../node_modules/axe-core/axe.min.js"), "utf8");
