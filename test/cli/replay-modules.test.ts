/**
 * What `reclaim rules replay` loads (ADR 37): neither the logger (pino) nor
 * the metrics (prom-client), which it never writes to but which cost its
 * start-up ~50 ms of module loading. Every file the real command loads is
 * listed by a module loader hook in the child process, over a small log and
 * over one big enough to be scanned by worker threads (ADR 32). Which of our
 * modules a bundle chunk holds is read from the chunk: rolldown heads each
 * module's code with a `// dist/…/name.js` comment.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { runCli } from "../support/cli.js";

const RULES = fileURLToPath(new URL("../../rules", import.meta.url));
const dir = mkdtempSync(join(tmpdir(), "reclaim-replay-modules-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const LOADER = join(dir, "loader.mjs");
writeFileSync(LOADER, 'export async function load(url, context, next) { process.stderr.write("LOADED " + url + "\\n"); return next(url, context); }\n');

const T0 = Date.parse("2026-11-27T00:00:00.000Z");

/** A factory log of `lines` lines with a HARD LIMIT line every 1000. */
function writeLog(name: string, lines: number): string {
  const out: string[] = [];
  for (let i = 0; i < lines; i++) {
    const userId = String(105945141827451681156n + BigInt(i % 1000 === 999 ? 1 + i : 0));
    const event = i % 1000 === 999 ? "factory.hard_limit" : "factory.connection_opened";
    const severity = i % 1000 === 999 ? "ERROR" : "INFO";
    out.push(JSON.stringify({ severity, time: new Date(T0 + i * 10).toISOString(), pod: "chat-factory-a", event, userId, managers: 20, limit: 20, message: `${event} ${"x".repeat(120)}` }));
  }
  const path = join(dir, name);
  writeFileSync(path, `${out.join("\n")}\n`);
  return path;
}

/** Runs `rules replay --json` over `log` with the loader hook: the files it loaded, and its report. */
async function loadedBy(log: string, env: Record<string, string> = {}): Promise<{ files: string[]; report: { incidents: unknown[]; lines: { read: number } } }> {
  const r = await runCli(["rules", "replay", "--rules", RULES, "--logs", log, "--json"], {
    NODE_OPTIONS: `--no-warnings --experimental-loader=${pathToFileURL(LOADER).href}`,
    ...env,
  });
  expect(r.code).toBe(0);
  const files = r.stderr
    .split("\n")
    .filter((l) => l.startsWith("LOADED file:"))
    .map((l) => l.slice("LOADED ".length));
  return { files, report: JSON.parse(r.stdout) as { incidents: unknown[]; lines: { read: number } } };
}

const fromPackage = (files: string[], name: string): string[] => files.filter((f) => f.includes(`/node_modules/${name}/`));

/** Our compiled modules inside the bundle chunks that were loaded. */
function ownModules(files: string[]): string[] {
  const chunks = files.filter((f) => f.includes("/dist/bundle/"));
  return chunks.flatMap((f) => [...readFileSync(fileURLToPath(f), "utf8").matchAll(/^\/\/ (dist\/\S+\.js)$/gm)].map((m) => m[1]!));
}

describe("rules replay's modules", () => {
  it("loads neither pino nor prom-client, nor our logger and metrics modules, over a small log", async () => {
    const { files, report } = await loadedBy(writeLog("small.log", 5000));
    expect(report.lines.read).toBe(5000);
    expect(report.incidents).toHaveLength(5);
    // The hook saw the command's files, and the chunks name their modules: the replay engine ran.
    expect(ownModules(files)).toEqual(expect.arrayContaining(["dist/operator/replay.js", "dist/operator/decide/engine.js"]));
    expect(fromPackage(files, "pino")).toEqual([]);
    expect(fromPackage(files, "prom-client")).toEqual([]);
    expect(ownModules(files).filter((m) => m === "dist/operator/log.js" || m === "dist/operator/metrics.js" || m.startsWith("dist/contract/structured-log"))).toEqual([]);
  });

  it("nor over a log scanned by worker threads (their bundle loads neither)", async () => {
    // ~70 MiB: over the 64 MiB from which the file is scanned in parallel.
    const { files, report } = await loadedBy(writeLog("big.log", 390_000), { RECLAIM_REPLAY_WORKERS: "2" });
    expect(report.lines.read).toBe(390_000);
    expect(files.some((f) => f.endsWith("/dist/bundle/parallel-scan-worker.js"))).toBe(true);
    expect(fromPackage(files, "pino")).toEqual([]);
    expect(fromPackage(files, "prom-client")).toEqual([]);
  }, 60_000);
});
