/**
 * The operator's tail: a batch's position is saved while the next batch is
 * handled, a save that fails still ends the tail, and stopping waits for the
 * last save. A scripted source stands in for the log, so each position save
 * can be held, failed or released by the test.
 */
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { newSourceStats, type LineBatch, type LogSource } from "../../src/operator/sources/source.js";
import { eventually, startTestFactory, type TestFactory } from "../support/factory.js";
import { kubeConfigFor } from "../support/k8s/kubeconfig.js";
import { FakeKubeApi } from "../support/k8s/server.js";
import { startTestOperator, tempDir, type TestOperator } from "../support/operator.js";

let factory: TestFactory | undefined;
let operator: TestOperator | undefined;
let api: FakeKubeApi | undefined;
afterEach(async () => {
  await operator?.close();
  await factory?.close();
  await api?.close();
  operator = undefined;
  factory = undefined;
  api = undefined;
});

const line = (fields: Record<string, unknown>): string => `${JSON.stringify({ time: new Date().toISOString(), pod: "p0", ...fields })}\n`;
const warning = (userId: string): string =>
  line({ severity: "WARNING", event: "factory.resource_limit", userId, managers: 20, limit: 20, message: `Resource limit exceeded for user ${userId} (20/20 managers) - attempting immediate cleanup` });
const hardLimit = (userId: string): string =>
  line({ severity: "ERROR", event: "factory.hard_limit", userId, managers: 20, limit: 20, message: `HARD LIMIT: User ${userId} still over limit after cleanup (20/20)` });

/** One position save of the scripted source: the test settles it. */
interface Save {
  settled: boolean;
  resolve(): void;
  reject(err: Error): void;
}

/** Hands over the given batches in order (each waits for the one before, as real sources do), then waits for the end. */
class ScriptedSource implements LogSource {
  readonly name = "scripted";
  readonly stats = newSourceStats();
  readonly saves: Save[] = [];
  delivered = 0;
  /** Calls of run(), and the most that were running at once. */
  runs = 0;
  overlapping = 0;
  private running = 0;

  constructor(private readonly batches: string[]) {}

  async run(onBatch: (batch: LineBatch) => Promise<void>, signal: AbortSignal): Promise<void> {
    this.runs++;
    this.overlapping = Math.max(this.overlapping, ++this.running);
    try {
      for (const text of this.batches.splice(0)) {
        if (signal.aborted) return;
        this.delivered++;
        await onBatch({ data: Buffer.from(text), lines: text.split("\n").length - 1, commit: () => this.save() });
      }
      await new Promise<void>((resolve) => (signal.aborted ? resolve() : signal.addEventListener("abort", () => resolve(), { once: true })));
    } finally {
      this.running--;
    }
  }

  private save(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const save: Save = {
        settled: false,
        resolve: () => ((save.settled = true), resolve()),
        reject: (err) => ((save.settled = true), reject(err)),
      };
      this.saves.push(save);
    });
  }
}

async function operatorOn(source: ScriptedSource): Promise<TestOperator> {
  factory = await startTestFactory();
  operator = await startTestOperator({ dir: await tempDir(), source: "scripted", control: factory.controlUrl }, { source });
  return operator;
}

describe("the operator's tail", () => {
  it("handles a batch while the position of the batch before is still being saved", async () => {
    const source = new ScriptedSource([warning("erin"), hardLimit("erin")]);
    const op = await operatorOn(source);
    // The first batch's save is held: the HARD LIMIT line right after it is acted on all the same.
    await op.until((all) => all.some((i) => i.target.userId === "erin"), "an incident for erin");
    expect(source.delivered).toBe(2);
    expect(source.saves[0]!.settled).toBe(false);
    source.saves[0]!.resolve();
    await eventually(() => source.saves.length === 2, 5000, "the second batch's save");
    source.saves[1]!.resolve();
  }, 20_000);

  it("fails the tail when a position cannot be saved, one batch later, reads nothing more of that run, and starts the tail again", async () => {
    const source = new ScriptedSource([warning("frank"), warning("frank"), hardLimit("frank")]);
    const op = await operatorOn(source);
    await eventually(() => source.saves.length === 2, 5000, "two position saves");
    source.saves[0]!.reject(new Error("disk full"));
    await eventually(() => op.lines.some((l) => l.event === "operator.source_error"), 5000, "the source error");
    expect(op.lines.find((l) => l.event === "operator.source_error")!.message).toBe(
      "Source scripted failed (disk full); starting it again from the last position handled in 1000 ms",
    );
    expect(source.delivered).toBe(2); // the third batch was never read
    await eventually(() => source.runs === 2, 5000, "the tail started again"); // a transient error never stops the operator
    source.saves[1]!.resolve();
    expect(await op.incidents()).toEqual([]);
  }, 20_000);

  it("stops only once the last position is saved", async () => {
    const source = new ScriptedSource([warning("gina")]);
    const op = await operatorOn(source);
    await eventually(() => source.saves.length === 1, 5000, "the position save");
    setTimeout(() => source.saves[0]!.resolve(), 50);
    await op.close();
    expect(source.saves[0]!.settled).toBe(true);
  }, 20_000);

  it("a new leadership term tails again only once the last term's position is saved", async () => {
    api = await FakeKubeApi.start();
    api.grant("token-a", { rules: [{ apiGroups: ["*"], resources: ["*"], verbs: ["*"] }] });
    factory = await startTestFactory();
    const source = new ScriptedSource([warning("hank")]);
    const dir = await tempDir();
    operator = await startTestOperator(
      {
        dir,
        source: "scripted",
        control: factory.controlUrl,
        incidentsDir: join(dir, "incidents"),
        kubernetes: {
          kubeConfig: kubeConfigFor(api, { namespace: "reclaim", token: "token-a" }),
          namespace: "reclaim",
          identity: "operator-a",
          leaderElection: { name: "reclaim-operator", leaseDurationMs: 1500, renewDeadlineMs: 1000, retryPeriodMs: 200 },
          incidents: false,
          podTargets: false,
          watchRules: false,
        },
      },
      { source },
    );
    const op = operator;
    await eventually(() => source.saves.length === 1, 10_000, "the first term's position save");
    api.revoke("token-a"); // the lease cannot be renewed: the term ends with its last save still held
    await eventually(() => !op.leading(), 10_000, "the term to end");
    api.grant("token-a", { rules: [{ apiGroups: ["*"], resources: ["*"], verbs: ["*"] }] });
    await eventually(() => op.leading(), 10_000, "a new term");
    await new Promise((r) => setTimeout(r, 300)); // time for a tail that does not wait to start
    expect(source.runs).toBe(1);
    source.saves[0]!.resolve();
    await eventually(() => source.runs === 2, 10_000, "the new term's tail");
    expect(source.overlapping).toBe(1);
  }, 40_000);
});
