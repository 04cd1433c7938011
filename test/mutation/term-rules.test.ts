/**
 * A leadership term's rules, each pinned (issue 20: mutation testing found
 * these unpinned): how it reads the records at its start, which open
 * incidents it resumes and which it closes as interrupted, how it backs off
 * a trigger, a source that fails and a pod lookup, how on-call's holds stop
 * a ladder, when an incident without a ladder is closed, what its breaker
 * checks, flushes and prunes do, and how it ends. Everything runs in this
 * process on the term's own timers: every wait it asks for is recorded and
 * taken at once (or held until the test lets it go), and its periodic timers
 * fire only when the test says so. Where a ladder acts, it acts on a real
 * factory over real HTTP.
 */
import { Writable } from "node:stream";
import { afterEach, describe, expect, it } from "vitest";
import type { Timers } from "../../src/contract/clock.js";
import { ControlClient } from "../../src/operator/act/control-client.js";
import { StaticTarget, type Target, type TargetQuery, type TargetResolver } from "../../src/operator/act/target.js";
import { checkGuards, type Holds } from "../../src/operator/decide/guards.js";
import { syntheticTrigger } from "../../src/operator/detect/synthetic.js";
import type { Incident } from "../../src/operator/incidents/model.js";
import { createOperatorLog } from "../../src/operator/log.js";
import { OperatorMetrics } from "../../src/operator/metrics.js";
import type { CircuitState } from "../../src/operator/notify/notice.js";
import type { CompiledRule } from "../../src/operator/rules/compile.js";
import { Scanner } from "../../src/operator/sources/scan.js";
import type { LineBatch } from "../../src/operator/sources/source.js";
import { CIRCUIT_CHECK_EVERY_MS, RecordsUnreadable, SourceFailed, Term, type TermOptions } from "../../src/operator/term.js";
import { eventually, startTestFactory, TEST_CONTROL_TOKEN, type TestFactory } from "../support/factory.js";
import { hardLimitLine, rungsRun } from "../support/fault-matrix.js";
import { startFaultyControl, type FaultyControl } from "../support/faulty-control.js";
import { buildIncident, RecordingStore } from "../support/incidents.js";
import { QueueSource } from "../support/queue-source.js";
import { rule, T0 } from "../support/rules.js";

const SEC = 1000;
const MIN = 60 * SEC;
const DAY = 24 * 60 * MIN;

let factory: TestFactory | undefined;
let proxy: FaultyControl | undefined;
const terms: Term[] = [];
afterEach(async () => {
  for (const term of terms.splice(0)) await term.dispose("stopped", "test over");
  await proxy?.close();
  await factory?.close();
  factory = proxy = undefined;
});

interface Periodic {
  ms: number;
  fn: () => void;
  stopped: boolean;
}

/**
 * The term's timers. A sleep is recorded and taken at once (time moves on by
 * it, and it resolves on the next turn of the event loop), unless `block`
 * says to hold it: then it resolves when `release()` is called or its signal
 * aborts. `every` timers fire only on `tick(ms)`. Call deadlines never pass.
 */
class TermTimers implements Timers {
  t = T0;
  readonly waits: number[] = [];
  readonly periodic: Periodic[] = [];
  /** Runs before each sleep is recorded (with the waits so far). */
  onSleep: (ms: number) => void = () => undefined;
  block: (ms: number) => boolean = () => false;
  private readonly blocked: (() => void)[] = [];

  now(): number {
    return this.t;
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted === true) return Promise.resolve();
    this.onSleep(ms);
    this.waits.push(ms);
    if (!this.block(ms)) {
      this.t += ms;
      return new Promise((resolve) => setImmediate(resolve));
    }
    return new Promise<void>((resolve) => {
      const done = (): void => {
        signal?.removeEventListener("abort", done);
        resolve();
      };
      this.blocked.push(done);
      signal?.addEventListener("abort", done, { once: true });
    });
  }

  /** Sleeps held by `block`, waiting now. */
  get held(): number {
    return this.blocked.length;
  }

  /** Lets every held sleep go. */
  release(): void {
    for (const done of this.blocked.splice(0)) done();
  }

  timeout(): AbortSignal {
    return new AbortController().signal;
  }

  after(): () => void {
    return () => undefined;
  }

  every(ms: number, fn: () => void): () => void {
    const entry: Periodic = { ms, fn, stopped: false };
    this.periodic.push(entry);
    return () => void (entry.stopped = true);
  }

  /** The periods of the timers still running, in the order they were set. */
  get running(): number[] {
    return this.periodic.filter((p) => !p.stopped).map((p) => p.ms);
  }

  /** Fires the running periodic timer set `index`-th (in `running` order). */
  fire(index: number): void {
    const live = this.periodic.filter((p) => !p.stopped);
    live[index]!.fn();
  }
}

/** The periodic timers a term sets, in the order it sets them. */
const STORE_RETRY = 0;
const FLUSH = 1;
const ORPHANS = 2;
const PRUNE = 3;
const CIRCUITS = 4;

/**
 * A queue source that fails its next runs with `errors`, in order; a
 * `{ afterBatch }` entry fails once a batch was handled, an `{ afterAbort }`
 * entry once the term's signal aborted; "end" ends the run as a finite
 * source that ran out does.
 */
class FailingSource extends QueueSource {
  readonly errors: unknown[] = [];
  attempts = 0;

  override run(onBatch: (batch: LineBatch) => Promise<void>, signal: AbortSignal): Promise<void> {
    this.attempts++;
    if (this.errors.length === 0) return super.run(onBatch, signal);
    const next: unknown = this.errors.shift();
    if (next === "end") return Promise.resolve(); // a finite source that ran out
    if (typeof next === "object" && next !== null && "afterBatch" in next) {
      const failure = next.afterBatch;
      return super.run(async (batch) => {
        await onBatch(batch);
        throw failure;
      }, signal);
    }
    if (typeof next === "object" && next !== null && "afterAbort" in next) {
      const failure = next.afterAbort;
      // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- what the source throws is the test's to choose
      return new Promise((_resolve, reject) => signal.addEventListener("abort", () => reject(failure), { once: true }));
    }
    // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- a source may throw anything (null included)
    return Promise.reject(next);
  }
}

/** A store whose `list` fails while `listFailures` > 0 and whose saves fail while `saveFailures` > 0 (each failure counts down). */
class FlakyStore extends RecordingStore {
  listFailures = 0;
  saveFailures = 0;
  /** Fail only the saves for which this says so (default every one). */
  failSave: (incident: Incident) => boolean = () => true;

  override list(): Promise<Incident[]> {
    if (this.listFailures > 0) {
      this.listFailures--;
      return Promise.reject(new Error("disk read error"));
    }
    return super.list();
  }

  override save(incident: Incident): Promise<void> {
    if (this.saveFailures > 0 && this.failSave(incident)) {
      this.saveFailures--;
      return Promise.reject(new Error("disk full"));
    }
    return super.save(incident);
  }
}

/** On-call's holds, set by the test; every subject a silence was asked about is kept. */
class TestHolds implements Holds {
  pause: string | null = null;
  silence: { userId: string; text: string } | null = null;
  readonly asked: unknown[] = [];
  paused(): string | null {
    return this.pause;
  }
  silenced(subject: { userId: string; pod: string | null; rule: string }): string | null {
    this.asked.push(subject);
    return this.silence !== null && this.silence.userId === subject.userId ? this.silence.text : null;
  }
}

type Line = Record<string, unknown> & { severity: string; event: string; message: string };

interface Rig {
  term: Term;
  timers: TermTimers;
  store: FlakyStore;
  source: FailingSource;
  metrics: OperatorMetrics;
  lines: Line[];
  holds: TestHolds;
  rules: CompiledRule[];
  circuits: CircuitState[];
  batches: { n: number };
  /** Lines with this event. */
  logged(event: string): Line[];
  /** A metric's value for these labels (undefined when it has no such series). */
  value(name: string, labels?: Record<string, string>): Promise<number | undefined>;
}

interface RigOptions {
  rules?: CompiledRule[];
  targets?: TargetResolver;
  options?: Partial<TermOptions>;
  store?: FlakyStore;
  /** null: the term is given no onCircuit. */
  onCircuit?: ((state: CircuitState) => void) | null;
  noHolds?: boolean;
  noOnBatch?: boolean;
  holds?: TestHolds;
}

/** Nothing to act on: every lookup finds no factory. */
const NO_TARGET: TargetResolver = { resolve: () => Promise.resolve(null) };

/** The lockout rule of these tests: one HARD LIMIT line opens an incident; probe, then force. */
const lockout = (spec: Parameters<typeof rule>[1] = {}): CompiledRule =>
  rule("lockout", {
    threshold: { count: 1, window: "1m" },
    ladder: [
      { rung: "probe", timeout: "5s", params: { timeoutMs: 200 } },
      { rung: "force", timeout: "5s", params: { max: 1 } },
    ],
    verify: { settle: "100ms", timeout: "1s" },
    ...spec,
  });

function rig(o: RigOptions = {}): Rig {
  const timers = new TermTimers();
  const store = o.store ?? new FlakyStore();
  const source = new FailingSource("queue");
  const metrics = new OperatorMetrics({ defaultMetrics: false });
  const lines: Line[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _e, done) {
      for (const l of chunk.toString().split("\n")) if (l.trim() !== "") lines.push(JSON.parse(l) as Line);
      done();
    },
  });
  const log = createOperatorLog({ pod: "term-test", level: "debug", streams: [sink] });
  const holds = o.holds ?? new TestHolds();
  const rules = o.rules ?? [lockout()];
  const circuits: CircuitState[] = [];
  const batches = { n: 0 };
  // One scanner for the term, as the operator keeps one: its counts go on from batch to batch.
  const scanner = new Scanner(rules);
  const term = new Term(
    {
      store,
      targets: o.targets ?? NO_TARGET,
      timers,
      metrics,
      log,
      rules: () => rules,
      scanner: () => scanner,
      source,
      ...(o.noOnBatch === true ? {} : { onBatch: () => void batches.n++ }),
      ...(o.noHolds === true ? {} : { holds }),
      ...(o.onCircuit === null ? {} : { onCircuit: o.onCircuit ?? ((state: CircuitState) => void circuits.push(structuredClone(state))) }),
    },
    { dryRun: false, ...o.options },
  );
  terms.push(term);
  return {
    term,
    timers,
    store,
    source,
    metrics,
    lines,
    holds,
    rules,
    circuits,
    batches,
    logged: (event) => lines.filter((l) => l.event === event),
    value: async (name, labels = {}) => {
      const metric = metrics.registry.getSingleMetric(name);
      if (metric === undefined) throw new Error(`no metric ${name}`);
      const { values } = await metric.get();
      return values.find((v) => Object.entries(labels).every(([k, want]) => String(v.labels[k]) === want) && Object.keys(v.labels).length === Object.keys(labels).length)?.value;
    },
  };
}

