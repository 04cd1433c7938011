/**
 * What a file-mode operator loads (ADR 33): modules of features it does not
 * use stay unloaded, since each costs idle memory. The canary (and with it
 * ws) is imported only when `--canary-url` is given, the notifications
 * (receivers, outbox, the notifications file's schema) only when some
 * receiver is configured. Every file the real `reclaim operator` loads is
 * listed by a module loader hook in the child process; the operator runs
 * until `operator.started`, then stops on SIGTERM. Which of our modules a
 * bundle chunk holds is read from the chunk: rolldown heads each module's
 * code with a `// dist/…/name.js` comment.
 *
 * Two costs are not files of ours (ADR 36): Node's `fetch` (undici, inside
 * the node binary: no loader hook sees it; `process.moduleLoadList` does) and
 * ICU's data, paged in by `Intl.DateTimeFormat`. A preload in the child
 * wraps that constructor, counts its calls and, on SIGUSR2, reports both.
 *
 * The pattern engine, re2js (ADR 40), is required (its CommonJS build) the
 * first time a rule's pattern is compiled: the shipped rules have none, so
 * neither build may load; the reporter lists CommonJS files from Node's
 * require cache, which the ES module hook does not see.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { killAll, runCli, startCli, type RunningCli } from "../support/cli.js";

const dir = mkdtempSync(join(tmpdir(), "reclaim-file-mode-modules-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const LOADER = join(dir, "loader.mjs");
writeFileSync(LOADER, 'export async function load(url, context, next) { process.stderr.write("LOADED " + url + "\\n"); return next(url, context); }\n');
const REPORTER = join(dir, "reporter.mjs");
writeFileSync(
  REPORTER,
  [
    'import { createRequire } from "node:module";',
    "const cache = createRequire(import.meta.url).cache;",
    "let intl = 0;",
    "Intl.DateTimeFormat = new Proxy(Intl.DateTimeFormat, {",
    "  construct(target, args, newTarget) { intl++; return Reflect.construct(target, args, newTarget); },",
    "  apply(target, self, args) { intl++; return Reflect.apply(target, self, args); },",
    "});",
    'process.on("SIGUSR2", () => {',
    '  const undici = process.moduleLoadList.filter((m) => m.includes("undici"));',
    '  const re2js = Object.keys(cache).filter((f) => f.includes("/node_modules/re2js/"));',
    '  process.stderr.write("REPORT " + JSON.stringify({ intl, undici, re2js }) + "\\n");',
    "});",
    "",
  ].join("\n"),
);
const running: RunningCli[] = [];
afterEach(() => killAll(running));

/** A file-mode operator's arguments, its log, incidents and state in `base` (an empty log is written). */
function fileModeArgs(base: string): string[] {
  writeFileSync(join(base, "factory.log"), "");
  return [
    ...["operator", "--rules", "rules", "--source", `file:${join(base, "factory.log")}`],
    ...["--incidents", join(base, "incidents"), "--state", join(base, "state"), "--metrics-port", "0"],
  ];
}

/** Starts a file-mode operator (own folders under `dir/name`) with the loader hook; the files it loaded once started. */
async function loadedBy(name: string, extraArgs: string[], extraEnv: Record<string, string> = {}): Promise<string[]> {
  const base = mkdtempSync(join(dir, `${name}-`));
  const op = startCli(
    [...fileModeArgs(base), "--control", "http://127.0.0.1:9", ...extraArgs],
    {
      RECLAIM_CONTROL_TOKEN: "tok-0123456789abcdef-0123456789",
      NODE_OPTIONS: `--no-warnings --experimental-loader=${pathToFileURL(LOADER).href}`,
      ...extraEnv,
    },
  );
  running.push(op);
  await op.waitFor((l) => l.event === "operator.started", 20_000);
  op.child.kill("SIGTERM");
  // It exits 0, or dies of the signal when that comes before the CLI has installed its handler (right after this line).
  const code = await op.exited;
  expect(code === 0 || op.child.signalCode === "SIGTERM").toBe(true);
  return op
    .stderr()
    .split("\n")
    .filter((l) => l.startsWith("LOADED file:"))
    .map((l) => l.slice("LOADED ".length));
}

const fromPackage = (files: string[], name: string): string[] => files.filter((f) => f.includes(`/node_modules/${name}/`));

/** Our compiled modules (`dist/operator/notify/setup.js` …) inside the bundle chunks that were loaded. */
function ownModules(files: string[]): string[] {
  const chunks = files.filter((f) => f.includes("/dist/bundle/"));
  return chunks.flatMap((f) => [...readFileSync(fileURLToPath(f), "utf8").matchAll(/^\/\/ (dist\/\S+\.js)$/gm)].map((m) => m[1]!));
}
const notifyModules = (files: string[]): string[] => ownModules(files).filter((m) => m.startsWith("dist/operator/notify/"));

