/**
 * `reclaim rules replay --source gcp:PROJECT` as a user runs it, against a
 * local server speaking Cloud Logging's gRPC API (RECLAIM_GCP_ENDPOINT):
 * paged history in, the same report out as replaying the same entries from
 * a file.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { buildFilter } from "../../src/operator/sources/gcp-filter.js";
import { loadRules } from "../../src/operator/rules/load.js";
import { runCli } from "../support/cli.js";
import { factoryEntry, type LogEntryJson } from "../support/gcp/entries.js";
import { FakeLoggingServer } from "../support/gcp/logging-server.js";

const PROJECT = "reclaim-test";
const MINUTE = 60_000;
const HOUR = 60 * MINUTE;

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function setup(): Promise<{ fake: FakeLoggingServer; dir: string; env: Record<string, string> }> {
  const fake = await FakeLoggingServer.start();
  const dir = await mkdtemp(join(tmpdir(), "reclaim-replay-gcp-"));
  cleanups.push(() => fake.close(), () => rm(dir, { recursive: true, force: true }));
  return { fake, dir, env: { RECLAIM_GCP_ENDPOINT: fake.endpoint, METADATA_SERVER_DETECTION: "none" } };
}

/**
 * A day of lockouts, oldest first: one user locked out again and again (the
 * cooldown suppresses the repeats), a second user on another pod, and 1,200
 * users each locked out once, a minute apart (the hourly blast radius
 * suppresses most): 2,400-odd entries, three pages of 1,000.
 */
function day(now: number): LogEntryJson[] {
  const start = now - 22 * HOUR;
  const entries: LogEntryJson[] = [];
  const lockout = (t: number, userId: string, pod: string): void => {
    entries.push(factoryEntry(t, { event: "factory.hard_limit", userId, pod, managers: 20, limit: 20, message: `HARD LIMIT: User ${userId}` }));
    entries.push(factoryEntry(t + 1, { event: "factory.error", userId, pod, message: "UNEXPECTED FACTORY ERROR" }));
  };
  lockout(start, "u1", "p0");
  lockout(start + 3 * MINUTE, "u1", "p0");
  lockout(start + 4 * MINUTE, "u2", "p1");
  for (let i = 0; i < 1200; i++) lockout(start + HOUR + i * MINUTE, `many-${i}`, `p${i % 3}`);
  return entries;
}