/** The fields of a log line the tests compare: severity, event, message and the named fields. */
function said(line: Line | undefined, ...fields: string[]): Record<string, unknown> | undefined {
  if (line === undefined) return undefined;
  return Object.fromEntries([["severity", line.severity], ["event", line.event], ["message", line.message], ...fields.map((f) => [f, line[f]])]);
}

/** A factory with 2 slots, and a control client for it (through a pass-through proxy when `withProxy`). */
async function startFactory(withProxy = false): Promise<{ targets: TargetResolver; url: string }> {
  factory = await startTestFactory({ limit: 2, probeTimeoutMs: 200, logLevel: "info" });
  let url = factory.controlUrl;
  if (withProxy) {
    proxy = await startFaultyControl(factory.controlUrl);
    url = proxy.url;
  }
  return { targets: new StaticTarget(new ControlClient(url, TEST_CONTROL_TOKEN)), url };
}

/** A record the previous term left open at `updatedAt` (a pending probe), for user `userId`. */
function leftOpen(userId: string, updatedAt: number, overrides: Partial<Incident> = {}, pod: string | null = "test-factory-0"): Incident {
  const incident = buildIncident({ status: "remediating", userId, pod, rule: "lockout", detectedAt: new Date(updatedAt - 5000).toISOString() });
  incident.updatedAt = new Date(updatedAt).toISOString();
  Object.assign(incident, overrides);
  return incident;
}

async function started(r: Rig, wait = true): Promise<void> {
  await r.term.start(wait);
}

// ---------------------------------------------------------------------------------------------------------------

describe("the start of a term: the records", () => {
  it("reads the records, builds the guards from them, says so, and sets its timers: held incidents 1 s, flush 1 s, orphans orphanAfterMs/2, prune 10 min, breakers 1 s", async () => {
    let lookups = 0;
    const r = rig({ targets: { resolve: () => (lookups++, Promise.resolve(null)) } });
    const recent = { updatedAt: new Date(T0 - 1000).toISOString(), closedAt: new Date(T0 - 1000).toISOString() };
    await r.store.save(buildIncident({ status: "resolved", userId: "u1", rule: "lockout" }, recent));
    await r.store.save(buildIncident({ status: "escalated", userId: "u2", rule: "lockout" }, recent));
    await started(r);
    expect(lookups).toBe(0); // closed records are not resumed
    expect(r.term.ready).toBe(true);
    expect(r.term.acting).toBe(true);
    expect(r.logged("operator.term_started").map((l) => said(l, "records"))).toEqual([
      { severity: "INFO", event: "operator.term_started", message: "Acting: guards built from 2 incident record(s)", records: 2 },
    ]);
    expect(r.timers.running).toEqual([1000, 1000, 30_000, 600_000, 1000]);
    expect(CIRCUIT_CHECK_EVERY_MS).toBe(1000);
    await eventually(() => r.source.attempts === 1, 2000, "the tail to start");
  });

  it("sets its timers from its options; the orphan check runs every orphanAfterMs/2 rounded down, never more often than every second", async () => {
    const a = rig({ options: { storeRetryMs: 250, flushEveryMs: 333, orphanAfterMs: 5001, pruneEveryMs: 7777 } });
    await started(a);
    expect(a.timers.running).toEqual([250, 333, 2500, 7777, 1000]);
    const b = rig({ options: { orphanAfterMs: 1999 } });
    await started(b);
    expect(b.timers.running).toEqual([1000, 1000, 1000, 600_000, 1000]);
  });

  it("a term that may not wait for the records fails at once with RecordsUnreadable: nothing counted, its timers stopped, its tail ended before it began", async () => {
    const r = rig();
    r.store.listFailures = 1;
    const err = await r.term.start(false).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(RecordsUnreadable);
    expect((err as RecordsUnreadable).code).toBe("ERR_RECLAIM_RECORDS_UNREADABLE");
    expect((err as RecordsUnreadable).message).toBe("cannot read the incident records: disk read error");
    expect(((err as RecordsUnreadable).cause as Error).message).toBe("disk read error");
    expect(r.term.acting).toBe(false);
    expect(r.term.ready).toBe(false);
    expect(r.timers.running).toEqual([]);
    await r.term.tailEnded;
    expect(r.source.attempts).toBe(0);
    expect(r.timers.waits).toEqual([]);
    expect(await r.value("reclaim_operator_store_errors_total")).toBe(0);
    expect(r.lines).toEqual([]);
    // Started once: asking again gives the same failure.
    await expect(r.term.start(true)).rejects.toBe(err);
  });

  it("a term that may wait reads them again every storeRetryMs until it can, counting each failure and saying so at the 1st and every 60th", async () => {
    const r = rig({ options: { storeRetryMs: 250 } });
    r.store.listFailures = 120;
    await started(r);
    expect(r.timers.waits).toEqual(Array.from({ length: 120 }, () => 250));
    expect(await r.value("reclaim_operator_store_errors_total")).toBe(120);
    const message =
      "Cannot read the incident records; NOT acting until they can be read (trying again every 250 ms): disk read error";
    expect(r.logged("operator.store_error").map((l) => said(l, "failures"))).toEqual([
      { severity: "ERROR", event: "operator.store_error", message, failures: 1 },
      { severity: "ERROR", event: "operator.store_error", message, failures: 60 },
      { severity: "ERROR", event: "operator.store_error", message, failures: 120 },
    ]);
    expect(r.term.ready).toBe(true);
    expect(r.logged("operator.term_started")).toHaveLength(1);
  });

  it("waits 1000 ms between reads by default", async () => {
    const r = rig();
    r.store.listFailures = 2;
    await started(r);
    expect(r.timers.waits).toEqual([1000, 1000]);
  });

  it("a term that ends while it waits for the records starts nothing: no guards, no tail, no timers", async () => {
    const r = rig();
    r.store.listFailures = 1_000_000;
    r.timers.block = () => true;
    const starting = r.term.start(true);
    await eventually(() => r.timers.held === 1, 2000, "the first wait");
    await r.term.dispose("leadership_lost", "lost the lease");
    await starting;
    await r.term.tailEnded;
    expect(r.term.ready).toBe(false);
    expect(r.logged("operator.term_started")).toEqual([]);
    expect(r.timers.running).toEqual([]);
    expect(r.source.attempts).toBe(0);
    expect(r.store.listFailures).toBe(1_000_000 - 1);
  });
});

