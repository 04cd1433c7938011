/**
 * Fault matrix, row 7: the incident folder is full (ENOSPC) or read-only
 * (EROFS). The operator must refuse to act rather than act without a record,
 * say so loudly (an ERROR line naming the cause, a metric), and recover by
 * itself when writes work again: nothing lost, nothing duplicated, no rung
 * run twice, the process still serving.
 *
 * Nothing in the store is faked. The real operator (`bin/reclaim operator`)
 * runs as a child process in a mount namespace of its own (`unshare -Urm`),
 * its incident folder a 512 KiB tmpfs. The test fills that filesystem with a
 * file (the kernel answers ENOSPC), deletes it (space returns), and remounts
 * it read-only and back (EROFS), through `/proc/PID/root` and `nsenter`. The
 * factory is real; its log file is the operator's source. Where unprivileged
 * mount namespaces are not available the suite is skipped, and says why.
 */
import { execFile, spawnSync } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, unlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, expect, it } from "vitest";
import { isRefusal } from "../../src/demo/clients.js";
import { FileIncidentStore } from "../../src/operator/incidents/file-store.js";
import type { Incident } from "../../src/operator/incidents/model.js";
import { startCli, type RunningCli } from "../support/cli.js";
import { describeNeeding } from "../support/needs.js";
import { eventually, startTestFactory, TEST_CONTROL_TOKEN, type TestFactory } from "../support/factory.js";

const run = promisify(execFile);

/** Why this suite cannot run here, or null: it needs `unshare -Urm` and a tmpfs mount inside it. */
const SKIP: string | null = (() => {
  const probe = spawnSync("unshare", ["-Urm", "sh", "-c", 'mount -t tmpfs -o size=64k reclaim-probe "$0"', tmpdir()], { encoding: "utf8" });
  if (probe.error !== undefined) return `unshare is not available (${probe.error.message})`;
  return probe.status === 0 ? null : `unshare -Urm cannot mount a tmpfs here: ${probe.stderr.trim()}`;
})();

const RULE = `apiVersion: reclaim.dev/v1
kind: RemediationRule
metadata: { name: lockout }
spec:
  trigger: { log: { event: factory.hard_limit, minSeverity: ERROR } }
  threshold: { count: 1, window: 1m }
  key: [userId, pod]
  ladder:
    - { rung: probe, timeout: 6s, params: { timeoutMs: 3000 } }
    - { rung: force, timeout: 5s, params: { max: 1 } }
  verify: { settle: 200ms, timeout: 3s }
  guards: { cooldown: 10m }
`;

const ROW = "fault matrix 7: the incident folder full (ENOSPC) or read-only (EROFS)";