describe("a file-mode operator's modules", () => {
  it("loads neither ws, the canary nor the notifications without --canary-url and receivers", async () => {
    const files = await loadedBy("plain", []);
    expect(files.some((f) => f.includes("/dist/bundle/main.js"))).toBe(true); // the hook saw the command's files
    expect(ownModules(files)).toContain("dist/operator/operator.js"); // and the chunks name their modules
    expect(fromPackage(files, "ws")).toEqual([]);
    expect(fromPackage(files, "re2js")).toEqual([]); // the shipped rules have no pattern (ADR 40)
    expect(ownModules(files).filter((m) => m.startsWith("dist/operator/verify/canary"))).toEqual([]);
    expect(notifyModules(files)).toEqual([]);
  });

  it("loads ws once --canary-url asks for the canary (the hook does see it)", async () => {
    const files = await loadedBy("canary", ["--canary-url", "ws://127.0.0.1:9/chat"], { RECLAIM_CANARY_TOKEN: "canary-token-0123456789" });
    expect(fromPackage(files, "ws").length).toBeGreaterThan(0);
  });
});

/** Starts a file-mode operator with the reporter preloaded, waits for `event`, and returns what the reporter says then. */
interface Report {
  intl: number;
  undici: string[];
  re2js: string[];
}

async function reportAt(name: string, extraArgs: string[], event: string, rules = "rules"): Promise<Report> {
  const base = mkdtempSync(join(dir, `${name}-`));
  const args = fileModeArgs(base);
  args[args.indexOf("--rules") + 1] = rules;
  const op = startCli([...args, "--control", "http://127.0.0.1:9", ...extraArgs], {
    RECLAIM_CONTROL_TOKEN: "tok-0123456789abcdef-0123456789",
    NODE_OPTIONS: `--no-warnings --import=${pathToFileURL(REPORTER).href}`,
  });
  running.push(op);
  await op.waitFor((l) => l.event === event, 20_000);
  const report = new Promise<string>((resolve) => {
    const onData = (): void => {
      const line = op.stderr().split("\n").find((l) => l.startsWith("REPORT "));
      if (line === undefined) return;
      op.child.stderr!.off("data", onData);
      resolve(line.slice("REPORT ".length));
    };
    op.child.stderr!.on("data", onData);
  });
  op.child.kill("SIGUSR2");
  return JSON.parse(await report) as Report;
}

describe("a file-mode operator's memory beyond its files (ADR 36)", () => {
  it("neither loads Node's fetch (undici) nor constructs an Intl.DateTimeFormat, once its jobs are scheduled and its control check has called the factory", async () => {
    // The control check's first round logs its outcome (nobody listens on port 9): the call has been made.
    expect(await reportAt("plain-report", [], "operator.control_check")).toEqual({ intl: 0, undici: [], re2js: [] });
  });

  it("requires re2js once a rule has a pattern (ADR 40): the example text rule's patterns are compiled with it", async () => {
    const report = await reportAt("pattern-report", [], "operator.started", "rules/examples");
    expect(report.re2js.length).toBeGreaterThan(0);
  });

  it("the reporter does see Intl: with --jobs-timezone Europe/Paris the schedules are read through it", async () => {
    expect((await reportAt("paris-report", ["--jobs-timezone", "Europe/Paris"], "operator.control_check")).intl).toBeGreaterThan(0);
  });
});

describe("a file-mode operator that notifies", () => {
  it("loads the notifications once --alertmanager names a receiver", async () => {
    const files = await loadedBy("notify", ["--alertmanager", "http://127.0.0.1:9"]);
    expect(notifyModules(files)).toEqual(expect.arrayContaining(["dist/operator/notify/setup.js", "dist/operator/notify/outbox.js"]));
  });

  it("still refuses to start with a bad notifications file, listing its problems (the CLI imports the error's class on that path)", async () => {
    const base = mkdtempSync(join(dir, "bad-notify-"));
    writeFileSync(join(base, "notifications.yaml"), "receivers:\n  - name: x\n    type: nope\n");
    const r = await runCli([...fileModeArgs(base), "--notifications", join(base, "notifications.yaml")], {
      RECLAIM_CONTROL_TOKEN: "tok-0123456789abcdef-0123456789",
    });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/notifications\.yaml:3:5: receivers\[0\]\.type: unknown field/);
    expect(r.stderr).toMatch(/problem\(s\) in the notifications file; not starting/);
  });
});