describe("the start of a term: incidents left open", () => {
  /** A resolver that says the pod is gone, and keeps each query. */
  const gone = (): TargetResolver & { queries: TargetQuery[] } => {
    const queries: TargetQuery[] = [];
    return { queries, resolve: (q) => (queries.push(q), Promise.resolve(null)) };
  };

  it("one last updated exactly resumeWindowMs ago (10 min by default) is resumed; one a millisecond older is closed as interrupted, not looked up", async () => {
    const targets = gone();
    const r = rig({ targets });
    const atEdge = leftOpen("edge", T0 - 600_000);
    const older = leftOpen("older", T0 - 600_001);
    await r.store.save(atEdge);
    await r.store.save(older);
    await started(r);
    expect(targets.queries.map((q) => [q.userId, q.pod, q.namespace, q.signal === r.term.signal])).toEqual([["edge", "test-factory-0", null, true]]);
    const [edge, old] = [await r.store.get(atEdge.id), await r.store.get(older.id)];
    expect(edge!.decisions.at(-1)).toEqual({ at: new Date(T0).toISOString(), kind: "interrupted", detail: "the operator restarted and pod test-factory-0 it acted on is gone: nothing left to act on" });
    expect(old!.status).toBe("interrupted");
    expect(old!.decisions.at(-1)).toEqual({ at: new Date(T0).toISOString(), kind: "interrupted", detail: "the operator restarted 600 s after the last step (more than 600 s): not resumed" });
  });

  it("resumeWindowMs sets the window, to the millisecond", async () => {
    const targets = gone();
    const r = rig({ targets, options: { resumeWindowMs: 5000 } });
    const inside = leftOpen("inside", T0 - 5000);
    const outside = leftOpen("outside", T0 - 7600);
    await r.store.save(inside);
    await r.store.save(outside);
    await started(r);
    expect(targets.queries.map((q) => q.userId)).toEqual(["inside"]);
    expect((await r.store.get(outside.id))!.decisions.at(-1)!.detail).toBe("the operator restarted 8 s after the last step (more than 5 s): not resumed");
  });

  it("one whose rule is no longer loaded is closed as interrupted, saying so", async () => {
    const r = rig({ targets: gone() });
    const other = leftOpen("u", T0 - 1000, { rule: "retired" });
    await r.store.save(other);
    await started(r);
    expect((await r.store.get(other.id))!.decisions.at(-1)!.detail).toBe("the operator restarted and rule retired is no longer loaded");
  });

  it("one whose pod is unknown and gone says so", async () => {
    const r = rig({ targets: gone() });
    const left = leftOpen("u", T0 - 1000, {}, null);
    await r.store.save(left);
    await started(r);
    expect((await r.store.get(left.id))!.decisions.at(-1)!.detail).toBe("the operator restarted and pod (unknown) it acted on is gone: nothing left to act on");
  });

  it("closing one as interrupted: recorded with a follow-up, counted, told to the guards and logged with its incident, rule and user", async () => {
    const r = rig({ targets: gone() });
    const left = leftOpen("u7", T0 - 1000);
    await r.store.save(left);
    await started(r);
    const stored = (await r.store.get(left.id))!;
    expect(stored).toMatchObject({ status: "interrupted", closedAt: new Date(T0).toISOString() });
    expect(stored.followUps.at(-1)).toBe("Check whether the user can connect; a new trigger will open a new incident.");
    expect(await r.value("reclaim_operator_incidents_total", { status: "interrupted" })).toBe(1);
    expect(r.logged("operator.incident_interrupted").map((l) => said(l, "incident", "rule", "userId"))).toEqual([
      {
        severity: "WARNING",
        event: "operator.incident_interrupted",
        message: `Incident ${left.id} interrupted: the operator restarted and pod test-factory-0 it acted on is gone: nothing left to act on`,
        incident: left.id,
        rule: "lockout",
        userId: "u7",
      },
    ]);
    // The guards were told it closed: its key is no longer in flight (a live incident's), it is in its cooldown.
    const trigger = syntheticTrigger(r.rules[0]!, { userId: "u7", pod: "test-factory-0", namespace: null }, T0, { kind: "sweep", message: "at the limit", fields: {} })!;
    expect(checkGuards({ trigger, now: T0, globalDryRun: false }, r.term.guards).reason).toBe("cooldown");
    expect(r.term.engine.active.has(left.id)).toBe(false);
  });

  it("a close the store refuses is logged and left for later: not counted, still active", async () => {
    const r = rig({ targets: gone() });
    const left = leftOpen("u8", T0 - 1000);
    await r.store.save(left);
    r.store.saveFailures = 1;
    await started(r);
    expect(r.logged("operator.store_error").map((l) => said(l, "incident"))).toEqual([
      { severity: "ERROR", event: "operator.store_error", message: `Could not record ${left.id} as interrupted: disk full; the next term tries again`, incident: left.id },
    ]);
    expect(await r.value("reclaim_operator_incidents_total", { status: "interrupted" })).toBe(undefined);
    expect(r.logged("operator.incident_interrupted")).toEqual([]);
    expect((await r.store.get(left.id))!.status).toBe("remediating");
  });

  it("a pod lookup that fails is tried again after 500 ms doubling, for at most orphanAfterMs (60 s by default), then it is closed as interrupted", async () => {
    let lookups = 0;
    const r = rig({ targets: { resolve: () => (lookups++, Promise.reject(new Error("the Kubernetes API answered 500"))) } });
    const left = leftOpen("u", T0 - 1000);
    await r.store.save(left);
    await started(r);
    expect(r.timers.waits).toEqual([500, 1000, 2000, 4000, 8000, 16_000, 28_500]);
    expect(lookups).toBe(8);
    expect((await r.store.get(left.id))!.decisions.at(-1)!.detail).toBe("the operator restarted and could not look up pod test-factory-0 for 60 s: the Kubernetes API answered 500");
    expect(r.logged("operator.resumed").map((l) => said(l, "incident"))).toEqual(
      Array.from({ length: 7 }, () => ({
        severity: "WARNING",
        event: "operator.resumed",
        message: `Cannot look up the target of ${left.id} yet (the Kubernetes API answered 500); trying again`,
        incident: left.id,
      })),
    );
  });

  it("a lookup for an unknown pod that keeps failing says so", async () => {
    const r = rig({ targets: { resolve: () => Promise.reject(new Error("no")) }, options: { orphanAfterMs: 3000 } });
    const left = leftOpen("u", T0 - 1000, {}, null);
    await r.store.save(left);
    await started(r);
    expect(r.timers.waits).toEqual([500, 1000, 1500]);
    expect((await r.store.get(left.id))!.decisions.at(-1)!.detail).toBe("the operator restarted and could not look up pod (unknown) for 3 s: no");
  });

  it("the lookup's waits stop doubling at 32 s, and the last is cut to what is left of orphanAfterMs", async () => {
    const r = rig({ targets: { resolve: () => Promise.reject(new Error("no")) }, options: { orphanAfterMs: 200_000 } });
    const left = leftOpen("u", T0 - 1000);
    await r.store.save(left);
    await started(r);
    expect(r.timers.waits).toEqual([500, 1000, 2000, 4000, 8000, 16_000, 32_000, 32_000, 32_000, 32_000, 32_000, 8500]);
    expect((await r.store.get(left.id))!.decisions.at(-1)!.detail).toBe("the operator restarted and could not look up pod test-factory-0 for 200 s: no");
  });

  /** A resolver that finds a factory (nothing listens there: no call may be made). */
  const found: TargetResolver = { resolve: (q) => Promise.resolve({ control: new ControlClient("http://127.0.0.1:9", TEST_CONTROL_TOKEN), pod: q.pod, namespace: q.namespace }) };

  it("one that the pause holds when it would be resumed is closed as interrupted, naming the pause", async () => {
    const r = rig({ targets: found });
    const left = leftOpen("p", T0 - 1000);
    await r.store.save(left);
    r.holds.pause = "paused by alice until 13:00: deploy";
    await started(r);
    expect((await r.store.get(left.id))!.decisions.at(-1)!.detail).toBe("paused by alice until 13:00: deploy; no further rung was sent");
    expect(r.term.inFlight).toBe(0);
  });

  it("one that a silence of its user, pod and rule holds when it would be resumed is closed as interrupted, naming the silence", async () => {
    const r = rig({ targets: found });
    const left = leftOpen("s", T0 - 1000);
    await r.store.save(left);
    r.holds.silence = { userId: "s", text: "silenced by bob until 14:00: flaky client" };
    await started(r);
    expect((await r.store.get(left.id))!.decisions.at(-1)!.detail).toBe("silenced by bob until 14:00: flaky client; no further rung was sent");
    expect(r.holds.asked).toContainEqual({ userId: "s", pod: "test-factory-0", rule: "lockout" });
  });
});

describe("triggers from the tail", () => {
  it("a trigger whose handling throws is tried again after 200 ms doubling to 30 s, logged at the first failure and at the ceiling, and then handled", async () => {
    let lookups = 0;
    const r = rig({ targets: { resolve: () => (++lookups <= 9 ? Promise.reject(new Error(`lookup ${lookups} failed`)) : Promise.resolve(null)) } });
    await started(r);
    r.source.push(hardLimitLine("u1", T0));
    await eventually(() => r.source.committed === 1, 5000, "the batch to be handled");
    expect(r.timers.waits).toEqual([200, 400, 800, 1600, 3200, 6400, 12_800, 25_600, 30_000]);
    expect(await r.value("reclaim_operator_trigger_errors_total", { rule: "lockout" })).toBe(9);
    expect(r.logged("operator.trigger_failed").map((l) => said(l, "failures", "cause"))).toEqual([
      {
        severity: "ERROR",
        event: "operator.trigger_failed",
        message: "Could not handle the trigger for userId=u1,pod=test-factory-0 (rule lockout); trying again in 200 ms, nothing is acted on meanwhile: lookup 1 failed",
        failures: 1,
        cause: "lookup 1 failed",
      },
      {
        severity: "ERROR",
        event: "operator.trigger_failed",
        message: "Could not handle the trigger for userId=u1,pod=test-factory-0 (rule lockout); trying again in 30000 ms, nothing is acted on meanwhile: lookup 9 failed",
        failures: 9,
        cause: "lookup 9 failed",
      },
    ]);
    expect(r.logged("operator.trigger_retried").map((l) => said(l, "failures"))).toEqual([
      { severity: "WARNING", event: "operator.trigger_retried", message: "Trigger for userId=u1,pod=test-factory-0 (rule lockout) handled after 9 failed attempt(s)", failures: 9 },
    ]);
  });

  it("triggerBackoffMs sets the first wait and the ceiling", async () => {
    let lookups = 0;
    const r = rig({ targets: { resolve: () => (++lookups <= 4 ? Promise.reject(new Error("no")) : Promise.resolve(null)) }, options: { triggerBackoffMs: [50, 120] } });
    await started(r);
    r.source.push(hardLimitLine("u1", T0));
    await eventually(() => r.source.committed === 1, 5000, "the batch to be handled");
    expect(r.timers.waits).toEqual([50, 100, 120, 120]);
  });

  it("each batch: its lines are counted, the lag of each entry set, malformed lines counted, onBatch called, then its position saved", async () => {
    const r = rig();
    await started(r);
    r.timers.t = T0 + 2500;
    r.source.push(`${hardLimitLine("u1", T0)}{"event":"factory.hard_limit", "severity": broken\nnothing to see\n`);
    await eventually(() => r.source.committed === 1, 5000, "the batch to be handled");
    expect(await r.value("reclaim_operator_lines_read_total", { source: "queue" })).toBe(3);
    expect(await r.value("reclaim_operator_lines_malformed_total", { source: "queue" })).toBe(1);
    expect(await r.value("reclaim_operator_source_lag_seconds", { source: "queue" })).toBe(2.5);
    expect(r.batches.n).toBe(1);
    // An entry from the future is no lag.
    r.source.push(hardLimitLine("u2", T0 + 9000));
    await eventually(() => r.source.committed === 2, 5000, "the second batch");
    expect(await r.value("reclaim_operator_source_lag_seconds", { source: "queue" })).toBe(0);
    expect(r.batches.n).toBe(2);
    // Each batch adds what it read to the counts, not the scanner's running totals.
    expect(await r.value("reclaim_operator_lines_read_total", { source: "queue" })).toBe(4);
    expect(await r.value("reclaim_operator_lines_malformed_total", { source: "queue" })).toBe(1);
  });
});

describe("a term's trigger from outside the log", () => {
  const sweep = (rl: CompiledRule, userId: string, at: number) =>
    syntheticTrigger(rl, { userId, pod: "test-factory-0", namespace: null }, at, { kind: "sweep", message: "at the limit", fields: {} })!;

  it("is null before the term started and after it ended; while it acts, it is handled and its outcome returned", async () => {
    const r = rig();
    expect(await r.term.trigger(sweep(r.rules[0]!, "u1", T0))).toBe(null);
    await started(r);
    const outcome = await r.term.trigger(sweep(r.rules[0]!, "u1", T0));
    expect(outcome).toMatchObject({ suppressed: "no_target", incident: { target: { userId: "u1" } } });
    await r.term.dispose("leadership_lost", "lost");
    expect(await r.term.trigger(sweep(r.rules[0]!, "u2", T0))).toBe(null);
    expect((await r.store.list()).map((i) => i.target.userId)).toEqual(["u1"]);
  });

  it("is null when the term failed to start", async () => {
    const r = rig();
    r.store.listFailures = 1;
    await expect(r.term.start(false)).rejects.toBeInstanceOf(RecordsUnreadable);
    expect(await r.term.trigger(sweep(r.rules[0]!, "u1", T0))).toBe(null);
  });
});

