/**
 * Starts a real operator for tests: rules from YAML written to a temp folder,
 * the factory's log file as the source, incidents in a temp folder.
 */
import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import type { Incident } from "../../src/operator/incidents/model.js";
import { createOperatorLog } from "../../src/operator/log.js";
import { startOperator, type Operator, type OperatorConfig, type OperatorDeps } from "../../src/operator/operator.js";
import { eventually, TEST_CONTROL_TOKEN } from "./factory.js";

/** A rule file for the outage, with short timings for tests. */
export const LOCKOUT_RULE = `apiVersion: reclaim.dev/v1
kind: RemediationRule
metadata: { name: lockout }
spec:
  trigger: { log: { event: [factory.hard_limit, factory.error], minSeverity: ERROR } }
  threshold: { count: 1, window: 1m }
  key: [userId, pod]
  ladder:
    - { rung: probe, timeout: 5s }
    - { rung: force, timeout: 5s, params: { max: 1 } }
  verify: { settle: 200ms, timeout: 3s }
  guards: { cooldown: 10m }
  incident: { severity: high, title: "Chat lockout: user {{userId}} at {{managers}}/{{limit}} on {{pod}}" }
`;

/** A metric rule: a user sat at the limit (the factory's gauge), probed. */
export const AT_LIMIT_METRIC_RULE = `apiVersion: reclaim.dev/v1
kind: RemediationRule
metadata: { name: at-limit }
spec:
  trigger:
    metric: { query: "max by (pod) (reclaim_factory_users_at_limit)", op: ">", threshold: 0, for: 1s, interval: 250ms }
  key: [userId, pod]
  ladder:
    - { rung: probe, timeout: 5s }
  verify: { settle: 200ms, timeout: 3s }
  incident: { severity: warning, title: "User {{userId}} sat at the limit on {{pod}}" }
`;

export interface TestOperator extends Operator {
  dir: string;
  lines: Record<string, unknown>[];
  incidents(): Promise<Incident[]>;
  /** Waits until some incident satisfies `check`; returns the incidents then. */
  until(check: (incidents: Incident[]) => boolean, what: string, timeoutMs?: number): Promise<Incident[]>;
  /** Waits until `userId`'s incident has ended (whatever the status) and no ladder runs; returns it. */
  ended(userId: string): Promise<Incident>;
}

export async function tempDir(prefix = "reclaim-op-"): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix));
}

/** An empty `factory.log` in `dir`, for an operator to tail; returns its path. */
export async function emptyLog(dir: string): Promise<string> {
  const file = join(dir, "factory.log");
  await writeFile(file, "");
  return file;
}

/** Writes `rule` to a rules folder under `dir` and starts an operator on `source`. */
export async function startTestOperator(
  options: { dir: string; source: string; control: string; rule?: string } & Partial<OperatorConfig>,
  deps: OperatorDeps = {},
): Promise<TestOperator> {
  const { dir, rule = LOCKOUT_RULE, ...config } = options;
  const rulesDir = join(dir, "rules");
  await import("node:fs/promises").then((fs) => fs.mkdir(rulesDir, { recursive: true }));
  await writeFile(join(rulesDir, "rules.yaml"), rule);
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _e, done) {
      for (const l of chunk.toString().split("\n")) if (l.trim() !== "") lines.push(JSON.parse(l) as Record<string, unknown>);
      done();
    },
  });
  const operator = await startOperator(
    {
      rules: [rulesDir],
      incidentsDir: join(dir, "incidents"),
      controlToken: TEST_CONTROL_TOKEN,
      stateDir: join(dir, "state"),
      dryRun: false,
      fromStart: false,
      metricsPort: 0,
      metricsHost: "127.0.0.1",
      pollIntervalMs: 20,
      reloadIntervalMs: 100,
      ...config,
    },
    { log: createOperatorLog({ pod: "test-operator", streams: [sink] }), defaultMetrics: false, ...deps },
  );
  const incidents = (): Promise<Incident[]> => operator.store.list();
  const until = async (check: (incidents: Incident[]) => boolean, what: string, timeoutMs = 15_000): Promise<Incident[]> => {
    let last: Incident[] = [];
    await eventually(async () => check((last = await incidents())), timeoutMs, what);
    return last;
  };
  return {
    ...operator,
    dir,
    lines,
    incidents,
    until,
    ended: async (userId) => {
      const all = await until((list) => list.some((i) => i.target.userId === userId && i.closedAt !== null), `the incident of ${userId} to end`);
      await operator.idle();
      return all.find((i) => i.target.userId === userId)!;
    },
  };
}
