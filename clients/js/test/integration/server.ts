// A real `imlog serve` for the integration tests: the binary scripts/build made (or $IMLOG_BIN),
// an embedded data dir under a fresh temp dir, a free loopback port, cheap password hashing. It
// can be killed and started again on the same port and data, as a crash and restart would.
import {spawn, type ChildProcess} from "node:child_process";
import {mkdtempSync, rmSync, writeFileSync, readFileSync} from "node:fs";
import {createServer} from "node:net";
import {tmpdir} from "node:os";
import {join, resolve} from "node:path";

export const imlogBin = process.env.IMLOG_BIN ?? resolve(process.cwd(), "../../build/bin/imlog");

export const kConfig = `
log: {level: warn}
gateway:
  password_ops_limit: 1
  password_mem_limit: 8KiB
  read_model_wait: 5s
`;

export async function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once("error", rej);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as {port: number}).port;
      s.close(() => res(port));
    });
  });
}

/** Waits until `cond` holds (polled every 20 ms) or throws after `ms` naming `what`. */
export async function waitFor(what: string, cond: () => boolean | Promise<boolean>, ms = 15_000): Promise<void> {
  const until = Date.now() + ms;
  for (;;) {
    try { if (await cond()) return; } catch { /* not yet */ }
    if (Date.now() > until) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export class ImlogServer {
  readonly dir = mkdtempSync(join(tmpdir(), "imlog-sdk-"));
  port = 0;
  private proc: ChildProcess | null = null;
  constructor(private config = kConfig) { writeFileSync(join(this.dir, "imlog.yaml"), config); }
  get url() { return `http://127.0.0.1:${this.port}`; }

  async start(): Promise<void> {
    if (!this.port) this.port = await freePort();
    const log = join(this.dir, "imlog.log");
    this.proc = spawn(imlogBin, ["serve", "--data-dir", join(this.dir, "data"), "--listen", `127.0.0.1:${this.port}`,
                                 "--config", join(this.dir, "imlog.yaml")], {stdio: ["ignore", "ignore", "pipe"]});
    const chunks: Buffer[] = [];
    this.proc.stderr!.on("data", (c: Buffer) => { chunks.push(c); writeFileSync(log, Buffer.concat(chunks)); });
    const proc = this.proc;
    try {
      await waitFor(`imlog ready on ${this.url}`, async () => {
        if (proc.exitCode !== null) throw new Error("exited");
        return (await fetch(`${this.url}/readyz`)).status === 200;
      }, 30_000);
    } catch (e) {
      throw new Error(`${(e as Error).message}; exit ${proc.exitCode}; log:\n${this.log()}`);
    }
  }
  log(): string { try { return readFileSync(join(this.dir, "imlog.log"), "utf8"); } catch { return ""; } }

  /** SIGKILL: a crash, nothing flushed beyond what was durable. */
  async kill(): Promise<void> {
    const p = this.proc;
    if (!p || p.exitCode !== null) return;
    const exited = new Promise((r) => p.once("exit", r));
    p.kill("SIGKILL");
    await exited;
    this.proc = null;
  }
  async stop(): Promise<void> {
    const p = this.proc;
    if (p && p.exitCode === null) {
      const exited = new Promise((r) => p.once("exit", r));
      p.kill("SIGTERM");
      await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
      if (p.exitCode === null) p.kill("SIGKILL");
    }
    this.proc = null;
  }
  async dispose(): Promise<void> {
    await this.stop();
    rmSync(this.dir, {recursive: true, force: true});
  }
}