describe("the tail when the source fails", () => {
  const boom = (n: number): Error => new Error(`read failed ${n}`);

  it("is started again after 1 s doubling to 60 s; the 8th failure in a row fails the term (SourceFailed) and ends its tail", async () => {
    const r = rig();
    r.source.errors.push(...Array.from({ length: 8 }, (_, i) => boom(i + 1)));
    await started(r);
    await r.term.tailEnded;
    expect(r.timers.waits).toEqual([1000, 2000, 4000, 8000, 16_000, 32_000, 60_000]);
    expect(r.source.attempts).toBe(8);
    expect(await r.value("reclaim_operator_source_errors_total", { source: "queue" })).toBe(8);
    const errors = r.logged("operator.source_error").map((l) => said(l, "source", "failures"));
    expect(errors.slice(0, 2)).toEqual([
      { severity: "ERROR", event: "operator.source_error", message: "Source queue failed (read failed 1); starting it again from the last position handled in 1000 ms", source: "queue", failures: 1 },
      { severity: "ERROR", event: "operator.source_error", message: "Source queue failed (read failed 2); starting it again from the last position handled in 2000 ms", source: "queue", failures: 2 },
    ]);
    expect(errors.at(-1)).toEqual({ severity: "ERROR", event: "operator.source_error", message: "source queue failed 8 times in a row: read failed 8; giving up", source: "queue", failures: 8 });
    expect(errors).toHaveLength(8);
    const failure = r.term.failure;
    expect(failure).toBeInstanceOf(SourceFailed);
    expect((failure as SourceFailed).code).toBe("ERR_RECLAIM_SOURCE_FAILED");
    expect(failure!.message).toBe("source queue failed 8 times in a row: read failed 8");
    expect((failure!.cause as Error).message).toBe("read failed 8");
  });

  it("sourceBackoffMs and sourceFailures set the waits, their ceiling and the failures allowed", async () => {
    const r = rig({ options: { sourceBackoffMs: [10, 25], sourceFailures: 4 } });
    r.source.errors.push(boom(1), boom(2), boom(3), boom(4), boom(5));
    await started(r);
    await r.term.tailEnded;
    expect(r.timers.waits).toEqual([10, 20, 25]);
    expect(r.term.failure!.message).toBe("source queue failed 4 times in a row: read failed 4");
  });

  it("counts failures in a row: a run that handled a batch before it failed starts the count again", async () => {
    const r = rig({ options: { sourceFailures: 3 } });
    r.source.push("nothing to see\n");
    r.source.errors.push(boom(1), boom(2), { afterBatch: boom(3) }, boom(4), boom(5));
    await started(r);
    await r.term.tailEnded;
    expect(r.timers.waits).toEqual([1000, 2000, 1000, 2000]);
    expect(r.term.failure!.message).toBe("source queue failed 3 times in a row: read failed 5");
    expect(r.logged("operator.source_error").map((l) => l.failures)).toEqual([1, 2, 1, 2, 3]);
  });

  it.each(["ERR_RECLAIM_SOURCE_NOT_A_FILE", "ERR_RECLAIM_GCP_REQUEST", "ERR_RECLAIM_SOURCE_SPEC"])("an error that retrying cannot mend (%s) fails the term at once", async (code) => {
    const r = rig();
    r.source.errors.push(Object.assign(new Error("cannot read it"), { code }));
    await started(r);
    await r.term.tailEnded;
    expect(r.timers.waits).toEqual([]);
    expect(r.term.failure!.message).toBe("source queue cannot be read: cannot read it");
    expect(r.logged("operator.source_error").map((l) => said(l, "source", "failures"))).toEqual([
      { severity: "ERROR", event: "operator.source_error", message: "source queue cannot be read: cannot read it; giving up", source: "queue", failures: 1 },
    ]);
  });

  it("any other error, or a thrown value that is not an error at all, is retried", async () => {
    const r = rig();
    r.source.errors.push(Object.assign(new Error("gone"), { code: "ENOENT" }), null);
    await started(r);
    await eventually(() => r.source.attempts === 3, 2000, "the third run");
    expect(r.timers.waits).toEqual([1000, 2000]);
    expect(r.term.failure).toBe(null);
    expect(r.logged("operator.source_error").map((l) => l.message)).toEqual([
      "Source queue failed (gone); starting it again from the last position handled in 1000 ms",
      "Source queue failed (null); starting it again from the last position handled in 2000 ms",
    ]);
  });
});

describe("ladders and on-call's holds", () => {
  /** Fills `userId`'s 2 slots with tabs that answer pings: a probe removes none of them, force does. */
  async function lockedOut(userId: string): Promise<void> {
    for (let i = 0; i < 2; i++) await factory!.open(userId, "live");
  }
  const ended = async (r: Rig, id: () => string | undefined): Promise<Incident> => {
    await eventually(async () => {
      const found = id();
      return found !== undefined && (await r.store.get(found))?.closedAt !== null && r.term.inFlight === 0;
    }, 10_000, "the incident to end");
    return (await r.store.get(id()!))!;
  };
  const only = (r: Rig) => () => r.store.saved[0]?.id;

  it("an incident left open is resumed: recorded and logged as resumed, its ladder runs on the factory through the term (no holds given: none)", async () => {
    const { targets, url } = await startFactory();
    await lockedOut("resumed");
    const r = rig({ targets, noHolds: true });
    const left = leftOpen("resumed", T0 - 1000, { target: { userId: "resumed", pod: "test-factory-0", control: url } });
    left.rungs = [{ ...left.rungs[0]!, params: { timeoutMs: 200 } }];
    await r.store.save(left);
    r.store.saved.length = 0;
    await started(r);
    expect(r.store.saved[0]!.decisions.at(-1)).toEqual({ at: new Date(T0).toISOString(), kind: "resumed", detail: "a new operator term continues from the record" });
    expect(r.logged("operator.resumed").map((l) => said(l, "incident", "rule", "userId"))).toEqual([
      { severity: "WARNING", event: "operator.resumed", message: `Resuming incident ${left.id}`, incident: left.id, rule: "lockout", userId: "resumed" },
    ]);
    const incident = await ended(r, () => left.id);
    expect(rungsRun(factory!, "resumed")).toEqual(["probe", "force"]);
    expect(incident.status).toBe("resolved");
    expect(await r.value("reclaim_operator_open_incidents")).toBe(0);
  });

  it("a record the store refuses when resuming is logged, and the ladder goes on (its own first write holds it)", async () => {
    const { targets, url } = await startFactory();
    await lockedOut("resumed");
    const r = rig({ targets });
    const left = leftOpen("resumed", T0 - 1000, { target: { userId: "resumed", pod: "test-factory-0", control: url } });
    left.rungs = [{ ...left.rungs[0]!, params: { timeoutMs: 200 } }];
    await r.store.save(left);
    r.store.saveFailures = 1;
    await started(r);
    expect(r.logged("operator.store_error").map((l) => said(l, "incident"))[0]).toEqual({
      severity: "ERROR",
      event: "operator.store_error",
      message: `Could not record resuming ${left.id}: disk full`,
      incident: left.id,
    });
    expect((await ended(r, () => left.id)).status).toBe("resolved");
  });

  it("a ladder runs one at a time per incident, counted in the open-incidents gauge while it runs, through the factory's own client", async () => {
    const { targets, url } = await startFactory();
    await lockedOut("u1");
    const r = rig({ targets });
    r.timers.block = (ms) => ms === 50; // verification's polls wait until let go
    await started(r);
    r.source.push(hardLimitLine("u1", T0));
    await eventually(() => r.timers.held === 1, 5000, "verification after the probe");
    expect(r.term.inFlight).toBe(1);
    expect(r.term.running.map((i) => i.target.userId)).toEqual(["u1"]);
    expect(await r.value("reclaim_operator_open_incidents")).toBe(1);
    const incident = r.term.running[0]!;
    expect(incident.decisions.find((d) => d.kind === "acting")!.detail).toBe(`acting on user u1 through ${url}`);
    r.timers.block = () => false;
    r.timers.release();
    const done = await ended(r, only(r));
    expect(done.status).toBe("resolved");
    expect(r.term.running).toEqual([]);
    expect(await r.value("reclaim_operator_open_incidents")).toBe(0);
    expect(r.term.engine.active.size).toBe(0);
  });

  it("a pause that comes while a ladder runs stops it before its next rung: that rung is recorded as skipped, not sent, and the incident closed as interrupted naming the pause", async () => {
    const { targets } = await startFactory();
    await lockedOut("held");
    const r = rig({ targets });
    const PAUSE = "paused by alice until 13:00: deploy";
    // Paused from the moment the probe's outcome is recorded (the probe removed none: no verification, force is next).
    r.holds.paused = () => (r.store.saved.some((i) => i.rungs.some((x) => x.rung === "probe" && x.outcome === "ok")) ? PAUSE : null);
    await started(r);
    r.source.push(hardLimitLine("held", T0));
    const incident = await ended(r, only(r));
    expect(rungsRun(factory!, "held")).toEqual(["probe"]);
    expect(incident.status).toBe("interrupted");
    expect(incident.rungs.map((x) => [x.rung, x.outcome, x.attempts, x.error])).toEqual([
      ["probe", "ok", 1, null],
      ["force", "skipped", 0, `not sent: ${PAUSE}`],
    ]);
    const force = incident.rungs[1]!;
    expect(force.finishedAt).toBe(incident.closedAt);
    expect(force.durationMs).toBe(Date.parse(force.finishedAt!) - Date.parse(force.startedAt));
    expect(incident.decisions.at(-1)).toEqual({ at: incident.closedAt, kind: "interrupted", detail: `${PAUSE}; stopped before its next rung (force was not sent)` });
    expect(await r.value("reclaim_operator_incidents_total", { status: "interrupted" })).toBe(1);
    expect(r.logged("operator.incident_interrupted").map((l) => l.message)).toEqual([`Incident ${incident.id} interrupted: ${PAUSE}; stopped before its next rung (force was not sent)`]);
  });

  it("a rung held back after an attempt that failed is recorded as an error: the attempt not made is not counted, the last error kept", async () => {
    const { targets } = await startFactory(true);
    await lockedOut("held");
    const r = rig({ targets });
    const PAUSE = "paused by alice: deploy";
    proxy!.fault("500", { times: 1, match: (method, path) => method === "POST" && path.endsWith("/rungs/probe") });
    r.timers.onSleep = (ms) => {
      if (ms === 200) r.holds.pause = PAUSE; // the ladder's wait before its second attempt
    };
    await started(r);
    r.source.push(hardLimitLine("held", T0));
    const incident = await ended(r, only(r));
    expect(proxy!.rungCalls().map((c) => [c.path.split("/").at(-1), c.forwarded])).toEqual([["probe", false]]);
    const [probe] = incident.rungs;
    expect([probe!.rung, probe!.outcome, probe!.attempts]).toEqual(["probe", "error", 1]);
    expect(probe!.error).toMatch(new RegExp(`^.*500.*; not sent again: ${PAUSE}$`));
    expect(incident.decisions.at(-1)!.detail).toBe(`${PAUSE}; stopped before its next rung (probe was not sent)`);
  });

  it("no ladder starts while a hold covers its incident: a paused trigger is held back and nothing is sent", async () => {
    const { targets } = await startFactory();
    await lockedOut("u1");
    const r = rig({ targets });
    r.holds.pause = "paused by alice: deploy";
    await started(r);
    r.source.push(hardLimitLine("u1", T0));
    await eventually(() => r.source.committed === 1, 5000, "the batch to be handled");
    await r.term.idle();
    expect(r.term.inFlight).toBe(0);
    expect(rungsRun(factory!, "u1")).toEqual([]);
    expect((await r.store.list()).map((i) => i.status)).not.toContain("remediating");
    // Held back by the guards before any incident was opened: there is nothing to interrupt.
    expect(r.logged("operator.incident_interrupted")).toEqual([]);
  });

  /** A factory target that can be "restarted": the test decides what a restart does. */
  function restartable(url: string, restart: Target["restart"]): TargetResolver & { restarts: number } {
    const resolver = {
      restarts: 0,
      resolve: (q: TargetQuery): Promise<Target> =>
        Promise.resolve({
          control: new ControlClient(url, TEST_CONTROL_TOKEN),
          pod: q.pod,
          namespace: "chat",
          restart: async (options: { waitReadyMs: number; signal?: AbortSignal }) => {
            resolver.restarts++;
            return restart!(options);
          },
        }),
    };
    return resolver;
  }
  const restartFirst = (): CompiledRule =>
    lockout({
      ladder: [
        { rung: "restartPod", timeout: "5s", params: { waitReady: "10s" } },
        { rung: "probe", timeout: "5s", params: { timeoutMs: 200 } },
      ],
    });

  it("a pause stops a pod restart before the pod is deleted", async () => {
    const { url } = await startFactory();
    await lockedOut("u1");
    const PAUSE = "paused by carol: node drain";
    const targets = restartable(url, () => Promise.reject(new Error("must not be called")));
    const r = rig({ targets, rules: [restartFirst()] });
    const holds = r.holds;
    // Paused from the moment the restart is recorded as about to happen.
    holds.paused = () => (r.store.saved.some((i) => i.rungs.some((x) => x.rung === "restartPod")) ? PAUSE : null);
    await started(r);
    r.source.push(hardLimitLine("u1", T0));
    const incident = await ended(r, only(r));
    expect(targets.restarts).toBe(0);
    expect(incident.rungs.map((x) => [x.rung, x.outcome, x.attempts, x.error])).toEqual([["restartPod", "skipped", 0, `not sent: ${PAUSE}`]]);
    expect(incident.decisions.at(-1)!.detail).toBe(`${PAUSE}; stopped before its next rung (restartPod was not sent)`);
  });

  it("the replacement pod a restart brings is held the same way: a pause that came during the restart stops the rung after it", async () => {
    const { url } = await startFactory();
    await lockedOut("u1");
    const PAUSE = "paused by carol: node drain";
    const holds = new TestHolds();
    const targets = restartable(url, () => {
      holds.pause = PAUSE;
      return Promise.resolve({ deleted: true, replacement: { control: new ControlClient(url, TEST_CONTROL_TOKEN), pod: "test-factory-1", namespace: "chat" }, detail: "replaced" });
    });
    const r = rig({ targets, rules: [restartFirst()], holds });
    await started(r);
    r.source.push(hardLimitLine("u1", T0));
    const incident = await ended(r, only(r));
    expect(targets.restarts).toBe(1);
    expect(rungsRun(factory!, "u1")).toEqual([]);
    expect(incident.target.pod).toBe("test-factory-1");
    expect(incident.rungs.map((x) => [x.rung, x.outcome])).toEqual([
      ["restartPod", "ok"],
      ["probe", "skipped"],
    ]);
    expect(incident.decisions.at(-1)!.detail).toBe(`${PAUSE}; stopped before its next rung (probe was not sent)`);
  });

  it("without a pause, the replacement's rungs are sent", async () => {
    const { url } = await startFactory();
    await lockedOut("u1");
    const targets = restartable(url, () =>
      Promise.resolve({ deleted: true, replacement: { control: new ControlClient(url, TEST_CONTROL_TOKEN), pod: "test-factory-1", namespace: "chat" }, detail: "replaced" }),
    );
    const r = rig({ targets, rules: [restartFirst()] });
    await started(r);
    r.source.push(hardLimitLine("u1", T0));
    const incident = await ended(r, only(r));
    expect(rungsRun(factory!, "u1")).toEqual(["probe"]);
    expect(incident.rungs.map((x) => [x.rung, x.outcome])).toEqual([
      ["restartPod", "ok"],
      ["probe", "ok"],
    ]);
  });

  it("a ladder that stops on an unexpected error is logged and its incident closed as interrupted, saying why", async () => {
    const { url } = await startFactory();
    await lockedOut("u1");
    const targets = restartable(url, () => Promise.reject(new Error("kubelet on fire")));
    const r = rig({ targets, rules: [restartFirst()] });
    await started(r);
    r.source.push(hardLimitLine("u1", T0));
    const incident = await ended(r, only(r));
    expect(incident.decisions.at(-1)!.detail).toBe("its ladder stopped on an unexpected error: kubelet on fire");
    expect(r.logged("operator.incident_interrupted").map((l) => said(l, "incident"))).toEqual([
      { severity: "ERROR", event: "operator.incident_interrupted", message: `Ladder of ${incident.id} stopped on an unexpected error: kubelet on fire`, incident: incident.id },
      {
        severity: "WARNING",
        event: "operator.incident_interrupted",
        message: `Incident ${incident.id} interrupted: its ladder stopped on an unexpected error: kubelet on fire`,
        incident: incident.id,
      },
    ]);
  });
});