describe("reclaim rules replay --source gcp:PROJECT", () => {
  it("replays paged Cloud Logging history with the same report as the same entries in a file", async () => {
    const { fake, dir, env } = await setup();
    const now = Date.now();
    const matching = day(now);
    // What the server must leave out: below the rules' severity, other events, another namespace, older than --since.
    const info = factoryEntry(now - 2 * HOUR, { event: "factory.hard_limit", userId: "quiet", severity: "INFO" });
    const opened = factoryEntry(now - 2 * HOUR, { event: "factory.connection_opened", userId: "u9", severity: "ERROR" });
    const elsewhere = factoryEntry(now - 2 * HOUR, { event: "factory.hard_limit", userId: "far", managers: 20, limit: 20 });
    elsewhere.resource!.labels!.namespace_name = "staging";
    const old = factoryEntry(now - 30 * HOUR, { event: "factory.hard_limit", userId: "old", managers: 20, limit: 20 });
    fake.write([...matching, info, opened, elsewhere, old]);

    const logs = join(dir, "history.jsonl");
    await writeFile(logs, matching.map((e) => `${JSON.stringify(e)}\n`).join(""));
    const extra = 'resource.labels.namespace_name="chat"';

    const fromFile = await runCli(["rules", "replay", "--rules", "rules", "--logs", logs], env);
    const fromGcp = await runCli(["rules", "replay", "--rules", "rules", "--source", `gcp:${PROJECT}`, "--since", "24h", "--filter", extra], env);
    expect(fromFile.code).toBe(0);
    expect(fromGcp.stderr).toBe("");
    expect(fromGcp.code).toBe(0);
    expect(fromGcp.stdout).toBe(fromFile.stdout);
    expect(fromGcp.stdout).toMatch(/userId=u1,pod=p0 {2}act {2}probe → force → degrade {2}\(later suppressed: cooldown 3\)/);
    expect(fromGcp.stdout).toMatch(/^Replayed 2406 line\(s\)/);

    // Paged, oldest first, with the rules' filter, the user's, and the time bound.
    const { rules } = await loadRules(["rules"]);
    const ruleFilter = buildFilter(
      rules.map((r) => r.compiled),
      extra,
    );
    expect(fake.listRequests.map((r) => r.pageToken)).toEqual(["", "offset-1000", "offset-2000"]);
    for (const request of fake.listRequests) {
      expect(request).toMatchObject({ resourceNames: [`projects/${PROJECT}`], orderBy: "timestamp asc", pageSize: 1000 });
      expect(request.filter).toMatch(new RegExp(`^${literal(ruleFilter)} AND timestamp>="\\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z"$`));
    }
    const since = Date.parse(/timestamp>="([^"]+)"/.exec(fake.listRequests[0]!.filter)![1]!);
    expect(since).toBeGreaterThanOrEqual(now - 24 * HOUR - MINUTE);
    expect(since).toBeLessThanOrEqual(Date.now() - 24 * HOUR);

    // The JSON reports agree on every incident.
    const jsonFile = await runCli(["rules", "replay", "--rules", "rules", "--logs", logs, "--json"], env);
    const jsonGcp = await runCli(["rules", "replay", "--rules", "rules", "--source", `gcp:${PROJECT}`, "--filter", extra, "--json"], env);
    const a = JSON.parse(jsonFile.stdout) as { incidents: { action: string }[]; matched: number };
    const b = JSON.parse(jsonGcp.stdout) as typeof a;
    expect(b).toEqual(a);
    expect(a.incidents.length).toBe(1202);
    expect(new Set(a.incidents.map((i) => i.action))).toEqual(new Set(["act", "suppressed"]));
  }, 120_000);

  it("asks for exactly one of --logs and --source, and a Cloud Logging project", async () => {
    const { env } = await setup();
    const neither = await runCli(["rules", "replay", "--rules", "rules"], env);
    expect(neither.code).toBe(2);
    expect(neither.stderr).toContain("give exactly one of --logs FILE and --source gcp:PROJECT");
    const both = await runCli(["rules", "replay", "--rules", "rules", "--logs", "/dev/null", "--source", `gcp:${PROJECT}`], env);
    expect(both.code).toBe(2);
    const k8s = await runCli(["rules", "replay", "--rules", "rules", "--source", "k8s:chat/app=factory"], env);
    expect(k8s.code).toBe(2);
    expect(k8s.stderr).toContain("replay reads gcp:PROJECT");
    const badProject = await runCli(["rules", "replay", "--rules", "rules", "--source", "gcp:Not_A_Project"], env);
    expect(badProject.code).toBe(2);
    expect(badProject.stderr).toContain("gcp:PROJECT_ID");
    const filterWithFile = await runCli(["rules", "replay", "--rules", "rules", "--logs", "/dev/null", "--filter", "x=1"], env);
    expect(filterWithFile.code).toBe(2);
    const badSince = await runCli(["rules", "replay", "--rules", "rules", "--source", `gcp:${PROJECT}`, "--since", "yesterday"], env);
    expect(badSince.code).toBe(2);
  });

  it("retries a failed page, and gives up with exit 1 when the endpoint stays down", async () => {
    const { fake, env } = await setup();
    fake.write(day(Date.now()).slice(0, 10));
    fake.failLists(1);
    const retried = await runCli(["rules", "replay", "--rules", "rules", "--source", `gcp:${PROJECT}`, "--json"], env);
    expect(retried.code).toBe(0);
    expect((JSON.parse(retried.stdout) as { lines: { read: number } }).lines.read).toBe(10);
    expect(fake.listRequests).toHaveLength(2);

    await fake.close();
    const down = await runCli(["rules", "replay", "--rules", "rules", "--source", `gcp:${PROJECT}`], env);
    expect(down.code).toBe(1);
    expect(down.stderr).toMatch(/^reclaim rules replay: cannot read gcp:reclaim-test: .*no connection to Cloud Logging: the connection attempt failed/);
  });
});

function literal(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