describeNeeding(SKIP, ROW, () => {
  let dir: string;
  let factory: TestFactory;
  let operator: RunningCli;
  let metricsUrl: string;
  /** The incident folder as the operator sees it (a tmpfs in its mount namespace). */
  let folder: string;
  /** The same folder as this process reaches it: through the operator's /proc/PID/root. */
  let seen: string;
  let store: FileIncidentStore;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "reclaim-fault7-"));
    await mkdir(join(dir, "rules"));
    await writeFile(join(dir, "rules", "lockout.yaml"), RULE);
    const log = join(dir, "factory.log");
    await writeFile(log, "");
    folder = join(dir, "incidents");
    await mkdir(folder);
    factory = await startTestFactory({ cleanup: "legacy", logFile: log, logLevel: "info" });
    operator = startCli(
      [
        "operator",
        ...["--rules", join(dir, "rules"), "--source", `file:${log}`, "--incidents", folder, "--state", join(dir, "state")],
        ...["--control", factory.controlUrl, "--metrics-port", "0"],
        ...["--sweep-schedule", "off", "--digest-schedule", "off", "--retention-schedule", "off"],
      ],
      { RECLAIM_CONTROL_TOKEN: TEST_CONTROL_TOKEN, RECLAIM_TEST_INCIDENTS: folder },
      // The incident folder becomes a 512 KiB tmpfs that only the operator (and /proc/PID/root) sees.
      ["unshare", "-Urm", "sh", "-c", 'mount -t tmpfs -o size=512k reclaim-incidents "$RECLAIM_TEST_INCIDENTS" && exec "$@"', "sh"],
    );
    const started = await operator.waitFor((l) => l.event === "operator.started" && typeof l.metricsPort === "number", 20_000);
    metricsUrl = `http://127.0.0.1:${String(started.metricsPort)}`;
    seen = `/proc/${operator.child.pid}/root${folder}`;
    store = new FileIncidentStore({ dir: seen });
  }, 30_000);

  afterAll(async () => {
    operator?.child.kill("SIGTERM");
    await operator?.exited;
    await factory?.close();
    await rm(dir, { recursive: true, force: true });
  });

  /** Fills the operator's tmpfs to the last byte: from now on the kernel answers ENOSPC to any new data. */
  async function fill(): Promise<void> {
    await writeFile(join(seen, "filler"), Buffer.alloc(1024 * 1024)).then(
      () => expect.fail("the 512 KiB tmpfs took 1 MiB: it is not the operator's incident folder"),
      (err: NodeJS.ErrnoException) => expect(err.code).toBe("ENOSPC"),
    );
  }
  const free = (): Promise<void> => unlink(join(seen, "filler"));
  const remount = (mode: "ro" | "rw"): Promise<unknown> =>
    run("nsenter", ["-t", String(operator.child.pid), "-U", "-m", "mount", "-o", `remount,${mode}`, folder]);

  async function metric(name: string): Promise<number> {
    const text = await (await fetch(`${metricsUrl}/metrics`)).text();
    const line = text.split("\n").find((l) => l.startsWith(`${name} `));
    return line === undefined ? Number.NaN : Number(line.slice(name.length + 1));
  }

  /** Twenty zombie tabs and a refused 21st: the legacy factory logs the HARD LIMIT line the rule matches. */
  async function lockOut(user: string): Promise<void> {
    for (let i = 0; i < 20; i++) await factory.open(user, "no-pong");
    const refused = await factory.attempt(user);
    expect(isRefusal(refused) && refused.status).toBe(503);
  }

  /** Rungs the factory ran for `user` on the operator's call (not its own cleanup). */
  const controlRungs = (user: string): Record<string, unknown>[] => factory.events("factory.cleanup", user).filter((l) => l.trigger === "control");
  const incidentsOf = async (user: string): Promise<Incident[]> => (await store.list()).filter((i) => i.target.userId === user);
  const storeErrorLines = (): Record<string, unknown>[] => operator.lines.filter((l) => l.event === "operator.store_error" && l.severity === "ERROR");

  it("full before the trigger: records nothing, acts on nothing, says ENOSPC; acts on the same trigger once space returns", async () => {
    await fill();
    const errorsBefore = await metric("reclaim_operator_store_errors_total");
    await lockOut("full-before");

    await eventually(() => storeErrorLines().some((l) => /no space left on device/i.test(String(l.message))), 10_000, "an ERROR naming ENOSPC");
    expect(String(storeErrorLines().at(-1)?.message)).toContain("NOT acting");
    await eventually(async () => (await metric("reclaim_operator_store_errors_total")) >= errorsBefore + 2, 10_000, "the write to be tried again, and fail");
    expect(await metric("reclaim_operator_store_waiting")).toBe(1);
    // Refused to act: the factory was not called, the user is still locked out, no record and no temp file left behind.
    expect(controlRungs("full-before")).toHaveLength(0);
    expect(factory.registry.active("full-before")).toBe(20);
    expect((await store.scan()).tempFiles).toBe(0);
    expect(await incidentsOf("full-before")).toEqual([]);

    await free();
    await eventually(async () => (await incidentsOf("full-before")).some((i) => i.status === "resolved"), 15_000, "the held incident to be recorded and resolved");
    const [incident, ...more] = await incidentsOf("full-before");
    expect(more).toEqual([]);
    expect(incident!.rungs.map((r) => [r.rung, r.outcome])).toEqual([["probe", "ok"]]);
    expect(incident!.decisions.some((d) => d.kind === "retry" && d.detail.includes("could not record it"))).toBe(true);
    expect(controlRungs("full-before")).toHaveLength(1);
    expect(await metric("reclaim_operator_store_waiting")).toBe(0);
  });

  it("full in the middle of a ladder: holds after the rung (not run again), goes on once space returns", async () => {
    await lockOut("full-mid");
    await eventually(async () => (await incidentsOf("full-mid"))[0]?.rungs[0]?.outcome === "pending", 10_000, "the probe to be recorded as pending");
    const [pending] = await incidentsOf("full-mid");
    // The save before the call writes the JSON, then the Markdown. Only once both are on disk is the call on its way
    // (filling the disk between the two would hold the ladder before the rung, another case than this one).
    await eventually(
      async () => (await readFile(join(seen, `${pending!.id}.md`), "utf8").catch(() => "")).includes("1. probe: pending"),
      10_000,
      "the pending probe's record to be whole (JSON and Markdown)",
    );
    await fill(); // the probe is running (it waits 3 s for pongs that never come); its result cannot be written
    await eventually(
      () => storeErrorLines().some((l) => l.incident === pending!.id && /no space left on device/i.test(String(l.message))),
      10_000,
      "an ERROR for the held ladder",
    );
    const errors = await metric("reclaim_operator_store_errors_total");
    await eventually(async () => (await metric("reclaim_operator_store_errors_total")) >= errors + 2, 10_000, "the ladder to keep holding");
    // Held: the probe ran once, nothing after it did, and the record on disk is the last one written.
    expect(controlRungs("full-mid")).toHaveLength(1);
    expect((await incidentsOf("full-mid")).map((i) => [i.status, i.rungs.length, i.rungs[0]?.outcome])).toEqual([["remediating", 1, "pending"]]);
    expect(await metric("reclaim_operator_store_waiting")).toBe(1);

    await free();
    await eventually(async () => (await incidentsOf("full-mid")).some((i) => i.status === "resolved"), 15_000, "the ladder to go on and resolve");
    const all = await incidentsOf("full-mid");
    expect(all).toHaveLength(1);
    expect(all[0]!.id).toBe(pending!.id);
    expect(all[0]!.rungs.map((r) => [r.rung, r.outcome, r.attempts])).toEqual([["probe", "ok", 1]]);
    expect(controlRungs("full-mid")).toHaveLength(1);
    expect(operator.lines.some((l) => l.incident === pending!.id && String(l.message).includes("recorded again"))).toBe(true);
  });

  it("read-only: refuses with EROFS, acts once the folder is writable again; the operator kept serving throughout", async () => {
    await remount("ro");
    try {
      await writeFile(join(seen, "probe-write"), "x").then(
        () => expect.fail("the folder is still writable"),
        (err: NodeJS.ErrnoException) => expect(err.code).toBe("EROFS"),
      );
      await lockOut("read-only");
      await eventually(() => storeErrorLines().some((l) => /read-only file system/i.test(String(l.message))), 10_000, "an ERROR naming EROFS");
      const errors = await metric("reclaim_operator_store_errors_total");
      await eventually(async () => (await metric("reclaim_operator_store_errors_total")) >= errors + 2, 10_000, "the write to keep failing");
      expect(controlRungs("read-only")).toHaveLength(0);
      expect(factory.registry.active("read-only")).toBe(20);
    } finally {
      await remount("rw");
    }
    await eventually(async () => (await incidentsOf("read-only")).some((i) => i.status === "resolved"), 15_000, "the incident once writable");
    expect(await incidentsOf("read-only")).toHaveLength(1);
    expect(controlRungs("read-only")).toHaveLength(1);

    // Nothing lost, nothing duplicated, every record whole; the process never stopped serving.
    const { incidents, skipped, tempFiles } = await store.scan();
    expect(incidents.map((i) => [i.target.userId, i.status]).sort()).toEqual([
      ["full-before", "resolved"],
      ["full-mid", "resolved"],
      ["read-only", "resolved"],
    ]);
    expect([skipped, tempFiles]).toEqual([[], 0]);
    for (const i of incidents) expect(await readFile(join(seen, `${i.id}.md`), "utf8")).toContain(i.id);
    expect(operator.child.exitCode).toBeNull();
    expect((await fetch(`${metricsUrl}/healthz`)).status).toBe(200);
    expect(await metric("reclaim_operator_store_waiting")).toBe(0);
  });
});