describe("circuit breakers", () => {
  /** Three failures in a row of rule lockout, the last closed at T0 - 1 min: its breaker is open until T0 + 29 min. */
  const failures = (ruleName = "lockout"): Incident[] =>
    [3, 2, 1].map((ago, n) => {
      const closedAt = T0 - ago * MIN;
      return buildIncident(
        { status: "failed", userId: `f${n}`, rule: ruleName, detectedAt: new Date(closedAt - 20_000).toISOString() },
        { closedAt: new Date(closedAt).toISOString(), updatedAt: new Date(closedAt).toISOString() },
      );
    });
  const CLOSES = T0 + 29 * MIN;

  async function openAtStart(o: RigOptions = {}): Promise<{ r: Rig; ids: string[] }> {
    const r = rig(o);
    const records = failures();
    for (const f of records) await r.store.save(f);
    await started(r);
    return { r, ids: records.map((f) => f.id) };
  }

  it("one open when the term starts is said at once: an error, the gauge, a transition and on-call told, with its incidents and when it closes", async () => {
    const { r, ids } = await openAtStart();
    const closesAt = new Date(CLOSES).toISOString();
    expect(r.logged("operator.circuit_opened").map((l) => said(l, "rule", "incidents", "closesAt"))).toEqual([
      {
        severity: "ERROR",
        event: "operator.circuit_opened",
        message: `Circuit breaker of rule lockout is OPEN: 3 incident(s) failed or escalated in a row (${ids.join(", ")}); its triggers are not acted on until ${closesAt} unless another fails`,
        rule: "lockout",
        incidents: ids.join(","),
        closesAt,
      },
    ]);
    expect(await r.value("reclaim_operator_circuit_open", { rule: "lockout" })).toBe(1);
    expect(await r.value("reclaim_operator_circuit_transitions_total", { rule: "lockout", to: "open" })).toBe(1);
    expect(r.circuits).toEqual([
      { rule: "lockout", open: true, severity: "high", incidents: ids, openedAt: T0 - MIN, closesAt: CLOSES, description: null, runbook: null },
    ]);
  });

  it("is looked at every second: said once while nothing changes, said again (without a new transition) when a new failure moves its end, and closed when its time is up", async () => {
    const { r, ids } = await openAtStart();
    r.timers.t = T0 + SEC;
    r.timers.fire(CIRCUITS);
    expect(r.circuits).toHaveLength(1);
    // Another failure: the breaker stays open longer.
    const another = buildIncident({ status: "failed", userId: "f3", rule: "lockout", detectedAt: new Date(T0).toISOString() }, { closedAt: new Date(T0 + SEC).toISOString() });
    r.term.guards.closed(another);
    r.timers.fire(CIRCUITS);
    expect(r.circuits.map((c) => [c.open, c.closesAt, c.incidents.length])).toEqual([
      [true, CLOSES, 3],
      [true, T0 + SEC + 30 * MIN, 4],
    ]);
    expect(r.logged("operator.circuit_opened")).toHaveLength(1);
    expect(await r.value("reclaim_operator_circuit_transitions_total", { rule: "lockout", to: "open" })).toBe(1);
    r.timers.t = T0 + SEC + 30 * MIN - 1;
    r.timers.fire(CIRCUITS);
    expect(r.circuits).toHaveLength(2);
    r.timers.t = T0 + SEC + 30 * MIN;
    r.timers.fire(CIRCUITS);
    expect(r.circuits.at(-1)).toEqual({
      rule: "lockout",
      open: false,
      severity: "high",
      incidents: [...ids, another.id],
      openedAt: T0 - MIN,
      closesAt: null,
      description: null,
      runbook: null,
    });
    expect(r.logged("operator.circuit_closed").map((l) => said(l, "rule"))).toEqual([
      { severity: "WARNING", event: "operator.circuit_closed", message: "Circuit breaker of rule lockout closed: its triggers are acted on again", rule: "lockout" },
    ]);
    expect(await r.value("reclaim_operator_circuit_open", { rule: "lockout" })).toBe(0);
    expect(await r.value("reclaim_operator_circuit_transitions_total", { rule: "lockout", to: "closed" })).toBe(1);
    r.timers.fire(CIRCUITS);
    expect(r.circuits).toHaveLength(3);
  });

  it("one whose rule was removed while open is said closed, saying why", async () => {
    const { r } = await openAtStart();
    r.rules.splice(0);
    r.timers.fire(CIRCUITS);
    expect(r.circuits.at(-1)).toMatchObject({ rule: "lockout", open: false, closesAt: null, openedAt: T0 - MIN });
    expect(r.logged("operator.circuit_closed").map((l) => l.message)).toEqual(["Circuit breaker of rule lockout closed (its rule was removed): its triggers are acted on again"]);
    expect(await r.value("reclaim_operator_circuit_open", { rule: "lockout" })).toBe(0);
  });

  it("one whose rule became a dry run while open is said closed, saying why; a dry-run rule's breaker is never said open", async () => {
    const { r } = await openAtStart();
    r.rules[0] = lockout({ guards: { dryRun: true } });
    r.timers.fire(CIRCUITS);
    expect(r.logged("operator.circuit_closed").map((l) => l.message)).toEqual(["Circuit breaker of rule lockout closed (its rule is now a dry run): its triggers are acted on again"]);
    r.timers.fire(CIRCUITS);
    expect(r.circuits.map((c) => c.open)).toEqual([true, false]);

    const dry = rig({ rules: [lockout({ guards: { dryRun: true } })] });
    for (const f of failures()) await dry.store.save(f);
    await started(dry);
    expect(dry.circuits).toEqual([]);
  });

  it("a rule's description and runbook go to on-call with it", async () => {
    const { r } = await openAtStart({ rules: [lockout({ description: "users locked out", runbook: "https://runbooks/lockout" })] });
    expect(r.circuits[0]).toMatchObject({ description: "users locked out", runbook: "https://runbooks/lockout" });
  });

  it("on-call that cannot be told is logged, and the breaker is still said open", async () => {
    const { r } = await openAtStart({
      onCircuit: () => {
        throw new Error("pager down");
      },
    });
    expect(r.logged("operator.circuit_opened").map((l) => said(l, "rule")).at(-1)).toEqual({
      severity: "ERROR",
      event: "operator.circuit_opened",
      message: "Could not tell on-call about the circuit breaker of rule lockout: pager down",
      rule: "lockout",
    });
    expect(await r.value("reclaim_operator_circuit_open", { rule: "lockout" })).toBe(1);
  });

  it("a term given nobody to tell still says it in its log and gauge, and nothing fails", async () => {
    const { r } = await openAtStart({ onCircuit: null });
    expect(r.logged("operator.circuit_opened").map((l) => l.message)).toEqual([expect.stringMatching(/^Circuit breaker of rule lockout is OPEN: /)]);
    expect(await r.value("reclaim_operator_circuit_open", { rule: "lockout" })).toBe(1);
  });

  it("a term that ends reports no breaker: its gauge series are removed", async () => {
    const { r } = await openAtStart();
    await r.term.dispose("leadership_lost", "lost");
    expect(await r.value("reclaim_operator_circuit_open", { rule: "lockout" })).toBe(undefined);
  });

  describe("rollup records of triggers it held back", () => {
    const sweep = (rl: CompiledRule, userId: string, at: number) =>
      syntheticTrigger(rl, { userId, pod: "test-factory-0", namespace: null }, at, { kind: "sweep", message: "at the limit", fields: {} })!;
    const rollupWrites = (r: Rig): number => r.store.saved.filter((i) => i.rollup !== undefined).length;

    it("a new key is written with its trigger; a repeat's count is written by the flush timer every flushEveryMs, not at once", async () => {
      const { r } = await openAtStart({ options: { flushEveryMs: 1500 } });
      expect(r.timers.running[FLUSH]).toBe(1500);
      expect(await r.term.trigger(sweep(r.rules[0]!, "u1", T0))).toMatchObject({ suppressed: "circuit_open" });
      expect(rollupWrites(r)).toBe(1);
      await r.term.trigger(sweep(r.rules[0]!, "u1", T0));
      expect(rollupWrites(r)).toBe(1);
      r.timers.t = T0 + 5 * SEC; // counts are written at most every 5 s (ADR 12)
      r.timers.fire(FLUSH);
      await eventually(() => rollupWrites(r) === 2, 2000, "the flush");
    });

    it("a term stopped on request writes what is left; one that lost leadership does not", async () => {
      const stopped = (await openAtStart()).r;
      await stopped.term.trigger(sweep(stopped.rules[0]!, "u1", T0));
      await stopped.term.trigger(sweep(stopped.rules[0]!, "u1", T0));
      await stopped.term.dispose("stopped", "SIGTERM");
      expect(rollupWrites(stopped)).toBe(2);

      const lost = (await openAtStart()).r;
      await lost.term.trigger(sweep(lost.rules[0]!, "u1", T0));
      await lost.term.trigger(sweep(lost.rules[0]!, "u1", T0));
      await lost.term.dispose("leadership_lost", "lease lost");
      expect(rollupWrites(lost)).toBe(1);
    });
  });
});

describe("timers: held incidents, pruning, orphans", () => {
  it("an incident the store could not record is written again by the held-incidents timer, every storeRetryMs", async () => {
    const r = rig({ targets: NO_TARGET, options: { storeRetryMs: 300, dryRun: true } });
    await started(r);
    r.store.saveFailures = 1;
    r.source.push(hardLimitLine("u1", T0));
    await eventually(() => r.source.committed === 1, 5000, "the batch");
    expect(await r.store.list()).toEqual([]);
    expect(r.timers.running[STORE_RETRY]).toBe(300);
    r.timers.fire(STORE_RETRY);
    await eventually(async () => (await r.store.list()).length === 1, 2000, "the record written again");
  });

  it("pruning, every pruneEveryMs, forgets keys older than the longest cooldown or breaker window of the rules (at least a day)", async () => {
    const r = rig({ rules: [lockout({ guards: { cooldown: "2d", circuitBreaker: { failures: 3, openFor: "1h" } } })], options: { pruneEveryMs: 4321 } });
    const closed = (userId: string, at: number): Incident =>
      buildIncident({ status: "resolved", userId, pod: "test-factory-0", rule: "lockout", detectedAt: new Date(at - 20_000).toISOString() }, { closedAt: new Date(at).toISOString(), resolvedAt: new Date(at).toISOString(), updatedAt: new Date(at).toISOString() });
    await r.store.save(closed("recent", T0 - 1.5 * DAY));
    await r.store.save(closed("ancient", T0 - 2 * DAY - 1));
    await started(r);
    expect(r.term.guards.size.live).toBe(2);
    expect(r.timers.running[PRUNE]).toBe(4321);
    r.timers.fire(PRUNE);
    expect(r.term.guards.size.live).toBe(1);
    const trigger = syntheticTrigger(r.rules[0]!, { userId: "recent", pod: "test-factory-0", namespace: null }, T0, { kind: "sweep", message: "m", fields: {} })!;
    expect(checkGuards({ trigger, now: T0, globalDryRun: false }, r.term.guards).reason).toBe("cooldown");
  });

  it("pruning keeps what a breaker window longer than a day still needs", async () => {
    const r = rig({ rules: [lockout({ guards: { cooldown: "1m", circuitBreaker: { failures: 3, openFor: "3d" } } })] });
    await r.store.save(buildIncident({ status: "resolved", userId: "u", rule: "lockout", detectedAt: new Date(T0 - 2 * DAY).toISOString() }));
    await started(r);
    r.timers.fire(PRUNE);
    expect(r.term.guards.size.live).toBe(1);
  });

  it("pruning with no rules keeps a day", async () => {
    const r = rig({ rules: [] });
    await r.store.save(buildIncident({ status: "resolved", userId: "u", rule: "lockout", detectedAt: new Date(T0 - 0.5 * DAY).toISOString() }));
    await started(r);
    r.timers.fire(PRUNE);
    expect(r.term.guards.size.live).toBe(1);
  });

  it("an active incident without a running ladder is closed as interrupted once orphanAfterMs has passed since it was first seen so, to the millisecond", async () => {
    const r = rig({ options: { orphanAfterMs: 1500 } });
    await started(r);
    const orphan = leftOpen("o", T0);
    await r.store.save(orphan);
    r.term.engine.active.set(orphan.id, orphan); // a ladder that ended without closing it
    r.timers.fire(ORPHANS); // first seen at T0
    r.timers.t = T0 + 1499;
    r.timers.fire(ORPHANS);
    await r.term.idle();
    expect((await r.store.get(orphan.id))!.status).toBe("remediating");
    r.timers.t = T0 + 1500;
    r.timers.fire(ORPHANS);
    await eventually(async () => (await r.store.get(orphan.id))!.status === "interrupted", 2000, "the orphan to close");
    expect((await r.store.get(orphan.id))!.decisions.at(-1)!.detail).toBe("it had no running ladder for 2 s");
    expect(r.term.engine.active.has(orphan.id)).toBe(false);
  });

  it("an orphan is timed from the last time it was seen without a ladder in a row: one that left the active set starts again", async () => {
    const r = rig({ options: { orphanAfterMs: 1500 } });
    await started(r);
    const orphan = leftOpen("o", T0);
    await r.store.save(orphan);
    r.term.engine.active.set(orphan.id, orphan);
    r.timers.fire(ORPHANS); // seen at T0
    r.term.engine.active.delete(orphan.id);
    r.timers.t = T0 + 1000;
    r.timers.fire(ORPHANS); // gone: forgotten
    r.term.engine.active.set(orphan.id, orphan);
    r.timers.t = T0 + 1600;
    r.timers.fire(ORPHANS); // seen again at T0 + 1600
    r.timers.t = T0 + 3099;
    r.timers.fire(ORPHANS);
    await r.term.idle();
    expect((await r.store.get(orphan.id))!.status).toBe("remediating");
    r.timers.t = T0 + 3100;
    r.timers.fire(ORPHANS);
    await eventually(async () => (await r.store.get(orphan.id))!.status === "interrupted", 2000, "the orphan to close");
  });

  it("orphanAfterMs is 60 s by default", async () => {
    const r = rig();
    await started(r);
    const orphan = leftOpen("o", T0);
    await r.store.save(orphan);
    r.term.engine.active.set(orphan.id, orphan);
    r.timers.fire(ORPHANS);
    r.timers.t = T0 + 59_999;
    r.timers.fire(ORPHANS);
    await r.term.idle();
    expect((await r.store.get(orphan.id))!.status).toBe("remediating");
    r.timers.t = T0 + 60_000;
    r.timers.fire(ORPHANS);
    await eventually(async () => (await r.store.get(orphan.id))!.status === "interrupted", 2000, "the orphan to close");
    expect((await r.store.get(orphan.id))!.decisions.at(-1)!.detail).toBe("it had no running ladder for 60 s");
  });

  it("a closed incident in the active set is never an orphan", async () => {
    const r = rig({ options: { orphanAfterMs: 1500 } });
    await started(r);
    const done = buildIncident({ status: "resolved", userId: "d", rule: "lockout" });
    r.term.engine.active.set(done.id, done);
    r.timers.fire(ORPHANS);
    r.timers.t = T0 + 10_000;
    r.timers.fire(ORPHANS);
    await r.term.idle();
    expect(r.store.saved).toEqual([]);
    expect(r.logged("operator.incident_interrupted")).toEqual([]);
  });
});

describe("the end of a term", () => {
  const turns = async (n: number): Promise<void> => {
    for (let i = 0; i < n; i++) await new Promise<void>((resolve) => setImmediate(resolve));
  };

  it("waits until its ladders have stopped; until then no orphan check closes them; then it zeroes the gauge, counts the term by why it ended and says so", async () => {
    await startFactory();
    for (let i = 0; i < 2; i++) await factory!.open("u1", "live");
    let finishRestart!: () => void;
    const targets: TargetResolver = {
      resolve: (q) =>
        Promise.resolve({
          control: new ControlClient(factory!.controlUrl, TEST_CONTROL_TOKEN),
          pod: q.pod,
          namespace: "chat",
          // A pod deletion that takes its time to notice the term ended.
          restart: () => new Promise((resolve) => (finishRestart = () => resolve({ deleted: false, replacement: null, detail: "stopped waiting" }))),
        }),
    };
    const r = rig({
      targets,
      options: { orphanAfterMs: 1000 },
      rules: [lockout({ ladder: [{ rung: "restartPod", timeout: "5s", params: { waitReady: "10s" } }] })],
    });
    await started(r);
    r.source.push(hardLimitLine("u1", T0));
    await eventually(() => finishRestart !== undefined, 5000, "the restart");
    const id = r.store.saved[0]!.id;
    r.timers.fire(ORPHANS);
    r.timers.t = T0 + 10 * MIN;
    r.timers.fire(ORPHANS);
    await turns(5);
    expect(r.term.inFlight).toBe(1);
    expect((await r.store.get(id))!.status).toBe("remediating");

    let disposed = false;
    const disposing = r.term.dispose("stopped", "SIGTERM").then(() => void (disposed = true));
    await r.term.tailEnded;
    await turns(20);
    expect(disposed).toBe(false);
    expect(r.term.acting).toBe(false);
    expect(r.timers.running).toEqual([]);
    finishRestart();
    await disposing;
    expect(r.term.inFlight).toBe(0);
    expect(await r.value("reclaim_operator_open_incidents")).toBe(0);
    expect(await r.value("reclaim_operator_terms_total", { end: "stopped" })).toBe(1);
    expect(said(r.lines.at(-1), "why")).toEqual({ severity: "INFO", event: "operator.term_ended", message: "Stopped acting (SIGTERM)", why: "stopped" });
    expect(r.logged("operator.incident_interrupted")).toEqual([]);
    // Nothing was written after the term ended: the next term deletes the pod again.
    expect((await r.store.get(id))!.rungs.map((x) => [x.rung, x.outcome])).toEqual([["restartPod", "pending"]]);
    // Ending it again is the same end.
    await r.term.dispose("leadership_lost", "again");
    expect(await r.value("reclaim_operator_terms_total", { end: "leadership_lost" })).toBe(undefined);
  });

  it("a ladder stopped because its record could not be written is logged as left for the next term; it held every storeRetryMs", async () => {
    const { targets } = await startFactory();
    for (let i = 0; i < 2; i++) await factory!.open("u1", "live");
    const r = rig({ targets, options: { storeRetryMs: 777 } });
    r.store.saveFailures = 1_000_000;
    r.store.failSave = (incident) => incident.rungs.length > 0; // the record opens; the ladder's first write fails
    r.timers.block = (ms) => ms === 777;
    await started(r);
    r.source.push(hardLimitLine("u1", T0));
    await eventually(() => r.timers.held === 1, 5000, "the ladder to hold");
    expect(r.timers.waits).toEqual([777]);
    const id = r.store.saved[0]!.id;
    await r.term.dispose("leadership_lost", "lease lost");
    expect(r.logged("operator.resumed").map((l) => said(l, "incident"))).toEqual([
      {
        severity: "WARNING",
        event: "operator.resumed",
        message: `Stopped acting on ${id}: could not persist incident ${id}: disk full; the next term continues it`,
        incident: id,
      },
    ]);
    expect(r.logged("operator.incident_interrupted")).toEqual([]);
    expect(rungsRun(factory!, "u1")).toEqual([]);
    expect(await r.value("reclaim_operator_terms_total", { end: "leadership_lost" })).toBe(1);
    expect(said(r.lines.at(-1), "why")).toEqual({ severity: "INFO", event: "operator.term_ended", message: "Stopped acting (lease lost)", why: "leadership_lost" });
  });

  it("incidents still waiting to be recorded are dropped, each named with why the term ended", async () => {
    const r = rig({ options: { dryRun: true } });
    await started(r);
    r.store.saveFailures = 1_000_000;
    r.source.push(hardLimitLine("u1", T0));
    await eventually(() => r.source.committed === 1, 5000, "the batch");
    await r.term.dispose("leadership_lost", "lease lost");
    expect(r.lines.filter((l) => l.message.includes("was never recorded and NOT acted on (lease lost)"))).toHaveLength(1);
  });

  it("a source that fails because the term ended is no failure: not counted, not logged, the term not failed", async () => {
    const r = rig();
    r.source.errors.push({ afterAbort: new Error("stream destroyed") });
    await started(r);
    await eventually(() => r.source.attempts === 1, 2000, "the tail");
    await r.term.dispose("leadership_lost", "lost");
    await r.term.tailEnded;
    expect(r.term.failure).toBe(null);
    expect(r.logged("operator.source_error")).toEqual([]);
    expect(await r.value("reclaim_operator_source_errors_total", { source: "queue" })).toBe(undefined);
    expect(r.timers.waits).toEqual([]);
  });

  it("a batch the term stopped in the middle of is not committed: the next term reads it again", async () => {
    let release!: () => void;
    let lookups = 0;
    const r = rig({ targets: { resolve: () => (lookups++, new Promise((resolve) => (release = () => resolve(null)))) } });
    await started(r);
    r.source.push(hardLimitLine("u1", T0) + hardLimitLine("u2", T0));
    await eventually(() => lookups === 1, 5000, "the first lookup");
    const disposing = r.term.dispose("leadership_lost", "lost");
    release();
    await disposing;
    expect(lookups).toBe(1);
    expect(r.source.committed).toBe(0);
    expect(r.batches.n).toBe(0);
    // The rest of the batch was left alone: u2's entry was not even matched.
    expect(await r.value("reclaim_operator_rule_matches_total", { rule: "lockout" })).toBe(1);
  });
});

describe("dry run", () => {
  it("a term in dry run looks up nothing and acts on nothing: the trigger is recorded as a dry run", async () => {
    let lookups = 0;
    const r = rig({ targets: { resolve: () => (lookups++, Promise.resolve(null)) }, options: { dryRun: true }, noOnBatch: true });
    await started(r);
    r.source.push(hardLimitLine("u1", T0));
    await eventually(() => r.source.committed === 1, 5000, "the batch");
    const [incident] = await r.store.list();
    expect(incident).toMatchObject({ status: "suppressed", dryRun: true, suppressed: { dry_run: { count: 1 } } });
    expect(lookups).toBe(0);
    expect(r.term.inFlight).toBe(0);
  });
});

describe("more edges", () => {
  it("a term that ends while its records are being read builds nothing from them", async () => {
    const r = rig();
    let answer!: () => void;
    const list = r.store.list.bind(r.store);
    r.store.list = () => new Promise((resolve) => (answer = () => void list().then(resolve)));
    await r.store.save(leftOpen("a", T0 - 1000));
    const starting = r.term.start(true);
    await eventually(() => answer !== undefined, 2000, "the read");
    const disposing = r.term.dispose("leadership_lost", "lost");
    answer();
    await starting;
    await disposing;
    expect(r.logged("operator.term_started")).toEqual([]);
    expect(r.term.ready).toBe(false);
    expect(r.term.guards.size.inFlight).toBe(0);
  });

  it("a term that never started can be ended: counted and said", async () => {
    const r = rig();
    await r.term.dispose("leadership_lost", "lost before it began");
    await r.term.tailEnded;
    expect(await r.value("reclaim_operator_terms_total", { end: "leadership_lost" })).toBe(1);
    expect(r.lines.map((l) => said(l, "why"))).toEqual([{ severity: "INFO", event: "operator.term_ended", message: "Stopped acting (lost before it began)", why: "leadership_lost" }]);
  });

  it("a term that ends while it resumes the incidents left open resumes no more of them, starts no timers and no tail, and says no breaker", async () => {
    let lookups = 0;
    let answer!: () => void;
    const r = rig({
      targets: { resolve: (q) => (lookups++, new Promise((resolve) => (answer = () => resolve({ control: new ControlClient("http://127.0.0.1:9", TEST_CONTROL_TOKEN), pod: q.pod, namespace: null })))) },
    });
    for (const [n, ago] of [3, 2, 1].entries()) {
      await r.store.save(buildIncident({ status: "failed", userId: `f${n}`, rule: "lockout", detectedAt: new Date(T0 - ago * MIN - 20_000).toISOString() }, { closedAt: new Date(T0 - ago * MIN).toISOString() }));
    }
    const first = leftOpen("a", T0 - 1000);
    const second = leftOpen("b", T0 - 1000);
    await r.store.save(first);
    await r.store.save(second);
    r.store.saved.length = 0;
    const starting = r.term.start(true);
    await eventually(() => lookups === 1, 2000, "the first lookup");
    const disposing = r.term.dispose("leadership_lost", "lost");
    answer();
    await starting;
    await disposing;
    expect(lookups).toBe(1);
    expect(r.store.saved).toEqual([]);
    expect(r.term.ready).toBe(false);
    expect(r.timers.running).toEqual([]);
    expect(r.source.attempts).toBe(0);
    expect(r.circuits).toEqual([]);
    expect(r.logged("operator.circuit_opened")).toEqual([]);
  });

  it("a term that ends while it resumes its last incident left open says no breaker either", async () => {
    let answer!: () => void;
    const r = rig({
      targets: { resolve: (q) => new Promise((resolve) => (answer = () => resolve({ control: new ControlClient("http://127.0.0.1:9", TEST_CONTROL_TOKEN), pod: q.pod, namespace: null }))) },
    });
    for (const [n, ago] of [3, 2, 1].entries()) {
      await r.store.save(buildIncident({ status: "failed", userId: `f${n}`, rule: "lockout", detectedAt: new Date(T0 - ago * MIN - 20_000).toISOString() }, { closedAt: new Date(T0 - ago * MIN).toISOString() }));
    }
    await r.store.save(leftOpen("a", T0 - 1000));
    const starting = r.term.start(true);
    await eventually(() => answer !== undefined, 2000, "the lookup");
    const disposing = r.term.dispose("leadership_lost", "lost");
    answer();
    await starting;
    await disposing;
    expect(r.term.guards.circuitOpen("lockout", T0, 30 * MIN, 3)).toBe(true); // the records do open it
    expect(r.circuits).toEqual([]);
    expect(r.logged("operator.circuit_opened")).toEqual([]);
    expect(await r.value("reclaim_operator_circuit_open", { rule: "lockout" })).toBeUndefined();
  });

  it("a pod lookup that fails when the term has ended is not tried again", async () => {
    let lookups = 0;
    let fail!: () => void;
    const r = rig({ targets: { resolve: () => (lookups++, new Promise((_resolve, reject) => (fail = () => reject(new Error("aborted"))))) } });
    const left = leftOpen("a", T0 - 1000);
    await r.store.save(left);
    const starting = r.term.start(true);
    await eventually(() => lookups === 1, 2000, "the lookup");
    const disposing = r.term.dispose("leadership_lost", "lost");
    fail();
    await starting;
    await disposing;
    expect(lookups).toBe(1);
    expect(r.timers.waits).toEqual([]);
    expect((await r.store.get(left.id))!.status).toBe("remediating");
    // It ended during the last one: it never became ready, and its tail never started.
    expect(r.term.ready).toBe(false);
    expect(r.timers.running).toEqual([]);
  });

  it("a finite source that runs out ends the tail: not a failure, not started again", async () => {
    const r = rig();
    r.source.errors.push("end");
    await started(r);
    await r.term.tailEnded;
    expect(r.source.attempts).toBe(1);
    expect(r.term.failure).toBe(null);
    expect(r.term.acting).toBe(true);
  });

  it("entries are timed by the term's clock: one older than its rule's maxAge when read is not acted on", async () => {
    const r = rig();
    await started(r);
    r.timers.t = T0 + 16 * MIN;
    r.source.push(hardLimitLine("u1", T0));
    await eventually(() => r.source.committed === 1, 5000, "the batch");
    expect(await r.store.list()).toEqual([]);
    expect(await r.value("reclaim_operator_entries_dropped_total", { rule: "lockout", reason: "stale" })).toBe(1);
  });

  it("a term given no holds checks its triggers against none", async () => {
    const r = rig({ noHolds: true });
    await started(r);
    r.source.push(hardLimitLine("u1", T0));
    await eventually(() => r.source.committed === 1, 5000, "the batch");
    expect((await r.store.list()).map((i) => Object.keys(i.suppressed))).toEqual([["no_target"]]);
    expect(r.timers.waits).toEqual([]);
  });

  it("new rules take effect in the running term", async () => {
    const r = rig();
    await started(r);
    r.term.setRules([lockout({ trigger: { log: { event: ["factory.error"], minSeverity: "ERROR" } } })]);
    r.source.push(hardLimitLine("u1", T0));
    await eventually(() => r.source.committed === 1, 5000, "the batch");
    expect(await r.store.list()).toEqual([]);
  });

  it("each batch's rollup records are written before its position is saved", async () => {
    const r = rig();
    for (const [n, ago] of [3, 2, 1].entries()) {
      await r.store.save(buildIncident({ status: "failed", userId: `f${n}`, rule: "lockout", detectedAt: new Date(T0 - ago * MIN - 20_000).toISOString() }, { closedAt: new Date(T0 - ago * MIN).toISOString() }));
    }
    await started(r);
    r.store.saved.length = 0;
    r.source.push(hardLimitLine("u1", T0));
    await eventually(() => r.source.committed === 1, 5000, "the batch");
    expect(r.store.saved.filter((i) => i.rollup !== undefined)).toHaveLength(1);
  });

  it("a resumed rung whose first attempt's outcome is unknown and that a pause then holds back is recorded as an error that says so", async () => {
    const { targets, url } = await startFactory();
    for (let i = 0; i < 2; i++) await factory!.open("resumed", "live");
    const r = rig({ targets });
    const PAUSE = "paused by alice: deploy";
    const left = leftOpen("resumed", T0 - 1000, { target: { userId: "resumed", pod: "test-factory-0", control: url } });
    left.rungs = [{ ...left.rungs[0]!, params: { timeoutMs: 200 } }];
    await r.store.save(left);
    r.store.saved.length = 0;
    // Paused from the ladder's own first write: after the term resumed it, before the rung is sent again.
    r.holds.paused = () => (r.store.saved.length >= 2 ? PAUSE : null);
    await started(r);
    await eventually(async () => (await r.store.get(left.id))!.status === "interrupted", 5000, "the incident to close");
    const incident = (await r.store.get(left.id))!;
    const [probe] = incident.rungs;
    expect([probe!.outcome, probe!.attempts, probe!.error]).toEqual(["error", 1, `its last attempt's outcome is not known; not sent again: ${PAUSE}`]);
    expect(probe!.finishedAt).toBe(new Date(T0).toISOString());
    expect(probe!.durationMs).toBe(T0 - Date.parse(left.rungs[0]!.startedAt));
    expect(rungsRun(factory!, "resumed")).toEqual([]);
  });

  it("the operator's canary is handed to the ladders", async () => {
    const { targets } = await startFactory();
    await factory!.open("u1", "no-pong");
    await factory!.open("u1", "no-pong");
    const messages: string[] = [];
    const r = rig({
      targets,
      rules: [lockout({ verify: { settle: "100ms", timeout: "1s", canary: { message: "hello canary" } } })],
      options: { canary: (message) => (messages.push(message), Promise.resolve({ ok: true, detail: "echoed" })) },
    });
    await started(r);
    r.source.push(hardLimitLine("u1", T0));
    await eventually(async () => (await r.store.list()).some((i) => i.status === "resolved"), 10_000, "the incident to resolve");
    expect(messages).toEqual(["hello canary"]);
  });

  it("a ladder that fails after the term ended closes nothing: the next term resumes it", async () => {
    await startFactory();
    for (let i = 0; i < 2; i++) await factory!.open("u1", "live");
    let fail!: () => void;
    const targets: TargetResolver = {
      resolve: (q) =>
        Promise.resolve({
          control: new ControlClient(factory!.controlUrl, TEST_CONTROL_TOKEN),
          pod: q.pod,
          namespace: "chat",
          restart: () => new Promise((_resolve, reject) => (fail = () => reject(new Error("kubelet on fire")))),
        }),
    };
    const r = rig({ targets, rules: [lockout({ ladder: [{ rung: "restartPod", timeout: "5s", params: { waitReady: "10s" } }] })] });
    await started(r);
    r.source.push(hardLimitLine("u1", T0));
    await eventually(() => fail !== undefined, 5000, "the restart");
    const id = r.store.saved[0]!.id;
    const disposing = r.term.dispose("leadership_lost", "lost");
    fail();
    await disposing;
    expect((await r.store.get(id))!.status).toBe("remediating");
    expect(r.logged("operator.incident_interrupted").filter((l) => l.severity === "WARNING")).toEqual([]);
  });
});

describe("a term that ends while something waits", () => {
  const sweep = (rl: CompiledRule, userId: string, at: number) =>
    syntheticTrigger(rl, { userId, pod: "test-factory-0", namespace: null }, at, { kind: "sweep", message: "at the limit", fields: {} })!;

  /** Holds the store's reads until `answer()` is called; resolves once a read waits. */
  async function heldRead(r: Rig): Promise<() => void> {
    let answer: (() => void) | undefined;
    const list = r.store.list.bind(r.store);
    r.store.list = () => new Promise((resolve) => (answer = () => void list().then(resolve)));
    const starting = r.term.start(true);
    await eventually(() => answer !== undefined, 2000, "the read of the records");
    return () => {
      r.store.list = list; // later reads are the store's own
      answer!();
      void starting;
    };
  }

  it("a trigger that waited for the term to start, which ended meanwhile, is not handled: null, nothing recorded", async () => {
    const r = rig();
    const answer = await heldRead(r);
    const triggered = r.term.trigger(sweep(r.rules[0]!, "u1", T0));
    const disposing = r.term.dispose("leadership_lost", "lost");
    answer();
    expect(await triggered).toBe(null);
    await disposing;
    expect(await r.store.list()).toEqual([]);
  });

  it("a batch whose last entry was being handled when the term ended is not counted as handled (no onBatch, no flush after it)", async () => {
    const { targets } = await startFactory();
    for (let i = 0; i < 2; i++) await factory!.open("u1", "live");
    const r = rig({ targets });
    await started(r);
    let release: (() => void) | undefined;
    const save = r.store.save.bind(r.store);
    r.store.save = (incident) => new Promise((resolve, reject) => (release = () => void save(incident).then(resolve, reject)));
    r.source.push(hardLimitLine("u1", T0));
    await eventually(() => release !== undefined, 5000, "the incident's first write");
    const disposing = r.term.dispose("leadership_lost", "lost");
    release!();
    r.store.save = save;
    await disposing;
    expect(r.batches.n).toBe(0);
  });

  it("a target that cannot restart pods gets no restart through the hold check either: restartPod fails as needing pod targeting", async () => {
    const { targets } = await startFactory();
    for (let i = 0; i < 2; i++) await factory!.open("u1", "live");
    const r = rig({ targets, rules: [lockout({ ladder: [{ rung: "restartPod", timeout: "5s", params: { waitReady: "10s" } }] })] });
    await started(r);
    r.source.push(hardLimitLine("u1", T0));
    await eventually(async () => (await r.store.list()).some((i) => i.closedAt !== null), 10_000, "the incident to close");
    const [incident] = await r.store.list();
    expect(incident!.status).toBe("failed");
    expect(incident!.rungs).toMatchObject([
      { rung: "restartPod", outcome: "error", error: "restartPod needs Kubernetes pod targeting (--target pod) and the pod the entry came from" },
    ]);
  });
});
